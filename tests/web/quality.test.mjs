import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { parseServerMessage, parseClassifyReply } from "../../web/protocol.js";
import { announcement, isUncertain, leadHeldMs, uncertaintyReason, UNCERTAIN_WEIGHT, weightOf } from "../../web/quality.js";
import { argmax, SessionResults } from "../../web/results.js";
import { PageState } from "../../web/state.js";

const LABELS = ["neutral", "happy", "sad"];
const SCORES = { neutral: 0.2, happy: 0.7, sad: 0.1 };
const WIRE_QUALITY = { speech: 0.93, snr_db: 3.5, level_dbfs: -24.0, clipped: 0.042 };

function wire(type, extra = {}) {
  return JSON.stringify({ type, segment: 0, start_ms: 0, end_ms: 1000, label: "happy", confidence: 0.7, scores: SCORES, model_version: "v1", latency_ms: 3, ...extra });
}

function result(segment, startMs, endMs, scores, extra = {}) {
  return { segment, startMs, endMs, label: argmax(scores), confidence: Math.max(...Object.values(scores)), scores, latencyMs: 1, modelVersion: "v1", skipped: null, ...extra };
}

const UNSURE = { uncertain: true, warnings: ["low_snr", "clipping"], quality: { speech: 0.93, snrDb: 3.5, levelDbfs: -24, clipped: 0.042 } };
const SURE = { uncertain: false, warnings: [], quality: { speech: 0.9, snrDb: 30, levelDbfs: -20, clipped: 0 } };

describe("quality fields in messages", () => {
  it("parses uncertain, warnings and quality of results and partials, in the page's names", () => {
    for (const type of ["result", "partial"]) {
      const msg = parseServerMessage(wire(type, { uncertain: true, warnings: ["low_snr", "clipping"], quality: WIRE_QUALITY }));
      assert.equal(msg.uncertain, true);
      assert.deepEqual(msg.warnings, ["low_snr", "clipping"]);
      assert.deepEqual(msg.quality, { speech: 0.93, snrDb: 3.5, levelDbfs: -24, clipped: 0.042 });
    }
    const reply = parseClassifyReply({ duration_ms: 1000, model: { name: "m", version: "v1", labels: LABELS }, segments: [{ ...JSON.parse(wire("result")), uncertain: false, warnings: [], quality: WIRE_QUALITY }] });
    assert.equal(reply.segments[0].uncertain, false);
  });

  it("leaves them out when the server sent none", () => {
    const msg = parseServerMessage(wire("result"));
    assert.ok(!("uncertain" in msg) && !("warnings" in msg) && !("quality" in msg));
  });

  it("refuses malformed ones naming the field", () => {
    const bad = [
      [{ uncertain: "yes", warnings: [], quality: WIRE_QUALITY }, "uncertain"],
      [{ uncertain: true, warnings: "clipping", quality: WIRE_QUALITY }, "warnings"],
      [{ uncertain: true, warnings: [5], quality: WIRE_QUALITY }, "warnings"],
      [{ uncertain: true, warnings: [], quality: null }, "quality"],
      [{ uncertain: true, warnings: [], quality: { ...WIRE_QUALITY, snr_db: "loud" } }, "quality.snr_db"],
    ];
    for (const [extra, field] of bad) assert.throws(() => parseServerMessage(wire("result", extra)), new RegExp(`field "${field.replace(".", "\\.")}"`));
  });
});

describe("wording", () => {
  it("gives the reason of an uncertain result with its measures", () => {
    const entry = result(0, 0, 1000, SCORES, UNSURE);
    assert.equal(uncertaintyReason(entry), "Uncertain: loud background noise (speech 4 dB above it); distorted by clipping (4.2 % of samples at full scale)");
    assert.equal(uncertaintyReason(result(0, 0, 1000, SCORES, SURE)), "");
    assert.equal(uncertaintyReason(result(0, 0, 1000, SCORES)), "");
    const low = result(0, 0, 1000, { neutral: 0.38, happy: 0.32, sad: 0.3 }, { ...UNSURE, warnings: ["low_confidence", "too_quiet", "too_short_speech", "new_kind"] });
    assert.equal(uncertaintyReason(low), "Uncertain: the model is unsure (38 % confidence); very quiet (-24 dBFS); little speech in the segment (93 %); new kind");
  });

  it("never announces an uncertain result as fact", () => {
    assert.equal(announcement("happy", 0.7, result(0, 0, 1000, SCORES, SURE)), "Happy, 70%");
    assert.equal(announcement("happy", 0.7, result(0, 0, 1000, SCORES)), "Happy, 70%");
    const text = announcement("happy", 0.7, result(0, 0, 1000, SCORES, UNSURE));
    assert.equal(text, "Possibly happy, 70%; uncertain: low snr, clipping");
    assert.ok(!text.startsWith("Happy"));
    assert.equal(announcement("happy", 0.7, result(0, 0, 1000, SCORES, SURE), { smoothed: true }), "Happy, 70% (smoothed)");
  });
});

