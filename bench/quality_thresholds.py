"""The signal measures of ``quality=1`` on crafted conditions (docs/quality.md).

Speech by espeak-ng (several sentences and voices) under each condition, segmented by
the default segmenter (Silero) as the server does; prints the measures' range per
condition, from which the warning thresholds in server/quality.py were chosen.

    python -m bench.quality_thresholds
"""

from __future__ import annotations

import argparse

import numpy as np

import vad
from bench.audio import silence, speak
from pcm.format import PIPELINE_RATE_HZ, to_float, to_int16
from server.quality import measure

SENTENCES = (
    "I can't believe you did that again, it is unbelievable.",
    "The weather will be mild tomorrow with some rain in the evening.",
    "Please put the books back on the shelf when you are done.",
    "We were so happy to see all of you at the party last night.",
)
VOICES = ("en", "en-us", "en+f3", "de")


def conditions(speech: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    padded = np.concatenate([silence(0.5), speech, silence(0.8)])
    power = float(np.mean(np.square(speech)))
    level = np.sqrt(power)
    out = {"clean": padded}
    for snr in (0, 5, 10, 15, 20, 30):
        noise = rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), padded.size)
        out[f"white {snr} dB"] = np.clip(padded + noise, -1, 1)
    for dbfs in (-30, -40, -45, -50):
        out[f"{dbfs} dBFS"] = padded * (10 ** (dbfs / 20) / level)
    for gain in (6, 12, 24):
        out[f"+{gain} dB clipped"] = np.clip(padded * 10 ** (gain / 20), -1, 1)
    # As a client's pcm_s16le would carry it.
    return {name: to_float(to_int16(a.astype(np.float32))) for name, a in out.items()}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0]).parse_args(argv)
    rng = np.random.default_rng(0)
    rows: dict[str, list[tuple[float, ...]]] = {}
    for i, text in enumerate(SENTENCES):
        speech = speak(text, voice=VOICES[i % len(VOICES)], rate_wpm=160)
        for name, audio in conditions(speech, rng).items():
            segmenter = vad.StreamSegmenter(vad.SegmenterConfig(), PIPELINE_RATE_HZ, "pcm_f32le")
            events = segmenter.feed_audio(audio) + segmenter.finish()
            for s in (e for e in events if isinstance(e, vad.Segment) and not e.too_short):
                q = measure(s.audio, s.voiced_samples)
                rows.setdefault(name, []).append((q.speech, q.snr_db, q.level_dbfs, q.clipped))
    print(f"{'condition':18} n  speech      snr_db        level_dbfs      clipped")
    for name, values in rows.items():
        a = np.array(values)
        lo, hi = a.min(axis=0), a.max(axis=0)
        print(
            f"{name:18} {len(a):2} {lo[0]:.2f}-{hi[0]:.2f}  {lo[1]:5.1f}-{hi[1]:5.1f}  "
            f"{lo[2]:6.1f}-{hi[2]:6.1f}  {lo[3]:.4f}-{hi[3]:.4f}"
        )


if __name__ == "__main__":
    main()
