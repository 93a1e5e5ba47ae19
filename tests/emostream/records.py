"""Reading the command's output formats back into records, and streaming from standard input."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from typing import Any

from tests.served import REPO

Rec = dict[str, Any]


def read_jsonl(text: str) -> list[Rec]:
    return [json.loads(line) for line in text.splitlines()]


def read_csv(text: str) -> list[Rec]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    out = []
    for row in rows:
        number = {"segment": int, "start_ms": int, "end_ms": int, "latency_ms": int}
        rec: Rec = {k: (number[k](v) if k in number and v else v or None) for k, v in row.items()}
        rec["confidence"] = float(row["confidence"]) if row["confidence"] else None
        rec["scores"] = {
            k.removeprefix("score_"): float(v)
            for k, v in row.items()
            if k.startswith("score_") and v
        }
        for key in list(rec):
            if key.startswith("score_"):
                del rec[key]
        out.append(rec)
    return out


VTT_CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n(.+)"
)


def read_vtt(text: str) -> list[tuple[int, int, str]]:
    assert text.startswith("WEBVTT\n")
    cues = []
    for block in text.split("\n\n")[1:]:
        match = VTT_CUE.fullmatch(block.strip())
        assert match, block
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in match.groups()[1:9])
        start = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
        end = ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2
        cues.append((start, end, match.group(10)))
    return cues


TABLE_ROW = re.compile(
    r" +#(\d+) +(\d+\.\d\d)–\s*(\d+\.\d\d) s  "
    r"(?:\(skipped: (\w+)\)|(\S+) +(\d\.\d\d)(?:  \((.*)\))?)"
)


def read_table(text: str) -> list[tuple[int, float, float, str | None, str | None]]:
    rows = []
    for line in text.splitlines():
        match = TABLE_ROW.fullmatch(line)
        if match:
            n, start, end, reason, label, _, _ = match.groups()
            rows.append((int(n), float(start), float(end), label, reason))
    return rows


def stream_stdin(url: str, data: bytes, *args: str, env: dict[str, str] | None = None) -> Any:
    command = [str(REPO / ".venv/bin/emostream"), "stream", "-", "--url", url, *args]
    return subprocess.run(
        command,
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


# --quality ----------------------------------------------------------------------

QUALITY_KEYS = {"uncertain", "warnings", "quality"}


def check_quality_outputs(texts: dict[str, str], reply_segments: list[Rec]) -> None:
    """JSON lines carry the fields, CSV the columns, WebVTT a note per classified cue."""
    records = read_jsonl(texts["jsonl"])
    classified = [r for r in records if r["type"] == "result"]
    assert classified and len(records) == len(reply_segments)
    for rec, segment in zip(records, reply_segments, strict=True):
        if rec["type"] == "skipped":
            assert not QUALITY_KEYS & set(rec)
            continue
        assert rec["uncertain"] is segment["uncertain"] is bool(rec["warnings"])
        assert rec["warnings"] == segment["warnings"]
        assert rec["quality"] == segment["quality"]
    rows = list(csv.DictReader(io.StringIO(texts["csv"], newline="")))
    assert {"uncertain", "warnings", "speech", "snr_db", "level_dbfs", "clipped"} <= set(rows[0])
    for row, rec in zip(rows, records, strict=True):
        if rec["type"] == "skipped":
            assert row["uncertain"] == row["snr_db"] == ""
        else:
            assert row["uncertain"] == str(rec["uncertain"]).lower()
            assert row["warnings"].split() == rec["warnings"]
            assert float(row["snr_db"]) == rec["quality"]["snr_db"]
    vtt = texts["vtt"]
    for rec in classified:
        where = f"channel {rec['channel']} " if "channel" in rec else ""
        speech = rec["quality"]["speech"]
        assert f"NOTE {where}segment {rec['segment']} quality: speech {speech}" in vtt
        if rec["uncertain"]:
            assert f"(uncertain: {', '.join(rec['warnings'])})" in vtt
    table = texts["table"]
    if any(r["uncertain"] for r in classified):
        assert "uncertain: " in table
