"""The capacity search doubles, then bisects, and always stops within its bounds."""

from __future__ import annotations

import re

import pytest

from bench.live_capacity import next_k, parse_layout


def search(capacity: int, start_k: int = 4, max_k: int = 128) -> list[int]:
    tried: dict[int, bool] = {}
    order = []
    while (k := next_k(tried, start_k, max_k)) is not None:
        assert k not in tried, f"K={k} tried twice in {order}"
        order.append(k)
        tried[k] = k <= capacity
    return order


def test_doubles_then_bisects() -> None:
    assert search(20) == [4, 8, 16, 32, 24, 20, 22]


def test_walks_down_when_the_first_k_fails() -> None:
    assert search(1) == [4, 2, 1]
    assert search(0) == [4, 2, 1]


def test_stops_at_max_k_when_everything_passes() -> None:
    assert search(10_000, max_k=100) == [4, 8, 16, 32, 64, 100]


@pytest.mark.parametrize("capacity", [2, 3, 5, 7, 13, 41, 90])
def test_finds_the_capacity_within_the_resolution(capacity: int) -> None:
    order = search(capacity)
    best = max((k for k in order if k <= capacity), default=0)
    worst = min(k for k in order if k > capacity)
    assert best <= capacity < worst
    assert worst - best <= max(1, best // 8)
    assert len(order) <= 12


def test_layouts_are_parsed_and_bad_ones_named() -> None:
    assert parse_layout("2x1") == (2, 1)
    assert parse_layout("1x2") == (1, 2)
    for bad in ("2", "0x1", "2x", "ax1", "2*1"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_layout(bad)
