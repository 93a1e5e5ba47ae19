"""Segmentation quality in noisy rooms: each detector and hangover length, clean and noisy.

Synthetic conversations with known bounds: eight espeak-ng utterances (six voices,
every second one broken by a 150-450 ms hesitation that is still inside the utterance)
separated by 0.7-2.5 s pauses, over a -60 dBFS floor, then clean, in white noise at
20/10/5/0 dB SNR, or in babble (five other talkers) at 20/10 dB. SNR is the speech's
RMS over its utterances against the noise's RMS. The clean conversation is also
played 30 dB quieter (a quiet speaker in a quiet room).

All figures are deterministic counts, not timings:

- frame level (no hangover): F1 of each detector's speech/non-speech decisions
  against the frames where the clean speech is within 30 dB of its mean level;
- end to end, ``vad.StreamSegmenter`` fed 20 ms pcm_s16le chunks as a session is:
  utterances found (a speech start within 500 ms of the true start), starts that
  match no utterance, boundary error (speech start and end against the truth),
  share of segment time outside speech, share of ``too_short`` segments, and the
  endpoint delay: audio from an utterance's true end to the chunk whose processing
  emitted its last segment (what the label waits for before inference).

    .venv/bin/python -m bench.vad_quality [--quick] [--seeds 3] [--endpoints 200 400/200@1500 ...]
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import report
from bench.audio import SAMPLE_RATE_HZ, SENTENCES, VOICES, speak
from vad import Segment, SegmenterConfig, SpeechEnd, SpeechStart, StreamSegmenter
from vad.detector import WebRtcDetector
from vad.framing import to_int16
from vad.silero import SileroDetector, shared_model

NAME = "vad_quality"
Float = npt.NDArray[np.float32]
CHUNK_SAMPLES = SAMPLE_RATE_HZ * 20 // 1000
UTTERANCES = 8
FOUND_WITHIN_S = 0.5
CONDITIONS = ("clean", "white20", "white10", "white5", "white0", "babble20", "babble10", "quiet")
TRUTH_BELOW_MEAN_DB = 30.0
DEFAULT = "400/200@1500"  # SegmenterConfig's own: hangover_ms / short_hangover_ms @ ..._after_ms
DEFAULT_ENDPOINTS = ("200", "300", "400", "500", "600", DEFAULT)


@dataclass(frozen=True)
class Endpoint:
    """A hangover, with or without the short one (vad.SegmenterConfig.short_hangover_ms)."""

    hangover_ms: int
    short_hangover_ms: int = 0
    short_hangover_after_ms: int = 0

    @property
    def name(self) -> str:
        if not self.short_hangover_ms:  # the short hangover off
            return str(self.hangover_ms)
        return f"{self.hangover_ms}/{self.short_hangover_ms}@{self.short_hangover_after_ms}"

    def apply(self, config: SegmenterConfig) -> SegmenterConfig:
        return replace(
            config,
            hangover_ms=self.hangover_ms,
            short_hangover_ms=self.short_hangover_ms,
            short_hangover_after_ms=self.short_hangover_after_ms,
        )


def endpoint(text: str) -> Endpoint:
    try:
        if "/" not in text:
            return Endpoint(int(text))  # one hangover, the short one off
        hangover, rest = text.split("/")
        short, after = rest.split("@")
        return Endpoint(int(hangover), int(short), int(after))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected HANGOVER_MS or HANGOVER_MS/SHORT_MS@AFTER_MS, e.g. 400/200@1500"
        ) from None


@dataclass(frozen=True)
class Conversation:
    audio: Float
    speech: Float  # the speech alone, for the frame-level truth
    spans: list[tuple[float, float]]


@functools.cache
def _voice(sentence: int, voice: int) -> Float:
    return speak(SENTENCES[sentence % len(SENTENCES)], VOICES[voice % len(VOICES)])


def conversation(seed: int) -> Conversation:
    rng = np.random.default_rng(seed)
    parts: list[Float] = []
    spans = []
    position = 0
    for i in range(UTTERANCES):
        pause = np.zeros(round(rng.uniform(0.7, 2.5) * SAMPLE_RATE_HZ), np.float32)
        utterance = _voice(seed + i, seed * 7 + i)
        if i % 2:  # a hesitation: the sentence broken by a pause a hangover must bridge
            cut = utterance.size // 2
            gap = np.zeros(round(rng.uniform(0.15, 0.45) * SAMPLE_RATE_HZ), np.float32)
            utterance = np.concatenate([utterance[:cut], gap, utterance[cut:]])
        utterance = utterance * np.float32(rng.uniform(0.3, 0.9))
        parts += [pause, utterance]
        start = position + pause.size
        position = start + utterance.size
        spans.append((start / SAMPLE_RATE_HZ, position / SAMPLE_RATE_HZ))
    parts.append(np.zeros(2 * SAMPLE_RATE_HZ, np.float32))
    speech = np.concatenate(parts)
    return Conversation(speech, speech, spans)


def babble(samples: int, seed: int, talkers: int = 5) -> Float:
    """Five other talkers, each an endless run of sentences, summed at equal level."""
    rng = np.random.default_rng(10_000 + seed)
    mix = np.zeros(samples, np.float32)
    for talker in range(talkers):
        track: list[Float] = [np.zeros(int(rng.integers(0, SAMPLE_RATE_HZ)), np.float32)]
        while sum(t.size for t in track) < samples:
            clip = _voice(int(rng.integers(0, 100)), talker + 1)
            track += [
                clip / np.float32(rms(clip)),
                np.zeros(int(rng.integers(800, 4000)), np.float32),
            ]
        mix += np.concatenate(track)[:samples]
    return mix


def rms(audio: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def speech_rms(conv: Conversation) -> float:
    mask = np.zeros(conv.speech.size, bool)
    for start, end in conv.spans:
        mask[round(start * SAMPLE_RATE_HZ) : round(end * SAMPLE_RATE_HZ)] = True
    return rms(conv.speech[mask])


def condition(conv: Conversation, name: str, seed: int) -> Conversation:
    rng = np.random.default_rng(20_000 + seed)
    floor = rng.normal(0.0, 1e-3, conv.speech.size).astype(np.float32)
    if name == "clean":
        return replace(conv, audio=conv.speech + floor)
    if name == "quiet":  # 30 dB quieter speaker, same room floor scaled to stay 60 dB down
        quiet = conv.speech * np.float32(10 ** (-30 / 20))
        return Conversation(quiet + floor * np.float32(10 ** (-30 / 20)), quiet, conv.spans)
    kind, snr_db = name.rstrip("0123456789"), float(name.lstrip("abcehilrtw"))
    noise = (
        rng.standard_normal(conv.speech.size).astype(np.float32)
        if kind == "white"
        else babble(conv.speech.size, seed)
    )
    scale = speech_rms(conv) / rms(noise) / 10 ** (snr_db / 20)
    mixed = conv.speech + noise * np.float32(scale)
    peak = float(np.max(np.abs(mixed)))
    gain = np.float32(min(1.0, 0.99 / peak))
    return Conversation(mixed * gain, conv.speech * gain, conv.spans)


def truth_frames(conv: Conversation, frame: int) -> npt.NDArray[np.bool_]:
    count = conv.speech.size // frame
    frames = conv.speech[: count * frame].reshape(count, frame).astype(np.float64)
    power = np.mean(frames**2, axis=1)
    return power >= speech_rms(conv) ** 2 * 10 ** (-TRUTH_BELOW_MEAN_DB / 10)


def f1(decided: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> float:
    tp = float(np.sum(decided & truth))
    fp = float(np.sum(decided & ~truth))
    fn = float(np.sum(~decided & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


# Detectors: frame decisions are computed once per condition and replayed for each
# hangover (the decisions do not depend on it; the segmenter's energy trim sees the audio).

DetectorMaker = Callable[[], Callable[[npt.NDArray[np.int16]], bool]]
NO_GATE = " (no babble gate)"


def detectors(quick: bool) -> dict[str, tuple[SegmenterConfig, DetectorMaker]]:
    silero = SegmenterConfig(detector="silero")
    makers: dict[str, tuple[SegmenterConfig, DetectorMaker]] = {
        "silero": (silero, lambda: SileroDetector(shared_model()))
    }
    for level in (2,) if quick else (2, 3):
        config = SegmenterConfig(detector="webrtc", aggressiveness=level)
        makers[f"webrtc{level}"] = (config, functools.partial(WebRtcDetector, level, 16000))
    # The same decisions segmented without the babble gate (vad/gate.py), to show its effect.
    for label, (config, make) in list(makers.items()):
        makers[label + NO_GATE] = (replace(config, babble_gate_db=0.0), make)
    return makers


class Replay:
    def __init__(self, flags: list[bool]) -> None:
        self._flags: Iterator[bool] = iter(flags)

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        return next(self._flags, False)


def decisions(samples: npt.NDArray[np.int16], frame: int, make: DetectorMaker) -> list[bool]:
    detector = make()
    count = samples.size // frame
    return [bool(detector(samples[i * frame : (i + 1) * frame])) for i in range(count)]


def raw_silero(samples: npt.NDArray[np.int16], threshold: float = 0.5) -> list[bool]:
    detector = SileroDetector(shared_model())
    frame = detector.frame_samples
    return [
        detector.speech_probability(samples[i * frame : (i + 1) * frame]) >= threshold
        for i in range(samples.size // frame)
    ]


def segment(
    samples: npt.NDArray[np.int16], config: SegmenterConfig, flags: list[bool]
) -> tuple[list[tuple[float, object]], float]:
    """Every event with the audio time (s) at which it was emitted; the audio length."""
    stream = StreamSegmenter(config, SAMPLE_RATE_HZ, detector=Replay(flags))
    pcm = samples.astype("<i2").tobytes()
    events: list[tuple[float, object]] = []
    for offset in range(0, len(pcm), CHUNK_SAMPLES * 2):
        chunk = pcm[offset : offset + CHUNK_SAMPLES * 2]
        known = (offset // 2 + len(chunk) // 2) / SAMPLE_RATE_HZ
        events += [(known, e) for e in stream.feed_bytes(chunk)]
    end = samples.size / SAMPLE_RATE_HZ
    events += [(end, e) for e in stream.finish()]
    return events, end


def score(events: list[tuple[float, object]], spans: list[tuple[float, float]]) -> dict[str, Any]:
    starts = [e.t_ms / 1000 for _, e in events if isinstance(e, SpeechStart)]
    ends = [e.t_ms / 1000 for _, e in events if isinstance(e, SpeechEnd)]
    segments = [(known, e) for known, e in events if isinstance(e, Segment)]
    found, start_err, end_err, delays, extra_starts = 0, [], [], [], 0
    used: set[int] = set()
    for true_start, true_end in spans:
        near = [
            i
            for i, s in enumerate(starts)
            if i not in used and abs(s - true_start) <= FOUND_WITHIN_S
        ]
        if not near:
            continue
        i = min(near, key=lambda k: abs(starts[k] - true_start))
        used.add(i)
        found += 1
        start_err.append(abs(starts[i] - true_start))
        # The utterance's end: the first speech end at or after its last start inside it.
        later = [k for k, s in enumerate(starts) if true_start - FOUND_WITHIN_S <= s < true_end]
        last = max(later)
        if last < len(ends):
            end_err.append(abs(ends[last] - true_end))
        finals = [known for known, seg in segments if seg.start_ms / 1000 < true_end + 0.3]
        finals = [k for k in finals if k >= true_end - 0.05]
        if finals:
            delays.append(min(finals) - true_end)
    for i, s in enumerate(starts):
        inside = any(a - FOUND_WITHIN_S <= s <= b for a, b in spans)
        if i not in used:
            extra_starts += 1 if not inside else 0
    splits = sum(max(0, sum(a - FOUND_WITHIN_S <= s < b for s in starts) - 1) for a, b in spans)
    seg_time = sum(seg.duration_ms for _, seg in segments) / 1000
    outside = 0.0
    for _, seg in segments:
        a, b = seg.start_ms / 1000, seg.end_ms / 1000
        covered = sum(max(0.0, min(b, e) - max(a, s)) for s, e in spans)
        outside += (b - a) - covered
    return {
        "utterances": len(spans),
        "found": found,
        "false_starts": extra_starts,
        "splits": splits,
        "segments": len(segments),
        "too_short": sum(seg.too_short for _, seg in segments),
        "outside_share": outside / seg_time if seg_time else 0.0,
        "start_error_s": start_err,
        "end_error_s": end_err,
        "endpoint_delay_s": delays,
    }


def merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for key in ("utterances", "found", "false_starts", "splits", "segments", "too_short"):
        total[key] = sum(r[key] for r in rows)
    total["outside_share"] = float(np.mean([r["outside_share"] for r in rows]))
    boundary = list(itertools.chain(*(r["start_error_s"] + r["end_error_s"] for r in rows)))
    delays = list(itertools.chain(*(r["endpoint_delay_s"] for r in rows)))
    total["boundary_error_ms"] = report.percentiles([b * 1000 for b in boundary])
    total["endpoint_delay_ms"] = report.percentiles([d * 1000 for d in delays])
    total["too_short_share"] = total["too_short"] / total["segments"] if total["segments"] else 0
    return total


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="conversations per condition")
    parser.add_argument(
        "--endpoints",
        type=endpoint,
        nargs="+",
        default=[endpoint(e) for e in DEFAULT_ENDPOINTS],
        help="HANGOVER_MS (the short hangover off), or HANGOVER_MS/SHORT_MS@AFTER_MS",
    )
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.endpoints = 1, [endpoint(e) for e in ("300", "600", DEFAULT)]
        args.conditions = ["clean", "white0", "babble10"]
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    frame_rows: list[dict[str, Any]] = []
    e2e: dict[tuple[str, str, Endpoint], list[dict[str, Any]]] = {}
    makers = detectors(args.quick)
    for seed, name in itertools.product(range(args.seeds), args.conditions):
        conv = condition(conversation(seed), name, seed)
        samples = to_int16(conv.audio)
        raw = raw_silero(samples)
        truth = truth_frames(conv, 512)
        frame_rows.append({"detector": "silero", "condition": name, "seed": seed,
                           "f1": f1(np.array(raw), truth[: len(raw)])})  # fmt: skip
        decided: dict[int, list[bool]] = {}  # a detector's decisions serve both gate settings
        for label, (config, make) in makers.items():
            if id(make) not in decided:
                decided[id(make)] = decisions(samples, config.frame_samples, make)
            flags = decided[id(make)]
            if label.startswith("webrtc") and not label.endswith(NO_GATE):
                truth_w = truth_frames(conv, config.frame_samples)
                frame_rows.append({"detector": label, "condition": name, "seed": seed,
                                   "f1": f1(np.array(flags), truth_w[: len(flags)])})  # fmt: skip
            for point in args.endpoints:
                events, _ = segment(samples, point.apply(config), flags)
                e2e.setdefault((label, name, point), []).append(score(events, conv.spans))
    frame_f1 = []
    for (detector, name), group in itertools.groupby(
        sorted(frame_rows, key=lambda r: (r["detector"], r["condition"])),
        key=lambda r: (r["detector"], r["condition"]),
    ):
        frame_f1.append(
            {
                "detector": detector,
                "condition": name,
                "f1": float(np.mean([r["f1"] for r in group])),
            }
        )
    rows = [
        {
            "detector": d,
            "condition": c,
            "endpoint": p.name,
            "hangover_ms": p.hangover_ms,
            "short_hangover_ms": p.short_hangover_ms,
            "short_hangover_after_ms": p.short_hangover_after_ms,
            **merge(group),
        }
        for (d, c, p), group in e2e.items()
    ]
    return {
        "seeds": args.seeds,
        "utterances_per_conversation": UTTERANCES,
        "conditions": args.conditions,
        "frame_f1": frame_f1,
        "rows": rows,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    """Found and split against the hangover (the short hangover off); the default, with
    its short hangover, as a star at its hangover."""
    fig, axes = report.figure(10, 3.5, ncols=2)
    for detector in sorted({r["detector"] for r in data["rows"]}):
        for name in data["conditions"]:
            rows = [r for r in data["rows"] if r["detector"] == detector and r["condition"] == name]
            plain = sorted((r for r in rows if not r["short_hangover_ms"]),
                           key=lambda r: r["hangover_ms"])  # fmt: skip
            if not plain:
                continue
            hangovers = [r["hangover_ms"] for r in plain]
            line = axes[0].plot(hangovers, [r["found"] / r["utterances"] for r in plain],
                                marker="o", label=f"{detector} {name}")  # fmt: skip
            axes[1].plot(hangovers, [r["splits"] for r in plain], marker="o",
                         color=line[0].get_color())  # fmt: skip
            for r in rows:
                if r["short_hangover_ms"]:
                    color = line[0].get_color()
                    axes[0].plot([r["hangover_ms"]], [r["found"] / r["utterances"]], marker="*",
                                 color=color)  # fmt: skip
                    axes[1].plot([r["hangover_ms"]], [r["splits"]], marker="*", color=color)
    axes[0].set_xlabel("hangover (ms)")
    axes[0].set_ylabel("utterances found (share)")
    axes[1].set_xlabel("hangover (ms); star: with the short hangover")
    axes[1].set_ylabel("utterances split in two or more")
    axes[0].legend(fontsize=6)
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
