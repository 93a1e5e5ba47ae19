"""Benchmark audio: espeak-ng speech (a real voice's spectrum and pauses), cut to exact lengths."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from pcm.format import PIPELINE_RATE_HZ, pcm16_bytes

Float = npt.NDArray[np.float32]
SAMPLE_RATE_HZ = PIPELINE_RATE_HZ

SENTENCES = (
    "The quarterly numbers came in well above what anyone on the team expected.",
    "I told you three times already, please stop moving my things around.",
    "We walked along the river until the lights of the town disappeared behind us.",
    "Nobody called back, and the house was quiet for the rest of the evening.",
    "Could you check whether the train to the coast still leaves at nine?",
    "That is the most wonderful news I have heard in a very long time.",
)
VOICES = ("en", "en-us", "en-gb-x-rp", "en+f3", "en+m3", "en-us+f2")


def speak(text: str, voice: str = "en", rate_wpm: int = 165) -> Float:
    """``text`` spoken by espeak-ng at 16 kHz, float32, edge silences trimmed."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    decoded, rate = sf.read(io.BytesIO(wav), dtype="float32")
    audio: Float = soxr.resample(decoded, rate, SAMPLE_RATE_HZ).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def speech_of_length(seconds: float, seed: int = 0) -> Float:
    """Exactly ``seconds`` of continuous speech (sentences joined, then cut)."""
    samples = round(seconds * SAMPLE_RATE_HZ)
    parts: list[Float] = []
    i = seed
    while sum(p.size for p in parts) < samples:
        parts.append(speak(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)]))
        i += 1
    return np.concatenate(parts)[:samples]


def paused_speech(seconds: float = 3.0, first_s: float = 1.6, pause_s: float = 0.5) -> Float:
    """``seconds`` of speech with one pause: ``first_s`` of speech, ``pause_s`` of silence,
    then other speech to the end. The segmenter cuts it in two (1.7 s and 1.1 s at 3 s)."""
    rest = speech_of_length(seconds - first_s - pause_s, seed=1)
    return np.concatenate([speech_of_length(first_s), silence(pause_s), rest])


def silence(seconds: float) -> Float:
    return np.zeros(round(seconds * SAMPLE_RATE_HZ), dtype=np.float32)


def write_wav(path: Path, audio: Float) -> Path:
    sf.write(path, audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def wav_bytes(audio: Float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def to_pcm16(audio: Float) -> bytes:
    return pcm16_bytes(audio)


def synthetic_set(count: int, seed: int = 0) -> list[Float]:
    """Evaluation clips for int8-vs-fp32 agreement: speech 1-3 s, some noisy, some tones."""
    rng = np.random.default_rng(seed)
    clips: list[Float] = []
    for i in range(count):
        seconds = float(rng.uniform(1.0, 3.0))
        clip = speech_of_length(seconds, seed=i)
        kind = i % 3
        if kind == 1:  # speech in white noise at about 10 dB SNR
            noise = rng.standard_normal(clip.size).astype(np.float32)
            clip = clip + noise * (np.std(clip) / 3.16)
        elif kind == 2:  # speech with a hum and a gain change
            t = np.arange(clip.size) / SAMPLE_RATE_HZ
            clip = 0.5 * clip + 0.05 * np.sin(2 * np.pi * 50 * t).astype(np.float32)
        clips.append(clip.astype(np.float32))
    return clips


def conversation(
    seconds: float, seed: int = 0, pause_s: tuple[float, float] = (1.5, 3.5)
) -> tuple[Float, list[tuple[float, float]]]:
    """About ``seconds`` of utterances separated by pauses (roughly half speech).

    Returns the audio (with a faint noise floor, like a real microphone) and each
    utterance's (start_s, end_s) in audio time.
    """
    rng = np.random.default_rng(seed)
    parts: list[Float] = []
    spans: list[tuple[float, float]] = []
    position = 0
    i = seed
    while position < seconds * SAMPLE_RATE_HZ:
        pause = np.zeros(round(rng.uniform(*pause_s) * SAMPLE_RATE_HZ), dtype=np.float32)
        utterance = speak(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)])
        parts += [pause, utterance]
        start = position + pause.size
        position = start + utterance.size
        spans.append((start / SAMPLE_RATE_HZ, position / SAMPLE_RATE_HZ))
        i += 1
    parts.append(np.zeros(round(pause_s[1] * SAMPLE_RATE_HZ), dtype=np.float32))
    audio = np.concatenate(parts)
    audio += rng.normal(0.0, 1e-3, audio.size).astype(np.float32)
    return audio, spans
