"""Sessions that come and go leave nothing behind in the process (issue 24's soak).

Many short sessions (partials on, quality on, some ended abruptly, from many client
addresses behind a trusted proxy) and uploads run through the app; afterwards the
objects of the project's own types, asyncio tasks and the per-address bookkeeping are
back where they were after the first few sessions. Counted objects, not memory or time.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tests.server.conftest import VAD_DETECTORS, collect, send_audio
from tests.speech import to_pcm16, wav_bytes

WARM_UP = 6
CHURN = 24
OWN_MODULES = ("server.", "vad.", "classifier.", "pcm.")


@pytest.fixture(params=VAD_DETECTORS)
def vad_detector(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def own_objects() -> Counter[str]:
    """Live objects of the project's types and asyncio tasks, by type name."""
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = kind.__dict__.get("__module__", "")
        if (isinstance(module, str) and module.startswith(OWN_MODULES)) or kind.__name__ == "Task":
            counts[f"{module}.{kind.__qualname__}"] += 1
    return counts


def one_session(client: Any, index: int, pcm: bytes, upload: bytes) -> None:
    headers = {"x-forwarded-for": f"10.0.{index // 250}.{index % 250 + 1}"}
    if index % 6 == 5:
        response = client.post(
            "/v1/classify", content=upload, headers={**headers, "content-type": "audio/wav"}
        )
        assert response.status_code == 200, response.text
        return
    query = "?interim_ms=250" + ("&quality=1" if index % 2 else "")
    # Each session stops at another point: mid-utterance, in a pause, or after the end.
    stop = len(pcm) * (3 + index % 5) // 7 & ~1
    with client.websocket_connect(f"/v1/stream{query}", headers=headers) as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"
        send_audio(ws, pcm[:stop], frame_bytes=640 + 2 * (index % 7) * 97)
        if index % 3 == 2:
            return  # the client goes away without `end`
        ws.send_text(json.dumps({"type": "end"}))
        messages, code = collect(ws)
        assert code == 1000 and messages[-1]["type"] == "end", messages[-3:]


def test_sessions_that_come_and_go_leave_no_objects_behind(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    client = make_client(trusted_proxies=["127.0.0.0/8"])
    pcm = to_pcm16(three_utterances)
    upload = wav_bytes(three_utterances[: 16000 * 3])
    for index in range(WARM_UP):
        one_session(client, index, pcm, upload)
    before = own_objects()
    for index in range(WARM_UP, WARM_UP + CHURN):
        one_session(client, index, pcm, upload)
    after = own_objects()
    grown = {name: after[name] - before[name] for name in after if after[name] > before[name]}
    assert grown == {}, f"objects left behind by {CHURN} sessions: {grown}"
    service = client.app.state.service
    assert service.sessions == set()
    assert service.limiter.total == 0 and service.uploads.total == 0
    # Per-address counts are dropped when an address's last session or upload ends.
    assert not service.limiter._per_client
    assert not service.uploads._clients._per_client
    # No metric is labelled per client or per session: its label sets would grow forever.
    labels = {
        value
        for family in service.metrics.registry.collect()
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert not [value for value in labels if value.startswith("10.0.")]
