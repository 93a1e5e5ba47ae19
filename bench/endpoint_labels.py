"""What a shorter endpoint costs the label: emotional conversations segmented and classified.

A hangover short enough to end an utterance sooner also ends it at a long enough
hesitation, so the sentence reaches the page as two segments, each classified on its
own. This measures what that does to the labels. Conversations of eight utterances
from the synthetic corpus's test split (held-out voices and sentences, each with its
emotion; python -m training.synthetic.synth), every second one broken by a 150-450 ms hesitation
at its quietest point in the middle third (a pause between words), separated by
0.7-2.5 s pauses over a -60 dBFS floor, clean or in white noise at 10 dB SNR. Silero
decides the frames once; ``vad.StreamSegmenter`` segments them at each endpoint (a
hangover alone, or one with the short hangover after some speech) as a session does
(20 ms chunks, the babble gate on); the model classifies every segment that is not
``too_short``.

For each endpoint: utterances split, endpoint delay (audio from an utterance's true end
to the chunk whose processing emitted its last segment), segments classified and their
accuracy against the emotion of the utterance they overlap most, and each utterance's
accuracy as the page sums it up (its segments' scores averaged, weighted by duration).
Utterances are paired across endpoints: how many each one turns from right to wrong
and from wrong to right, against the longest plain hangover measured. Deterministic
counts, not timings.

    .venv/bin/python -m bench.endpoint_labels [--quick] [--conversations 30]
        [--endpoints 400 400/200@1500 ...]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import report, vad_quality
from bench.audio import SAMPLE_RATE_HZ
from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import read_manifest
from training.synthetic.acoustics import set_level
from training.synthetic.prosody import sample_prosody
from training.synthetic.synth import CorpusConfig, Partition, clip_rng, partition, plan_clip, speak
from vad import Segment, SegmenterConfig
from vad.framing import to_int16
from vad.silero import SileroDetector, shared_model

NAME = "endpoint_labels"
Float = npt.NDArray[np.float32]
UTTERANCES = 8
CONDITIONS = ("clean", "white10")
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"
HESITATION_S = (0.15, 0.45)
PAUSE_S = (0.7, 2.5)
DEFAULT_ENDPOINTS = (
    "200", "250", "300", "350", "400", "500", "600",
    "400/200@1000", "400/200@1500", "400/200@2000", "400/250@1500",
)  # fmt: skip


@dataclass(frozen=True)
class Labelled:
    conv: vad_quality.Conversation
    emotions: list[str]
    hesitation_s: list[float]  # 0 where the utterance has none


def emotional(index: int) -> tuple[str, Float]:
    """Test clip ``index`` of the default synthetic corpus, dry and uncropped, at its level."""
    config = CorpusConfig()
    spec = plan_clip("test", index, config, _test_partition())
    rng = clip_rng(config.seed, "test", index, 1)
    prosody = sample_prosody(spec.emotion, rng)
    audio = speak(spec.sentence.text, spec.voice, prosody, rng)
    return spec.emotion, set_level(audio, spec.channel.level_dbfs + prosody.gain_db)


@functools.cache
def _test_partition() -> Partition:
    return partition(CorpusConfig())


def quietest_point(audio: Float) -> int:
    """The start of the quietest 20 ms in the middle third: a pause between words."""
    step = SAMPLE_RATE_HZ // 50
    first, last = audio.size // 3, 2 * audio.size // 3
    starts = range(first, max(first + 1, last - step), step // 2)
    energy = [float(np.mean(np.square(audio[s : s + step], dtype=np.float64))) for s in starts]
    return starts[int(np.argmin(energy))] + step // 2


def conversation(number: int) -> Labelled:
    rng = np.random.default_rng([number, 77])
    parts: list[Float] = []
    spans, emotions, hesitations = [], [], []
    position = 0
    for i in range(UTTERANCES):
        pause = np.zeros(round(rng.uniform(*PAUSE_S) * SAMPLE_RATE_HZ), np.float32)
        emotion, utterance = emotional(number * UTTERANCES + i)
        hesitation = 0.0
        if i % 2:
            hesitation = float(rng.uniform(*HESITATION_S))
            cut = quietest_point(utterance)
            gap = np.zeros(round(hesitation * SAMPLE_RATE_HZ), np.float32)
            utterance = np.concatenate([utterance[:cut], gap, utterance[cut:]])
        parts += [pause, utterance]
        start = position + pause.size
        position = start + utterance.size
        spans.append((start / SAMPLE_RATE_HZ, position / SAMPLE_RATE_HZ))
        emotions.append(emotion)
        hesitations.append(hesitation)
    parts.append(np.zeros(2 * SAMPLE_RATE_HZ, np.float32))
    speech = np.concatenate(parts)
    return Labelled(vad_quality.Conversation(speech, speech, spans), emotions, hesitations)


def owner(segment: Segment, spans: list[tuple[float, float]]) -> int | None:
    """The utterance the segment overlaps most; None for a segment outside every one."""
    a, b = segment.start_ms / 1000, segment.end_ms / 1000
    overlaps = [max(0.0, min(b, end) - max(a, start)) for start, end in spans]
    best = int(np.argmax(overlaps))
    return best if overlaps[best] > 0 else None


class Labeller:
    """The model's scores for a segment, computed once per distinct audio (the endpoints
    of one conversation share most of their segments)."""

    def __init__(self, model_dir: Path) -> None:
        self._classifier = OnnxClassifier(model_dir, ThreadOptions())
        self.labels = list(self._classifier.manifest.labels)
        self._cache: dict[bytes, npt.NDArray[np.float64]] = {}
        self.computed = 0

    def scores(self, segment: Segment) -> npt.NDArray[np.float64]:
        key = hashlib.sha256(segment.audio.tobytes()).digest()
        if key not in self._cache:
            self._cache[key] = np.asarray(self._classifier.predict(segment.audio), np.float64)
            self.computed += 1
        return self._cache[key]


def label_rows(
    labelled: Labelled,
    segments: list[Segment],
    labeller: Labeller,
) -> tuple[list[bool], list[bool | None]]:
    """Per classified segment: right or wrong; per utterance: right, wrong or None (no
    classified segment)."""
    spans = labelled.conv.spans
    right_segments: list[bool] = []
    sums = [np.zeros(len(labeller.labels)) for _ in spans]
    weights = [0.0] * len(spans)
    for segment in segments:
        who = owner(segment, spans)
        if segment.too_short or who is None:
            continue
        scores = labeller.scores(segment)
        truth = labeller.labels.index(labelled.emotions[who])
        right_segments.append(int(np.argmax(scores)) == truth)
        sums[who] += scores * segment.duration_ms
        weights[who] += segment.duration_ms
    right_utterances: list[bool | None] = [
        None if weight == 0 else labeller.labels[int(np.argmax(total))] == emotion
        for total, weight, emotion in zip(sums, weights, labelled.emotions, strict=True)
    ]
    return right_segments, right_utterances


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=30, help="per condition")
    parser.add_argument(
        "--endpoints",
        type=vad_quality.endpoint,
        nargs="+",
        default=[vad_quality.endpoint(e) for e in DEFAULT_ENDPOINTS],
        help="HANGOVER_MS, or HANGOVER_MS/SHORT_MS@AFTER_MS: a short one after that much speech",
    )
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations, args.conditions = 1, ["clean"]
        args.endpoints = [vad_quality.endpoint(e) for e in ("250", "400/200@1500", "600")]
    if args.conversations * UTTERANCES > 600:
        parser.error("--conversations: the test split holds 600 clips, at most 75 conversations")
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    labeller = Labeller(args.model)
    config = SegmenterConfig(detector="silero")
    reference = max(args.endpoints, key=lambda e: (e.short_hangover_ms == 0, e.hangover_ms))
    names = [e.name for e in args.endpoints]
    rows = []
    for name in args.conditions:
        scored: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        right_seg: dict[str, list[bool]] = {n: [] for n in names}
        right_utt: dict[str, list[bool | None]] = {n: [] for n in names}
        hesitant: list[bool] = []
        for number in range(args.conversations):
            labelled = conversation(number)
            conv = vad_quality.condition(labelled.conv, name, number)
            labelled = replace(labelled, conv=conv)
            samples = to_int16(conv.audio)
            flags = vad_quality.decisions(
                samples, config.frame_samples, lambda: SileroDetector(shared_model())
            )
            hesitant += [h > 0 for h in labelled.hesitation_s]
            for point in args.endpoints:
                events, _ = vad_quality.segment(samples, point.apply(config), flags)
                scored[point.name].append(vad_quality.score(events, conv.spans))
                segments = [e for _, e in events if isinstance(e, Segment)]
                seg, utt = label_rows(labelled, segments, labeller)
                right_seg[point.name] += seg
                right_utt[point.name] += utt
        for point in args.endpoints:
            utt = right_utt[point.name]
            pairs = list(zip(utt, right_utt[reference.name], strict=True))
            rows.append(
                {
                    "condition": name,
                    "endpoint": point.name,
                    "hangover_ms": point.hangover_ms,
                    "short_hangover_ms": point.short_hangover_ms,
                    "short_hangover_after_ms": point.short_hangover_after_ms,
                    **vad_quality.merge(scored[point.name]),
                    "segments_classified": len(right_seg[point.name]),
                    "segment_accuracy": float(np.mean(right_seg[point.name])),
                    "utterances_labelled": sum(u is not None for u in utt),
                    "utterance_accuracy": _accuracy(utt),
                    "hesitant_utterance_accuracy": _accuracy(
                        [u for u, h in zip(utt, hesitant, strict=True) if h]
                    ),
                    "right_to_wrong": sum(bool(r) and u is not True for u, r in pairs),
                    "wrong_to_right": sum(u is True and not r for u, r in pairs),
                }
            )
    return {
        "conversations": args.conversations,
        "utterances_per_conversation": UTTERANCES,
        "conditions": args.conditions,
        "model": labeller_version(args.model),
        "reference_endpoint": reference.name,
        "segments_computed": labeller.computed,
        "rows": rows,
    }


def _accuracy(values: list[bool | None]) -> float:
    """Share right; an utterance without a classified segment counts as wrong."""
    return float(np.mean([v is True for v in values])) if values else 0.0


def labeller_version(model_dir: Path) -> str:
    return read_manifest(model_dir).version


def plot(data: dict[str, Any], out_dir: Path) -> None:
    """Each endpoint as a point: its endpoint delay p95 against segment accuracy and
    against utterances split."""
    fig, axes = report.figure(10, 3.5, ncols=2)
    for name in data["conditions"]:
        rows = [r for r in data["rows"] if r["condition"] == name]
        delay = [r["endpoint_delay_ms"]["p95"] for r in rows]
        line = axes[0].plot(delay, [r["segment_accuracy"] for r in rows], "o", label=name)
        axes[1].plot(delay, [r["splits"] for r in rows], "o", color=line[0].get_color())
        for r, x in zip(rows, delay, strict=True):
            axes[0].annotate(r["endpoint"], (x, r["segment_accuracy"]), fontsize=5)
            axes[1].annotate(r["endpoint"], (x, r["splits"]), fontsize=5)
    axes[0].set_xlabel("endpoint delay p95 (ms)")
    axes[0].set_ylabel("segment accuracy")
    axes[1].set_xlabel("endpoint delay p95 (ms)")
    axes[1].set_ylabel("utterances split")
    axes[0].legend(fontsize=6)
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)
    for row in data["rows"]:
        delay = row["endpoint_delay_ms"]
        print(
            f"{row['condition']:8} {row['endpoint']:>13}: split {row['splits']:3d}, "
            f"delay p50/p95 {delay['p50']:.0f}/{delay['p95']:.0f} ms, "
            f"segments {row['segments_classified']} at {row['segment_accuracy']:.3f}, "
            f"utterances {row['utterance_accuracy']:.3f} "
            f"(hesitant {row['hesitant_utterance_accuracy']:.3f}), "
            f"right->wrong {row['right_to_wrong']}, wrong->right {row['wrong_to_right']}"
        )


if __name__ == "__main__":
    main()