describe("uncertain segments in the summary and the smoothed readout", () => {
  function session() {
    const results = new SessionResults({ smoothing: 0.5 });
    results.setModel({ name: "tiny", version: "v1", labels: LABELS });
    return results;
  }

  it("count at UNCERTAIN_WEIGHT of their time in the shares", () => {
    assert.equal(weightOf(result(0, 0, 1, SCORES, UNSURE)), UNCERTAIN_WEIGHT);
    assert.equal(weightOf(result(0, 0, 1, SCORES, SURE)), 1);
    const results = session();
    results.add(result(0, 0, 1000, { neutral: 0.8, happy: 0.1, sad: 0.1 }, SURE), 0, "live");
    results.add(result(1, 1000, 5000, { neutral: 0.1, happy: 0.8, sad: 0.1 }, UNSURE), 0, "live");
    const { totalMs, uncertainMs, byLabel } = results.summary();
    assert.equal(totalMs, 5000);
    assert.equal(uncertainMs, 4000);
    assert.equal(byLabel.happy.ms, 4000);
    // 4000 ms at a quarter weighs as much as the 1000 ms of neutral
    assert.equal(byLabel.neutral.share, 0.5);
    assert.equal(byLabel.happy.share, 0.5);
  });

  it("move the smoothed scores by a quarter step", () => {
    const results = session();
    results.add(result(0, 0, 1000, { neutral: 1, happy: 0, sad: 0 }), 0, "live");
    results.add(result(1, 1000, 2000, { neutral: 0, happy: 1, sad: 0 }, UNSURE), 0, "live");
    const last = results.smoothed().at(-1);
    const step = 0.5 * UNCERTAIN_WEIGHT;
    assert.equal(last.scores.happy, step);
    assert.equal(last.label, "neutral");
  });

  it("keep their fields through snapshots and exports", () => {
    const results = session();
    results.add(result(0, 0, 1000, SCORES, UNSURE), 0, "live");
    results.add(result(1, 1000, 2000, SCORES), 0, "live");
    const snap = results.snapshot();
    assert.deepEqual(snap.entries[0].warnings, ["low_snr", "clipping"]);
    assert.ok(!("uncertain" in snap.entries[1]));
    const copy = session();
    for (const entry of snap.entries) copy.restore(entry);
    assert.equal(isUncertain(copy.entries[0]), true);
    assert.equal(copy.toJSON().segments[0].uncertain, true);
    assert.ok(!("uncertain" in copy.toJSON().segments[1]));
    assert.match(copy.toVTT(), /happy 0\.70\n\(uncertain: low_snr, clipping\)\n/);
    const [header, first, second] = copy.toCSV().trim().split("\r\n");
    assert.ok(header.endsWith(",uncertain,warnings"));
    assert.ok(first.endsWith(",true,low_snr clipping"));
    assert.ok(second.endsWith(",,"));
    assert.ok(!session().toCSV().includes("uncertain"));
  });
});

describe("how long a partial's leading label has held", () => {
  it("counts from the segment start, and restarts where the label changed", () => {
    const state = new PageState({ onChange: () => {} });
    state.results.setModel({ name: "tiny", version: "v1", labels: LABELS });
    state.begin();
    state.setMode("live");
    state.ready({ session: "s1", interimMs: 1000 });
    const partial = (n, end, scores) => state.partialArrived(result(n, 200, end, scores), 0);
    partial(0, 1200, { neutral: 0.1, happy: 0.8, sad: 0.1 });
    assert.equal(leadHeldMs(state.partial), 1000);
    partial(0, 2200, { neutral: 0.1, happy: 0.8, sad: 0.1 });
    assert.equal(leadHeldMs(state.partial), 2000);
    partial(0, 3200, { neutral: 0.1, happy: 0.1, sad: 0.8 });
    assert.equal(leadHeldMs(state.partial), 1000, "sad leads since the last happy partial ended");
    partial(1, 4000, { neutral: 0.1, happy: 0.1, sad: 0.8 });
    assert.equal(leadHeldMs(state.partial), 3800, "a new segment starts afresh at its start");
    assert.equal(leadHeldMs(null), 0);
  });
});
