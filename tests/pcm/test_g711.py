"""G.711 expansion: reference values of the standard, sox's conversion, and the framing."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from pcm.format import FrameError, decode_pcm, split_channels, to_int16
from pcm.g711 import ALAW_TO_LINEAR, MULAW_TO_LINEAR, alaw_to_int16, encode, mulaw_to_int16
from tests.speech import espeak

EVERY_CODE = bytes(range(256))


@pytest.mark.parametrize(
    ("code", "linear"),
    [
        (0xFF, 0),  # μ-law: positive zero
        (0x7F, 0),  # negative zero
        (0x00, -32124),  # largest negative
        (0x80, 32124),  # largest positive
        (0xFE, 8),  # the smallest steps: 8 in segment 0
        (0xF0, 120),
        (0xEF, 132),  # segment 1 starts
        (0x70, -120),
    ],
)
def test_mulaw_reference_values(code: int, linear: int) -> None:
    assert int(mulaw_to_int16(bytes([code]))[0]) == linear


@pytest.mark.parametrize(
    ("code", "linear"),
    [
        (0xD5, 8),  # A-law: the smallest positive step
        (0x55, -8),
        (0xAA, 32256),  # largest positive
        (0x2A, -32256),  # largest negative
        (0xD4, 24),
        (0xC5, 264),  # segment 1 starts
    ],
)
def test_alaw_reference_values(code: int, linear: int) -> None:
    assert int(alaw_to_int16(bytes([code]))[0]) == linear


def test_tables_are_odd_symmetric_and_monotonic() -> None:
    # Flipping the sign bit negates the value (μ-law: 0x7F/0xFF are both zero).
    np.testing.assert_array_equal(MULAW_TO_LINEAR[:128], -MULAW_TO_LINEAR[128:])
    np.testing.assert_array_equal(ALAW_TO_LINEAR[:128], -ALAW_TO_LINEAR[128:])
    # μ-law codes 0x80..0xFF run from the largest positive value down to zero.
    assert (np.diff(MULAW_TO_LINEAR[128:].astype(int)) < 0).all()
    assert len(set(ALAW_TO_LINEAR.tolist())) == 256
    assert not MULAW_TO_LINEAR.flags.writeable


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize(("law", "sox_encoding"), [("mulaw", "mu-law"), ("alaw", "a-law")])
def test_every_code_matches_sox(law: str, sox_encoding: str) -> None:
    converted = subprocess.run(
        [
            "sox",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            sox_encoding,
            "-b",
            "8",
            "-c",
            "1",
            "-",
            "-t",
            "raw",
            "-e",
            "signed",
            "-b",
            "16",
            "-L",
            "-",
        ],
        input=EVERY_CODE,
        capture_output=True,
        check=True,
    ).stdout
    expected = np.frombuffer(converted, dtype="<i2")
    assert len(expected) == 256
    decode = mulaw_to_int16 if law == "mulaw" else alaw_to_int16
    np.testing.assert_array_equal(decode(EVERY_CODE), expected)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize(("law", "sox_encoding"), [("mulaw", "mu-law"), ("alaw", "a-law")])
def test_speech_encoded_by_sox_decodes_close_to_the_original(law: str, sox_encoding: str) -> None:
    speech = espeak("Hello, this is a telephone call.", sample_rate=8000)
    pcm = to_int16(speech).astype("<i2").tobytes()
    encoded = subprocess.run(
        [
            "sox",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            "signed",
            "-b",
            "16",
            "-L",
            "-c",
            "1",
            "-",
            "-t",
            "raw",
            "-e",
            sox_encoding,
            "-b",
            "8",
            "-",
        ],
        input=pcm,
        capture_output=True,
        check=True,
    ).stdout
    assert len(encoded) == len(speech)
    decoded = decode_pcm(encoded, law)  # type: ignore[arg-type]
    error = decoded - speech
    snr_db = 10 * np.log10(np.mean(speech**2) / np.mean(error**2))
    assert snr_db > 25  # G.711 keeps about 35 dB on speech


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_encode_round_trips_every_table_value_and_picks_the_nearest_code(law: str) -> None:
    table = MULAW_TO_LINEAR if law == "mulaw" else ALAW_TO_LINEAR
    decode = mulaw_to_int16 if law == "mulaw" else alaw_to_int16
    # Every value the law can carry comes back exactly.
    np.testing.assert_array_equal(decode(encode(table, law)), table)
    # Any 16-bit value decodes to a table value at least as near as every other one.
    samples = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    decoded = decode(encode(samples, law)).astype(np.int32)
    values = np.unique(table.astype(np.int32))
    best = np.abs(samples.astype(np.int32)[:, None] - values[None, :]).min(axis=1)
    np.testing.assert_array_equal(np.abs(decoded - samples.astype(np.int32)), best)
    assert len(encode(samples, law)) == samples.size


@pytest.mark.parametrize(("law", "sox_encoding"), [("mulaw", "mu-law"), ("alaw", "a-law")])
def test_encode_matches_sox_on_speech(law: str, sox_encoding: str) -> None:
    """Nearest code: every sample decodes at least as close to the original as sox's code
    (the standard encoder's decision levels) does, and the two agree on most samples."""
    if shutil.which("sox") is None:
        pytest.fail("sox is not installed (Debian package sox)")
    speech = espeak("Hello, this is a telephone call.", sample_rate=8000)
    samples = to_int16(speech)
    ours = decode_pcm(encode(samples, law), law)  # type: ignore[arg-type]
    command = "sox -t raw -r 8000 -e signed -b 16 -L -c 1 - -t raw -e {} -b 8 -"
    theirs = subprocess.run(
        command.format(sox_encoding).split(),
        input=samples.astype("<i2").tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    reference = decode_pcm(theirs, law)  # type: ignore[arg-type]
    exact = samples / np.float32(32768)
    assert (np.abs(ours - exact) <= np.abs(reference - exact) + 1e-9).all()
    assert np.mean(ours == reference) > 0.5
    snr_db = 10 * np.log10(np.mean(exact**2) / np.mean((ours - exact) ** 2))
    assert snr_db > 25


def test_encode_refuses_an_unknown_law() -> None:
    with pytest.raises(ValueError, match=r"unknown G\.711 law 'ulaw'"):
        encode(np.zeros(4, dtype=np.int16), "ulaw")


def test_decode_pcm_scales_g711_to_unit_range() -> None:
    audio = decode_pcm(bytes([0x00, 0xFF, 0x80]), "mulaw")
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, np.array([-32124, 0, 32124]) / 32768)
    np.testing.assert_array_equal(decode_pcm(bytes([0xD5]), "alaw"), [8 / 32768])


@pytest.mark.parametrize(
    ("encoding", "sample"), [("pcm_s16le", 2), ("pcm_f32le", 4), ("mulaw", 1), ("alaw", 1)]
)
def test_split_channels_deinterleaves(encoding: str, sample: int) -> None:
    frames = [bytes([f * 2] * sample) + bytes([f * 2 + 1] * sample) for f in range(5)]
    left, right = split_channels(b"".join(frames), encoding, 2)  # type: ignore[arg-type]
    assert left == b"".join(bytes([f * 2] * sample) for f in range(5))
    assert right == b"".join(bytes([f * 2 + 1] * sample) for f in range(5))


@pytest.mark.parametrize(
    ("encoding", "size"), [("mulaw", 3), ("alaw", 1), ("pcm_s16le", 6), ("pcm_f32le", 12)]
)
def test_split_channels_refuses_a_partial_sample_frame(encoding: str, size: int) -> None:
    with pytest.raises(FrameError) as caught:
        split_channels(b"\x00" * size, encoding, 2)  # type: ignore[arg-type]
    assert f"{size} bytes" in str(caught.value)
    assert "2-channel" in str(caught.value)
