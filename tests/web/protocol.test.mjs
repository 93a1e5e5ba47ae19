import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { interimMsFrom, parseClassifyReply, parseServerMessage, ProtocolError } from "../../web/protocol.js";

const SCORES = { neutral: 0.1, happy: 0.7, sad: 0.2 };
const RESULT = { type: "result", segment: 2, start_ms: 1200, end_ms: 3400, label: "happy", confidence: 0.7, scores: SCORES, model_version: "v1", latency_ms: 42 };
const MODEL = { name: "tiny", version: "v1", labels: ["neutral", "happy", "sad"], sample_rate: 16000 };

describe("parseServerMessage", () => {
  it("reads a result", () => {
    const msg = parseServerMessage(JSON.stringify(RESULT));
    assert.deepEqual(msg, { type: "result", segment: 2, startMs: 1200, endMs: 3400, label: "happy", confidence: 0.7, scores: SCORES, latencyMs: 42, modelVersion: "v1", skipped: null });
  });

  it("reads ready, speech events, skipped, error and end", () => {
    assert.deepEqual(parseServerMessage(JSON.stringify({ type: "ready", session: "s1", model: MODEL, protocol: 1 })), { type: "ready", session: "s1", model: { name: "tiny", version: "v1", labels: MODEL.labels }, interimMs: 0 });
    assert.deepEqual(parseServerMessage('{"type":"speech_start","t_ms":5}'), { type: "speech_start", tMs: 5 });
    assert.equal(parseServerMessage('{"type":"skipped","segment":0,"start_ms":0,"end_ms":100,"reason":"too_short"}').skipped, "too_short");
    assert.deepEqual(parseServerMessage('{"type":"error","code":"busy","message":"full"}'), { type: "error", code: "busy", message: "full" });
    assert.deepEqual(parseServerMessage('{"type":"end","segments":1,"audio_ms":5}'), { type: "end" });
  });

  it("reads partials like results, and ready.interim_ms", () => {
    const partial = parseServerMessage(JSON.stringify({ ...RESULT, type: "partial" }));
    assert.deepEqual(partial, { ...parseServerMessage(JSON.stringify(RESULT)), type: "partial" });
    assert.equal(parseServerMessage(JSON.stringify({ type: "ready", session: "s1", model: MODEL, interim_ms: 1000 })).interimMs, 1000);
    assert.throws(() => parseServerMessage(JSON.stringify({ type: "ready", session: "s1", model: MODEL, interim_ms: -5 })), /ready: field "interim_ms"/);
    assert.throws(() => parseServerMessage(JSON.stringify({ ...RESULT, type: "partial", confidence: 2 })), /partial: field "confidence"/);
    assert.throws(() => parseServerMessage(JSON.stringify({ ...RESULT, type: "partial", label: "other" })), /partial: field "label"/);
  });

  it("takes a valid ?interim_ms= and falls back on anything else", () => {
    for (const [text, want] of [["0", 0], ["250", 250], ["3000", 3000], ["1000", 1000], [null, 1000], ["", 1000], ["100", 1000], ["3001", 1000], ["-5", 1000], ["abc", 1000], ["1e3", 1000], ["99999999", 1000]]) {
      assert.equal(interimMsFrom(text, 1000), want, String(text));
    }
  });

  it("ignores fields it does not know", () => {
    const msg = parseServerMessage(JSON.stringify({ ...RESULT, future_field: { x: 1 } }));
    assert.equal("future_field" in msg, false);
    assert.equal(msg.label, "happy");
  });

  it("passes unknown message types through", () => {
    assert.deepEqual(parseServerMessage('{"type":"future_thing","x":1}'), { type: "future_thing" });
  });

  const hostile = [
    ["not JSON", "{nope", /not JSON/],
    ["no type", '{"segment":1}', /no "type"/],
    ["null", "null", /no "type"/],
    ["negative time", JSON.stringify({ ...RESULT, start_ms: -5 }), /start_ms.*-5/],
    ["end before start", JSON.stringify({ ...RESULT, end_ms: 100 }), /end_ms.*100/],
    ["fractional segment", JSON.stringify({ ...RESULT, segment: 1.5 }), /segment.*1\.5/],
    ["confidence above 1", JSON.stringify({ ...RESULT, confidence: 7 }), /confidence.*7/],
    ["label not among scores", JSON.stringify({ ...RESULT, label: "<img src=x>" }), /label.*img/],
    ["score as text", JSON.stringify({ ...RESULT, scores: { happy: "0.7" } }), /scores\.happy/],
    ["scores as list", JSON.stringify({ ...RESULT, scores: [0.1] }), /scores/],
    ["missing scores", JSON.stringify({ ...RESULT, scores: undefined }), /scores.*missing/],
    ["negative latency", JSON.stringify({ ...RESULT, latency_ms: -1 }), /latency_ms.*-1/],
    ["unknown skip reason", '{"type":"skipped","segment":0,"start_ms":0,"end_ms":1,"reason":"bored"}', /reason.*bored/],
    ["ready without labels", JSON.stringify({ type: "ready", session: "s", model: { name: "a", version: "b" } }), /labels/],
    ["huge label", JSON.stringify({ ...RESULT, label: "x".repeat(500), scores: { ["x".repeat(500)]: 0.7 } }), /label/],
  ];
  for (const [name, raw, pattern] of hostile) {
    it(`refuses ${name}, saying which field`, () => {
      assert.throws(() => parseServerMessage(raw), (error) => error instanceof ProtocolError && pattern.test(error.message));
    });
  }
});

describe("parseClassifyReply", () => {
  it("reads results and skipped segments", () => {
    const { type, ...segment } = RESULT;
    const reply = parseClassifyReply({ duration_ms: 5000, model: MODEL, segments: [segment, { segment: 3, start_ms: 4000, end_ms: 4200, reason: "too_short" }], summary: {} });
    assert.equal(type, "result");
    assert.equal(reply.durationMs, 5000);
    assert.deepEqual(reply.model.labels, MODEL.labels);
    assert.deepEqual(reply.segments.map((s) => s.label), ["happy", null]);
    assert.deepEqual(reply.segments.map((s) => s.skipped), [null, "too_short"]);
  });

  it("refuses a reply without segments or model", () => {
    assert.throws(() => parseClassifyReply({ duration_ms: 1 }), /segments/);
    assert.throws(() => parseClassifyReply({ duration_ms: 1, segments: [] }), /model/);
    assert.throws(() => parseClassifyReply({ duration_ms: "1", model: MODEL, segments: [] }), /duration_ms/);
  });
});
