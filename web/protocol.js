// Checks messages from the server (docs: /v1/stream protocol, version 1) before the page uses them.

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

const SKIP_REASONS = new Set(["too_short", "overloaded", "error"]);

function fail(where, field, value) {
  const shown = JSON.stringify(value);
  throw new ProtocolError(`${where}: field "${field}" is invalid (${shown === undefined ? "missing" : shown.slice(0, 80)})`);
}

function integer(obj, field, where) {
  const value = obj[field];
  if (!Number.isInteger(value) || value < 0) fail(where, field, value);
  return value;
}

function text(obj, field, where) {
  const value = obj[field];
  if (typeof value !== "string" || value.length === 0 || value.length > 200) fail(where, field, value);
  return value;
}

function probability(obj, field, where) {
  const value = obj[field];
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 1) fail(where, field, value);
  return value;
}

function scoresOf(obj, where) {
  const scores = obj.scores;
  if (scores === null || typeof scores !== "object" || Array.isArray(scores)) fail(where, "scores", scores);
  const out = {};
  for (const [label, value] of Object.entries(scores)) {
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > 1) fail(where, `scores.${label}`, value);
    out[label] = value;
  }
  if (Object.keys(out).length === 0) fail(where, "scores", scores);
  return out;
}

const QUALITY_MEASURES = { speech: "speech", snr_db: "snrDb", level_dbfs: "levelDbfs", clipped: "clipped" };

// quality=1 adds uncertain, warnings and quality to results and partials; absent otherwise.
function qualityOf(obj, where) {
  if (obj.uncertain === undefined) return {};
  if (typeof obj.uncertain !== "boolean") fail(where, "uncertain", obj.uncertain);
  const warnings = obj.warnings;
  if (!Array.isArray(warnings) || warnings.length > 20 || !warnings.every((w) => typeof w === "string" && /^[a-z_]{1,40}$/.test(w))) fail(where, "warnings", warnings);
  const measures = obj.quality;
  if (measures === null || typeof measures !== "object" || Array.isArray(measures)) fail(where, "quality", measures);
  const quality = {};
  for (const [field, name] of Object.entries(QUALITY_MEASURES)) {
    const value = measures[field];
    if (typeof value !== "number" || !Number.isFinite(value)) fail(where, `quality.${field}`, value);
    quality[name] = value;
  }
  return { uncertain: obj.uncertain, warnings: [...warnings], quality };
}

// The talker of a two-channel stream or a channels=separate upload (0 or 1); absent otherwise.
export const CHANNELS = [0, 1];

function span(obj, where) {
  const startMs = integer(obj, "start_ms", where);
  const endMs = integer(obj, "end_ms", where);
  if (endMs < startMs) fail(where, "end_ms", endMs);
  const out = { segment: integer(obj, "segment", where), startMs, endMs };
  if (obj.channel !== undefined) {
    if (!CHANNELS.includes(obj.channel)) fail(where, "channel", obj.channel);
    out.channel = obj.channel;
  }
  return out;
}

// A classified segment ("result"), a provisional one ("partial") or an unclassified one
// ("skipped"), from a stream or an upload.
export function parseSegment(obj, kind) {
  const where = kind === "skipped" ? "skipped segment" : kind === "partial" ? "partial" : "result";
  if (obj === null || typeof obj !== "object") throw new ProtocolError(`${where} is not an object`);
  const base = span(obj, where);
  if (kind === "skipped") {
    const reason = obj.reason;
    if (!SKIP_REASONS.has(reason)) fail(where, "reason", reason);
    return { ...base, label: null, confidence: null, scores: null, latencyMs: null, modelVersion: null, skipped: reason };
  }
  const scores = scoresOf(obj, where);
  const label = text(obj, "label", where);
  if (!(label in scores)) fail(where, "label", label);
  const latency = obj.latency_ms;
  const latencyMs = latency === undefined ? null : typeof latency === "number" && Number.isFinite(latency) && latency >= 0 ? latency : fail(where, "latency_ms", latency);
  const version = obj.model_version;
  const modelVersion = version === undefined ? null : text(obj, "model_version", where);
  return { ...base, label, confidence: probability(obj, "confidence", where), scores, latencyMs, modelVersion, skipped: null, ...qualityOf(obj, where) };
}

export function parseModel(obj, where = "model") {
  if (obj === null || typeof obj !== "object") throw new ProtocolError(`${where} is not an object`);
  const labels = obj.labels;
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((l) => typeof l === "string" && l.length > 0 && l.length <= 200)) {
    fail(where, "labels", labels);
  }
  return { name: text(obj, "name", where), version: text(obj, "version", where), labels: [...labels] };
}

// interim_ms values the protocol accepts: 0 (off) or MIN..MAX.
export const INTERIM_MS = { MIN: 250, MAX: 3000 };

// The page's ?interim_ms=: a valid value, else the fallback (an invalid one would be refused).
export function interimMsFrom(text, fallback) {
  if (text === null || !/^\d{1,5}$/.test(text)) return fallback;
  const value = Number(text);
  return value === 0 || (value >= INTERIM_MS.MIN && value <= INTERIM_MS.MAX) ? value : fallback;
}

// ready.interim_ms: the partial-result interval in force; absent from servers that predate it.
function interimOf(msg) {
  return msg.interim_ms === undefined ? 0 : integer(msg, "interim_ms", "ready");
}

// Parses one JSON text frame from /v1/stream; unknown types pass through untouched.
export function parseServerMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    throw new ProtocolError(`server sent a text frame that is not JSON: ${String(raw).slice(0, 80)}`);
  }
  if (msg === null || typeof msg !== "object" || typeof msg.type !== "string") {
    throw new ProtocolError(`server message has no "type": ${String(raw).slice(0, 80)}`);
  }
  switch (msg.type) {
    case "ready":
      return { type: "ready", session: text(msg, "session", "ready"), model: parseModel(msg.model, "ready.model"), interimMs: interimOf(msg) };
    case "speech_start":
    case "speech_end":
      return { type: msg.type, tMs: integer(msg, "t_ms", msg.type) };
    case "result":
    case "partial":
    case "skipped":
      return { type: msg.type, ...parseSegment(msg, msg.type) };
    case "error":
      return { type: "error", code: text(msg, "code", "error"), message: typeof msg.message === "string" ? msg.message : "" };
    case "end":
      return { type: "end" };
    default:
      return { type: msg.type };
  }
}

// The reply of POST /v1/classify.
export function parseClassifyReply(obj) {
  if (obj === null || typeof obj !== "object" || !Array.isArray(obj.segments)) {
    throw new ProtocolError('classify reply has no "segments" list');
  }
  const durationMs = integer(obj, "duration_ms", "classify reply");
  const segments = obj.segments.map((seg) => parseSegment(seg, seg !== null && typeof seg === "object" && "reason" in seg ? "skipped" : "result"));
  return { durationMs, model: parseModel(obj.model, "classify reply model"), segments };
}
