import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { laneLayout, partyName } from "../../web/parties.js";
import { parseClassifyReply, parseServerMessage, ProtocolError } from "../../web/protocol.js";
import { SessionResults } from "../../web/results.js";

const LABELS = ["neutral", "angry"];
const MODEL = { name: "tiny", version: "v1", labels: LABELS, sample_rate: 16000 };

function wire(segment, start, end, label, channel) {
  const scores = label === "angry" ? { neutral: 0.25, angry: 0.75 } : { neutral: 0.75, angry: 0.25 };
  return { segment, start_ms: start, end_ms: end, label, confidence: 0.75, scores, model_version: "v1", latency_ms: 5, channel };
}

// A call analysed with channels=separate: party 1 twice, party 2 once between, one skipped.
const REPLY = {
  duration_ms: 10000,
  model: MODEL,
  segments: [
    wire(0, 0, 2000, "neutral", 0),
    wire(0, 2500, 5500, "angry", 1),
    { segment: 1, start_ms: 5600, end_ms: 5800, reason: "too_short", channel: 1 },
    wire(1, 6000, 7000, "neutral", 0),
  ],
  summary: {},
  channels: [{ channel: 0, summary: {} }, { channel: 1, summary: {} }],
};

function call() {
  const results = new SessionResults();
  results.setModel(MODEL);
  for (const segment of parseClassifyReply(REPLY).segments) results.add(segment, 1000, "upload", "call.wav");
  return results;
}

