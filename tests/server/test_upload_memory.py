"""Peak memory of the largest upload the default limits accept, in a real server process.

The precise figure is bench/upload_memory.py's (on a quiet machine); this test measures the
same thing with a generous bound, so holding several copies of the file or of its decoded
audio at once (as the server once did: 211 MiB for an 18 MiB file) fails it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import soxr

from bench.processes import ServerProcess
from server.settings import Settings
from tests.speech import espeak, silence, wav_bytes

FILE_RATE_HZ = 20_000
SECONDS = 599.0  # just under max_upload_ms (10 min)
DECODED_BYTES = SECONDS * 16_000 * 4  # mono float32 at the segmenter's rate
BOUND = 4.0  # peak growth, as a multiple of the decoded audio


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


@pytest.fixture(scope="module")
def largest_upload() -> bytes:
    utterance = np.concatenate(
        [espeak("Nobody told me the meeting had moved to Thursday.", rate_wpm=190), silence(1.2)]
    )
    audio = np.tile(utterance, int(SECONDS * 16_000) // utterance.size + 1)[: int(SECONDS * 16_000)]
    body = wav_bytes(soxr.resample(audio, 16_000, FILE_RATE_HZ), FILE_RATE_HZ)
    assert len(body) <= Settings().max_upload_bytes
    return body


def test_peak_memory_of_the_largest_upload(tiny_model_dir: Path, largest_upload: bytes) -> None:
    server = ServerProcess(tiny_model_dir, {"workers": "1"})
    try:
        with httpx.Client(base_url=server.http_url, timeout=300) as client:
            warm = client.post(
                "/v1/classify",
                content=largest_upload[:200_044],
                headers={"content-type": "audio/wav"},
            )
            assert warm.status_code == 400  # a cut WAV: refused, but the code paths are loaded
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # peak := current RSS
            before_kb = status_kb(server.pid, "VmRSS")
            reply = client.post(
                "/v1/classify", content=largest_upload, headers={"content-type": "audio/wav"}
            )
            peak_kb = status_kb(server.pid, "VmHWM")
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    assert reply.json()["duration_ms"] == pytest.approx(SECONDS * 1000, abs=1)
    assert len(reply.json()["segments"]) > 100
    growth = (peak_kb - before_kb) * 1024
    assert growth < BOUND * DECODED_BYTES, (
        f"peak grew by {growth / 2**20:.0f} MiB for {DECODED_BYTES / 2**20:.0f} MiB of audio"
    )
