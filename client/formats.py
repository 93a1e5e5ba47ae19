"""Segment records and the CLI's output formats: table, JSON lines, CSV and WebVTT.

A record is one segment message (``result``, ``skipped``, or ``partial`` when asked for)
with the same fields in every format, so each format reads back into the same records:
``type, file, segment, start_ms, end_ms, label, confidence, reason, latency_ms,
model_version`` and the ``scores`` of every label; with ``--quality`` (``quality=1``)
also ``uncertain``, ``warnings`` and ``quality``. Partials appear in the table and in
JSON lines only; CSV and WebVTT hold each segment's final record (docs/cli.md).

Two-channel output (``classify --channels separate``, ``stream --channels 2``) adds
``channel`` to every record: a field in JSON lines, a column after ``file`` in CSV, a
``ch N`` column in the table and a voice tag (``<v channel N>``) on each WebVTT cue.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

FORMATS = ("table", "jsonl", "csv", "vtt")
EXTENSIONS = {"table": "txt", "jsonl": "jsonl", "csv": "csv", "vtt": "vtt"}
FIELDS = (
    "type",
    "file",
    "segment",
    "start_ms",
    "end_ms",
    "label",
    "confidence",
    "reason",
    "latency_ms",
    "model_version",
)
CHANNEL_FIELDS = (*FIELDS[:2], "channel", *FIELDS[2:])
# CSV columns of a run with --quality: uncertain, the warnings (space-separated), the measures.
QUALITY_FIELDS = ("uncertain", "warnings", "speech", "snr_db", "level_dbfs", "clipped")
SEGMENT_TYPES = frozenset({"result", "skipped", "partial"})
Record = dict[str, Any]


def record(message: Mapping[str, Any], file: str) -> Record:
    """The record of a stream message, or of an upload reply's segment (which has no type)."""
    kind = message.get("type") or ("skipped" if "reason" in message else "result")
    if kind not in SEGMENT_TYPES:
        raise ValueError(f"not a segment message: type {kind!r}")
    channel = {"channel": message["channel"]} if "channel" in message else {}
    return {
        "type": kind,
        "file": file,
        **channel,
        "segment": message["segment"],
        "start_ms": message["start_ms"],
        "end_ms": message["end_ms"],
        "label": message.get("label"),
        "confidence": message.get("confidence"),
        "reason": message.get("reason"),
        "latency_ms": message.get("latency_ms"),
        "model_version": message.get("model_version"),
        "scores": dict(message.get("scores") or {}),
        **_quality_of(message),
    }


def _quality_of(message: Mapping[str, Any]) -> Record:
    """``uncertain``, ``warnings`` and ``quality`` when the message carries them (quality=1)."""
    if "uncertain" not in message:
        return {}
    return {
        "uncertain": message["uncertain"],
        "warnings": list(message.get("warnings") or []),
        "quality": dict(message.get("quality") or {}),
    }


def _uncertain_note(rec: Record) -> str:
    return f"uncertain: {', '.join(rec['warnings'])}" if rec.get("uncertain") else ""


class Sink(Protocol):
    """Where a writer's text goes: an open text file, standard output."""

    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


class Writer(Protocol):
    def begin(self, file: str, duration_ms: int | None) -> None: ...
    def write(self, rec: Record) -> None: ...
    def end(self, summary: Mapping[str, Any] | None) -> None: ...


def writer(
    fmt: str, out: Sink, labels: Sequence[str], quality: bool = False, channels: bool = False
) -> Writer:
    """``quality``: the run asked for quality=1 (CSV then has the QUALITY_FIELDS columns);
    ``channels``: the records carry ``channel`` (two-channel audio); CSV gets its column."""
    if fmt == "table":
        return TableWriter(out)
    if fmt == "jsonl":
        return JsonLinesWriter(out)
    if fmt == "csv":
        return CsvWriter(out, labels, quality, channels)
    if fmt == "vtt":
        return VttWriter(out)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