describe("parties", () => {
  it("names channel 0 party 1 and channel 1 party 2", () => {
    assert.equal(partyName(0), "Party 1");
    assert.equal(partyName(1), "Party 2");
  });

  it("reads channel from segments, and leaves it out when the server sent none", () => {
    const segments = parseClassifyReply(REPLY).segments;
    assert.deepEqual(segments.map((s) => s.channel), [0, 1, 1, 0]);
    const mono = parseServerMessage(JSON.stringify({ type: "result", ...wire(0, 0, 900, "angry") }));
    assert.equal("channel" in mono, false);
    const tagged = parseServerMessage(JSON.stringify({ type: "partial", ...wire(0, 0, 900, "angry", 1) }));
    assert.equal(tagged.channel, 1);
  });

  it("refuses a channel that is not 0 or 1", () => {
    for (const channel of [2, -1, "0", 0.5, null]) {
      assert.throws(() => parseClassifyReply({ ...REPLY, segments: [wire(0, 0, 900, "angry", channel)] }), ProtocolError);
    }
  });

  it("lays out one lane per party with blocks placed on the timeline", () => {
    const results = call();
    assert.deepEqual(results.parties(), [0, 1]);
    const lanes = laneLayout(results.entries, results.parties(), 0, 10000);
    assert.deepEqual(lanes.map((lane) => [lane.channel, lane.name]), [[0, "Party 1"], [1, "Party 2"]]);
    assert.deepEqual(lanes[0].blocks.map((b) => [b.leftPct, b.widthPct, b.label]), [[10, 20, "neutral"], [70, 10, "neutral"]]);
    assert.deepEqual(lanes[1].blocks.map((b) => [b.leftPct, b.widthPct, b.label, b.skipped]), [[35, 30, "angry", null], [66, 2, null, "too_short"]]);
  });

  it("clips lanes to the window shown, leaving out what lies outside", () => {
    const lanes = laneLayout(call().entries, [0, 1], 4000, 8000);
    assert.deepEqual(lanes[0].blocks.map((b) => [b.leftPct, b.widthPct]), [[75, 25]]);
    assert.deepEqual(lanes[1].blocks.map((b) => [b.leftPct, b.widthPct]), [[0, 62.5], [65, 5]]);
  });

  it("has no lanes when nothing was analysed per channel", () => {
    const results = new SessionResults();
    results.add({ segment: 0, startMs: 0, endMs: 900, label: "angry", confidence: 0.7, scores: { angry: 0.7, neutral: 0.3 }, latencyMs: 1, modelVersion: "v1", skipped: null }, 0, "live");
    assert.deepEqual(results.parties(), []);
    assert.deepEqual(laneLayout(results.entries, results.parties(), 0, 1000), []);
    assert.equal(results.toCSV().split("\r\n")[0].includes("channel"), false);
    assert.equal("parties" in results.toJSON(), false);
  });

  it("summarises each party on its own beside the whole session", () => {
    const results = call();
    assert.equal(results.summary().totalMs, 6000);
    assert.deepEqual(results.summary(0).byLabel, { neutral: { ms: 3000, share: 1 }, angry: { ms: 0, share: 0 } });
    assert.deepEqual(results.summary(1).byLabel, { neutral: { ms: 0, share: 0 }, angry: { ms: 3000, share: 1 } });
    assert.deepEqual(results.toJSON().parties.map((p) => [p.name, p.summary.totalMs]), [["Party 1", 3000], ["Party 2", 3000]]);
  });

  it("names the party in every export and keeps it in saved sessions", () => {
    const results = call();
    const [header, first] = results.toCSV().split("\r\n");
    assert.ok(header.startsWith("source,origin,channel,segment,"));
    assert.ok(first.startsWith("upload,call.wav,0,0,1000,3000,neutral"));
    const cues = results.toVTT().split("\n").filter((line) => line.startsWith("<v "));
    assert.deepEqual(cues, ["<v Party 1>neutral 0.75", "<v Party 2>angry 0.75", "<v Party 2>(not classified: too_short)", "<v Party 1>neutral 0.75"]);
    assert.deepEqual(results.toJSON().segments.map((s) => s.channel), [0, 1, 1, 0]);
    const copy = new SessionResults();
    for (const saved of structuredClone(results.snapshot()).entries) copy.restore(saved);
    assert.deepEqual(copy.parties(), [0, 1]);
    assert.deepEqual(copy.entries.map((e) => e.channel), [0, 1, 1, 0]);
    assert.throws(() => copy.restore({ ...results.snapshot().entries[0], channel: 3 }), /bad channel/);
  });

  it("with quality=1 as well: party and quality fields together in lanes, summaries and exports", () => {
    const measured = (extra) => ({ quality: { speech: 0.9, snr_db: 2.5, level_dbfs: -30, clipped: 0 }, ...extra });
    const reply = {
      ...REPLY,
      segments: [
        { ...wire(0, 0, 2000, "neutral", 0), ...measured({ warnings: [], uncertain: false }) },
        { ...wire(0, 2500, 5500, "angry", 1), ...measured({ warnings: ["low_snr"], uncertain: true }) },
        { segment: 1, start_ms: 5600, end_ms: 5800, reason: "too_short", channel: 1 },
        { ...wire(1, 6000, 7000, "neutral", 0), ...measured({ warnings: [], uncertain: false }) },
      ],
    };
    const results = new SessionResults();
    results.setModel(MODEL);
    for (const segment of parseClassifyReply(reply).segments) results.add(segment, 1000, "upload", "call.wav");
    const [zero, one] = laneLayout(results.entries, results.parties(), 0, 10000);
    assert.deepEqual(zero.blocks.map((b) => b.uncertain), [false, false]);
    assert.deepEqual(one.blocks.map((b) => [b.label, b.uncertain]), [["angry", true], [null, false]]);
    assert.match(one.blocks[0].reason, /^Uncertain: loud background noise/);
    // party 2's only classified segment is uncertain: all its time is, and it still leads its summary
    assert.equal(results.summary(1).uncertainMs, 3000);
    assert.equal(results.summary(1).byLabel.angry.share, 1);
    assert.equal(results.summary(0).uncertainMs, 0);
    // overall, party 2's uncertain 3 s count a quarter: neutral 3000 / (3000 + 750)
    assert.equal(results.summary().byLabel.neutral.share, 0.8);
    const [header, , second] = results.toCSV().split("\r\n");
    assert.ok(header.startsWith("source,origin,channel,segment,"));
    assert.ok(header.endsWith(",score_neutral,score_angry,uncertain,warnings"));
    assert.ok(second.startsWith("upload,call.wav,1,0,") && second.endsWith(",true,low_snr"));
    const vtt = results.toVTT();
    assert.ok(vtt.includes("<v Party 2>angry 0.75\n(uncertain: low_snr)\n"));
    const saved = results.toJSON().segments[1];
    assert.deepEqual([saved.channel, saved.uncertain, saved.warnings], [1, true, ["low_snr"]]);
    const copy = new SessionResults();
    for (const entry of structuredClone(results.snapshot()).entries) copy.restore(entry);
    assert.deepEqual(copy.entries.map((e) => [e.channel, e.uncertain]), [[0, false], [1, true], [1, undefined], [0, false]]);
  });
});
