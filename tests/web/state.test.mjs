import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { argmax, SessionResults } from "../../web/results.js";
import { PageState, RATE_HZ } from "../../web/state.js";

const LABELS = ["neutral", "happy", "sad"];

function segment(n, startMs, endMs, scores = { neutral: 0.2, happy: 0.7, sad: 0.1 }) {
  return { segment: n, startMs, endMs, label: argmax(scores), confidence: Math.max(...Object.values(scores)), scores, latencyMs: 5, modelVersion: "v1", skipped: null };
}

function livePage() {
  const changes = [];
  const state = new PageState({ onChange: (what) => changes.push(what) });
  state.results.setModel({ name: "tiny", version: "v1", labels: LABELS });
  state.begin();
  state.setMode("live");
  state.ready({ session: "s1", interimMs: 1000 });
  return { state, changes };
}

describe("PageState", () => {
  it("goes listening → speaking → analysing → listening, leaving analysing only with the segment's result", () => {
    const { state } = livePage();
    assert.equal(state.speech, "listening");
    state.speechStarted(1000, 0);
    assert.equal(state.speech, "speaking");
    // a segment cut at max_segment_ms while still speaking does not change it
    state.finalArrived(segment(0, 1000, 4000), 0);
    assert.equal(state.speech, "speaking");
    state.speechEnded(5200);
    assert.equal(state.speech, "analysing");
    state.finalArrived(segment(1, 4000, 5200), 0);
    assert.equal(state.speech, "listening");
  });

  it("goes straight back to listening when the result came before speech_end", () => {
    const { state } = livePage();
    state.speechStarted(0, 0);
    state.finalArrived(segment(0, 0, 2000), 0);
    state.speechEnded(2000);
    assert.equal(state.speech, "listening");
  });

  it("stays analysing while an earlier segment's result comes in", () => {
    const { state } = livePage();
    state.speechStarted(0, 0);
    state.speechEnded(9000);
    state.finalArrived(segment(0, 0, 3000), 0);
    assert.equal(state.speech, "analysing");
    state.speechStarted(9500, 0);
    assert.equal(state.speech, "speaking");
  });

  it("keeps the newest partial of the segment in progress and drops it with the final", () => {
    const { state, changes } = livePage();
    state.offsetMs = 10000;
    assert.equal(state.partialArrived(segment(0, 200, 1200), 0), true);
    assert.deepEqual([state.partial.startMs, state.partial.endMs], [10200, 11200]);
    assert.equal(state.partialArrived(segment(0, 200, 1100), 0), false, "an older partial must not replace a newer one");
    assert.equal(state.partialArrived(segment(0, 200, 2200), 0), true);
    assert.ok(changes.includes("partial"));
    state.finalArrived(segment(0, 200, 2600), 0);
    assert.equal(state.partial, null);
    assert.equal(state.results.entries.length, 1);
    assert.equal(state.partialArrived(segment(0, 200, 2400), 0), false, "a partial after its final is stale");
    assert.equal(state.partial, null);
  });

  it("keeps partials out of the results and the exports", () => {
    const { state } = livePage();
    state.partialArrived(segment(0, 0, 1000), 0);
    assert.equal(state.results.entries.length, 0);
    assert.equal(state.results.toJSON().segments.length, 0);
    state.finalArrived(segment(0, 0, 1500), 0);
    state.partialArrived(segment(1, 2000, 3000), 0);
    assert.equal(state.results.toJSON().segments.length, 1);
    assert.equal(state.results.toCSV().trim().split("\r\n").length, 2);
  });

  it("numbers restart on a new connection: partials are told apart by the connection's offset", () => {
    const { state } = livePage();
    state.finalArrived(segment(3, 0, 1000), 0);
    state.connectionLost();
    assert.equal(state.speech, "listening");
    state.ready({ session: "s2", interimMs: 1000 });
    assert.equal(state.partialArrived(segment(0, 0, 800), 5000), true);
  });

  it("shows the segment in progress growing with the captured audio", () => {
    const { state } = livePage();
    state.speechStarted(500, 0);
    state.captured(RATE_HZ); // 1 s
    assert.deepEqual(state.progress(), { startMs: 500, endMs: 1000 });
    state.captured(RATE_HZ);
    assert.deepEqual(state.progress(), { startMs: 500, endMs: 2000 });
    state.partialArrived(segment(0, 450, 1500), 0);
    assert.deepEqual(state.progress(), { startMs: 450, endMs: 2000 });
    state.end();
    assert.equal(state.progress(), null);
  });

  it("places the next session after all audio so far and restores a saved one", () => {
    const { state } = livePage();
    state.captured(RATE_HZ * 3);
    state.finalArrived(segment(0, 500, 2000), 0);
    state.end();
    assert.equal(state.timelineEndMs(), 3000);
    state.begin();
    assert.equal(state.offsetMs, 3000);
    state.end();
    const saved = state.results.snapshot();
    const other = new PageState({ results: new SessionResults() });
    other.load({ ...saved, audioEndMs: 3000 });
    assert.deepEqual(other.results.snapshot(), saved);
    assert.equal(other.timelineEndMs(), 3000);
    assert.throws(() => state.load({ entries: [{ ...saved.entries[0], source: "nowhere" }] }), /unknown source/);
  });

  it("refuses to start twice or to switch sessions while capturing", () => {
    const { state } = livePage();
    assert.throws(() => state.begin(), /cannot start while live/);
    assert.throws(() => state.load({}), /cannot switch sessions while live/);
  });
});