class TableWriter:
    """For people: a header per file, a line per segment, the overall label at the end."""

    def __init__(self, out: Sink) -> None:
        self._out = out

    def begin(self, file: str, duration_ms: int | None) -> None:
        length = "" if duration_ms is None else f"  ({duration_ms / 1000:.1f} s)"
        self._line(f"{file}{length}")

    def write(self, rec: Record) -> None:
        span = f"{rec['start_ms'] / 1000:7.2f}–{rec['end_ms'] / 1000:6.2f} s"
        channel = f"ch {rec['channel']}  " if "channel" in rec else ""
        head = f"  {channel}#{rec['segment']:<3} {span}  "
        if rec["type"] == "skipped":
            self._line(f"{head}(skipped: {rec['reason']})")
            return
        latency = "" if rec["latency_ms"] is None else f"{rec['latency_ms']} ms"
        parts = ("partial" if rec["type"] == "partial" else "", latency, _uncertain_note(rec))
        note = ", ".join(part for part in parts if part)
        tail = f"  ({note})" if note else ""
        self._line(f"{head}{rec['label']:<8} {rec['confidence']:.2f}{tail}")

    def end(self, summary: Mapping[str, Any] | None) -> None:
        if summary is None:
            return
        self._line(f"  overall: {_readout(summary)}")

    def channel_summary(self, channel: int, summary: Mapping[str, Any]) -> None:
        """A two-channel file's summary of one channel, after the overall one."""
        self._line(f"  ch {channel}: {_readout(summary)}")

    def _line(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


def _readout(summary: Mapping[str, Any]) -> str:
    label = summary.get("label")
    return f"{label} {summary.get('confidence', 0):.2f}" if label else "—"


class JsonLinesWriter:
    """One JSON object per line, partials included, written as each record comes."""

    def __init__(self, out: Sink) -> None:
        self._out = out

    def begin(self, file: str, duration_ms: int | None) -> None:
        pass

    def write(self, rec: Record) -> None:
        self._out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._out.flush()

    def end(self, summary: Mapping[str, Any] | None) -> None:
        pass


def csv_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading ``'``; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class CsvWriter:
    """A header, then one row per final record, with a ``score_<label>`` column per label
    (and, with ``quality``, the QUALITY_FIELDS columns after them)."""

    def __init__(
        self, out: Sink, labels: Sequence[str], quality: bool = False, channels: bool = False
    ) -> None:
        self._labels = list(labels)
        self._quality = quality
        self._fields = CHANNEL_FIELDS if channels else FIELDS
        self._out = out
        self._csv = csv.writer(out)
        extra = QUALITY_FIELDS if quality else ()
        self._csv.writerow([*self._fields, *(f"score_{label}" for label in self._labels), *extra])

    def begin(self, file: str, duration_ms: int | None) -> None:
        pass

    def write(self, rec: Record) -> None:
        if rec["type"] == "partial":
            return
        scores = rec["scores"]
        row = [csv_cell(rec.get(name)) for name in self._fields]
        row += [scores.get(label, "") for label in self._labels]
        if self._quality:
            row += self._quality_cells(rec)
        self._csv.writerow(row)
        self._out.flush()

    @staticmethod
    def _quality_cells(rec: Record) -> list[Any]:
        if "uncertain" not in rec:  # a skipped segment has no measures
            return [""] * len(QUALITY_FIELDS)
        measures = rec["quality"]
        return [
            str(rec["uncertain"]).lower(),
            " ".join(rec["warnings"]),
            *(measures.get(name, "") for name in QUALITY_FIELDS[2:]),
        ]

    def end(self, summary: Mapping[str, Any] | None) -> None:
        pass


def vtt_time(ms: float) -> str:
    total = max(0, round(ms))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


class VttWriter:
    """WebVTT: one cue per final record, ``label confidence`` or why it was not classified.

    With quality=1 an uncertain result's cue has a second line naming its warnings, and
    every classified cue is preceded by a NOTE with its signal measures."""

    def __init__(self, out: Sink) -> None:
        self._out = out
        self._cues = 0
        out.write("WEBVTT\n")
        out.flush()

    def begin(self, file: str, duration_ms: int | None) -> None:
        pass

    def write(self, rec: Record) -> None:
        if rec["type"] == "partial":
            return
        self._cues += 1
        if rec["type"] == "skipped":
            text = f"(not classified: {rec['reason']})"
        else:
            text = f"{rec['label']} {rec['confidence']:.2f}"
            if rec.get("uncertain"):
                text += f"\n({_uncertain_note(rec)})"
        if "channel" in rec:
            text = f"<v channel {rec['channel']}>{text}"
        if "quality" in rec:
            measures = ", ".join(f"{k} {v}" for k, v in rec["quality"].items())
            where = f"channel {rec['channel']} " if "channel" in rec else ""
            self._out.write(f"\nNOTE {where}segment {rec['segment']} quality: {measures}\n")
        start, end = vtt_time(rec["start_ms"]), vtt_time(rec["end_ms"])
        self._out.write(f"\n{self._cues}\n{start} --> {end}\n{text}\n")
        self._out.flush()

    def end(self, summary: Mapping[str, Any] | None) -> None:
        pass
