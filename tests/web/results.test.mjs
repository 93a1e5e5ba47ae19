import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { argmax, csvCell, SessionResults, vttTime } from "../../web/results.js";

const LABELS = ["neutral", "happy", "sad"];

function result(segment, startMs, endMs, scores, extra = {}) {
  return { segment, startMs, endMs, label: argmax(scores), confidence: Math.max(...Object.values(scores)), scores, latencyMs: 10 + segment, modelVersion: "v1", skipped: null, ...extra };
}

function skipped(segment, startMs, endMs, reason = "too_short") {
  return { segment, startMs, endMs, label: null, confidence: null, scores: null, latencyMs: null, modelVersion: null, skipped: reason };
}

function session() {
  const results = new SessionResults({ smoothing: 0.5 });
  results.setModel({ name: "tiny", version: "v1", labels: LABELS });
  return results;
}

describe("SessionResults", () => {
  it("places segments on the timeline by offset", () => {
    const results = session();
    results.add(result(0, 100, 900, { neutral: 0.8, happy: 0.1, sad: 0.1 }), 0, "live");
    const entry = results.add(result(0, 0, 500, { neutral: 0.1, happy: 0.8, sad: 0.1 }), 2000, "upload", "a.wav");
    assert.equal(entry.startMs, 2000);
    assert.equal(entry.endMs, 2500);
    assert.equal(entry.index, 1);
    assert.equal(results.endMs(), 2500);
  });

  it("computes each emotion's share of classified time, ignoring skipped segments", () => {
    const results = session();
    results.add(result(0, 0, 3000, { neutral: 0.6, happy: 0.3, sad: 0.1 }), 0, "live");
    results.add(skipped(1, 3000, 3200), 0, "live");
    results.add(result(2, 4000, 5000, { neutral: 0.1, happy: 0.2, sad: 0.7 }), 0, "live");
    const { totalMs, byLabel } = results.summary();
    assert.equal(totalMs, 4000);
    assert.deepEqual(byLabel, { neutral: { ms: 3000, share: 0.75 }, happy: { ms: 0, share: 0 }, sad: { ms: 1000, share: 0.25 } });
  });

  it("smooths scores with an exponential moving average over segments", () => {
    const results = session();
    results.add(result(0, 0, 1000, { neutral: 1, happy: 0, sad: 0 }), 0, "live");
    results.add(skipped(1, 1000, 1100), 0, "live");
    results.add(result(2, 2000, 3000, { neutral: 0, happy: 1, sad: 0 }), 0, "live");
    results.add(result(3, 3000, 4000, { neutral: 0, happy: 1, sad: 0 }), 0, "live");
    const smoothed = results.smoothed();
    assert.equal(smoothed.length, 3);
    assert.deepEqual(smoothed.map((s) => s.scores.happy), [0, 0.5, 0.75]);
    assert.deepEqual(smoothed.map((s) => s.label), ["neutral", "neutral", "happy"]);
    assert.equal(smoothed[2].confidence, 0.75);
  });

  it("exports JSON with every segment and the summary", () => {
    const results = session();
    results.add(result(0, 0, 1000, { neutral: 0.2, happy: 0.5, sad: 0.3 }), 500, "recording", "recording.wav");
    results.add(skipped(1, 1000, 1200, "overloaded"), 500, "recording", "recording.wav");
    const json = JSON.parse(JSON.stringify(results.toJSON()));
    assert.deepEqual(json.model, { name: "tiny", version: "v1", labels: LABELS });
    assert.deepEqual(json.segments[0], { source: "recording", origin: "recording.wav", segment: 0, start_ms: 500, end_ms: 1500, label: "happy", confidence: 0.5, scores: { neutral: 0.2, happy: 0.5, sad: 0.3 }, skipped: null, latency_ms: 10, model_version: "v1" });
    assert.equal(json.segments[1].skipped, "overloaded");
    assert.equal(json.summary.byLabel.happy.share, 1);
  });

  it("exports CSV with one column per label", () => {
    const results = session();
    results.add(result(0, 0, 1000, { neutral: 0.2, happy: 0.5, sad: 0.3 }), 0, "upload", 'my "best", take.wav');
    results.add(skipped(1, 1000, 1200), 0, "live");
    const lines = results.toCSV().split("\r\n");
    assert.equal(lines[0], "source,origin,segment,start_ms,end_ms,label,confidence,skipped,latency_ms,model_version,score_neutral,score_happy,score_sad");
    assert.equal(lines[1], 'upload,"my ""best"", take.wav",0,0,1000,happy,0.5,,10,v1,0.2,0.5,0.3');
    assert.equal(lines[2], "live,,1,1000,1200,,,too_short,,,,,");
    assert.equal(lines[3], "");
  });

  it("defuses spreadsheet formulas in text cells but not numbers", () => {
    assert.equal(csvCell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    assert.equal(csvCell("@cmd"), "'@cmd");
    assert.equal(csvCell(-1.5), "-1.5");
    assert.equal(csvCell("line\nbreak"), '"line\nbreak"');
  });

  it("refuses unknown sources and bad offsets", () => {
    const results = session();
    const seg = result(0, 0, 1, { neutral: 1, happy: 0, sad: 0 });
    assert.throws(() => results.add(seg, 0, "radio"), /"radio"/);
    assert.throws(() => results.add(seg, -1, "live"), /offsetMs.*-1/);
    assert.throws(() => results.add(seg, Number.NaN, "live"), /offsetMs.*NaN/);
    assert.throws(() => new SessionResults({ smoothing: 0 }), /smoothing.*0/);
  });

  it("takes labels from the segments before a model is known, and clears", () => {
    const results = new SessionResults();
    results.add(result(0, 0, 1, { a: 0.4, b: 0.6 }), 0, "upload");
    assert.deepEqual(results.labels, ["a", "b"]);
    results.clear();
    assert.equal(results.entries.length, 0);
    assert.equal(results.summary().totalMs, 0);
  });

  it("writes WebVTT: one cue per segment with its label and confidence, or why it was skipped", () => {
    const results = session();
    results.add(result(0, 1200, 3400, { neutral: 0.1, happy: 0.81, sad: 0.09 }), 0, "live");
    results.add(skipped(1, 3600, 3900), 0, "live");
    results.add(result(0, 0, 500, { neutral: 0.6, happy: 0.3, sad: 0.1 }), 3725000, "upload", "a.wav");
    const vtt = results.toVTT();
    assert.equal(vtt, "WEBVTT\n\n1\n00:00:01.200 --> 00:00:03.400\nhappy 0.81\n\n2\n00:00:03.600 --> 00:00:03.900\n(not classified: too_short)\n\n3\n01:02:05.000 --> 01:02:05.500\nneutral 0.60\n");
    assert.equal(new SessionResults().toVTT(), "WEBVTT\n");
    assert.equal(vttTime(-3), "00:00:00.000");
    assert.equal(vttTime(59999.6), "00:01:00.000");
  });

  it("snapshots plain data and restores it exactly, refusing damaged entries", () => {
    const results = session();
    results.add(result(0, 100, 900, { neutral: 0.8, happy: 0.1, sad: 0.1 }), 0, "live");
    results.add(skipped(1, 1000, 1200, "overloaded"), 0, "live");
    const snap = results.snapshot();
    assert.deepEqual(JSON.parse(JSON.stringify(snap)), snap, "only plain JSON data");
    snap.entries[0].scores.neutral = 0; // a copy: the store's entries are not shared
    assert.equal(results.entries[0].scores.neutral, 0.8);
    const again = session();
    for (const entry of results.snapshot().entries) again.restore(entry);
    assert.deepEqual(again.toJSON(), results.toJSON());
    const good = results.snapshot().entries[0];
    for (const [bad, pattern] of [
      [null, /not an object/],
      [{ ...good, source: "tape" }, /unknown source/],
      [{ ...good, startMs: 5, endMs: 2 }, /bad span/],
      [{ ...good, startMs: 1.5 }, /bad span/],
      [{ ...good, segment: -1 }, /bad number/],
      [{ ...good, label: "angry" }, /no score/],
      [{ ...good, scores: null }, /no score/],
    ]) {
      assert.throws(() => again.restore(bad), pattern);
    }
  });
});
