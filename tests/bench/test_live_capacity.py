"""The capacity search doubles, then bisects, and always stops within its bounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import servers
from bench.live_capacity import first_labels, next_k, parse_layout, partial_counts
from bench.streamer import StreamLog
from server.settings import Settings
from tests.live import live_server


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
    assert parse_layout("2x1") == (2, 1, None)
    assert parse_layout("1x2") == (1, 2, None)
    assert parse_layout("2x1+0") == (2, 1, 0)
    assert parse_layout("2x1+2") == (2, 1, 2)
    for bad in ("2", "0x1", "2x", "ax1", "2*1", "2x1+", "2x1+a", "+2"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_layout(bad)


def test_first_label_is_the_earliest_partial_or_result_covering_the_utterance() -> None:
    log = StreamLog(t0=100.0)
    log.messages = [
        (100.5, {"type": "speech_start", "t_ms": 900}),
        (101.2, {"type": "partial", "segment": 0, "start_ms": 800, "end_ms": 1800}),
        (101.9, {"type": "result", "segment": 0, "start_ms": 800, "end_ms": 2600}),
        (104.0, {"type": "result", "segment": 1, "start_ms": 3000, "end_ms": 3600}),
        (104.1, {"type": "skipped", "segment": 2, "start_ms": 5000, "end_ms": 5300}),
    ]
    spans = [(1.0, 2.5), (3.1, 3.5), (5.0, 5.2)]
    assert first_labels(log, spans) == pytest.approx([0.2, 0.9])  # a skip is no label


def test_an_utterance_is_answered_by_its_last_segment_or_its_skip() -> None:
    log = StreamLog(t0=10.0)
    log.messages = [
        (11.0, {"type": "partial", "segment": 0, "start_ms": 0, "end_ms": 1000}),
        (13.5, {"type": "result", "segment": 1, "start_ms": 2500, "end_ms": 3600}),
        (12.8, {"type": "result", "segment": 0, "start_ms": 0, "end_ms": 2500}),
        (14.1, {"type": "skipped", "segment": 2, "start_ms": 5000, "end_ms": 5300}),
    ]
    # the segment that ends last wins, whatever the order of arrival
    assert log.answer(0.2, 3.4) == log.messages[1]
    assert log.answer(5.0, 5.2) == log.messages[3]
    assert log.answer(4.0, 4.8) is None  # nothing overlaps: a lost utterance
    assert log.answer(0.1, 0.9) == log.messages[2]  # a partial is no answer
    assert log.overlapping(("partial",), 0.1, 0.9) == [log.messages[0]]
    assert log.overlapping(("result",), 2.5, 2.5) == []  # touching is not overlapping


def test_partial_counts_read_the_metrics_of_a_server(tiny_model_dir: Path) -> None:
    with live_server(Settings(model_dir=tiny_model_dir)) as live:
        port = int(live.http_url.rsplit(":", 1)[1])
        server = servers.Server(process=None, port=port)  # type: ignore[arg-type]
        assert partial_counts(server) == {"computed": 0.0}
        live.service.metrics.partials_computed.inc(3)
        live.service.metrics.partials_dropped.labels(reason="pool").inc(2)
        assert partial_counts(server) == {"computed": 3.0, "pool": 2.0}
