"""bench/equal_lengths.py's count: equal-length segments of other clients ready together."""

from __future__ import annotations

from bench.equal_lengths import with_partner
from bench.live_capacity import CONVERSATIONS


def test_partners_need_equal_length_another_client_and_the_window() -> None:
    ready = [
        (1.0, 800, 0),
        (1.4, 800, 1),  # 0.4 s after client 0's, same length: partners at 0.5 s
        (1.2, 900, 2),  # another length
        (5.0, 700, 3),
        (5.1, 700, 3),  # the same client's: not a partner
    ]
    assert with_partner(ready, 0.25, other_conversation=False) == 0
    assert with_partner(ready, 0.5, other_conversation=False) == 2
    assert with_partner(ready, 10.0, other_conversation=False) == 2


def test_other_conversation_excludes_clients_replaying_the_same_audio() -> None:
    same = [(1.0, 800, 0), (1.1, 800, CONVERSATIONS)]  # client 8 replays conversation 0
    assert with_partner(same, 0.5, other_conversation=False) == 2
    assert with_partner(same, 0.5, other_conversation=True) == 0
    other = [(1.0, 800, 0), (1.1, 800, 1)]
    assert with_partner(other, 0.5, other_conversation=True) == 2
