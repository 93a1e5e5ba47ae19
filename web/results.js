// The session's segments on one timeline (audio time in ms), with smoothing, summary and export.
import { partyName } from "./parties.js";
import { CHANNELS } from "./protocol.js";
import { weightOf } from "./quality.js";

export const SOURCES = new Set(["live", "upload", "recording"]);

export class SessionResults {
  constructor({ smoothing = 0.4 } = {}) {
    if (!(smoothing > 0 && smoothing <= 1)) throw new RangeError(`smoothing must be in (0, 1], got ${smoothing}`);
    this.smoothing = smoothing;
    this.entries = [];
    this.model = null;
  }

  setModel(model) {
    this.model = model;
  }

  get labels() {
    if (this.model) return this.model.labels;
    const seen = new Set();
    for (const entry of this.entries) if (entry.scores) for (const label of Object.keys(entry.scores)) seen.add(label);
    return [...seen];
  }

  // Adds a parsed segment (see protocol.js) placed at offsetMs on the session timeline.
  add(segment, offsetMs, source, origin = "") {
    if (!SOURCES.has(source)) throw new RangeError(`unknown source ${JSON.stringify(source)}`);
    if (!Number.isFinite(offsetMs) || offsetMs < 0) throw new RangeError(`offsetMs must be a non-negative number, got ${offsetMs}`);
    const entry = {
      ...segment,
      index: this.entries.length,
      source,
      origin,
      startMs: Math.round(offsetMs + segment.startMs),
      endMs: Math.round(offsetMs + segment.endMs),
    };
    this.entries.push(entry);
    return entry;
  }

  // Puts back an entry saved by snapshot(), already placed on the timeline.
  restore(saved) {
    if (saved === null || typeof saved !== "object") throw new RangeError("a saved segment is not an object");
    const { startMs, endMs, segment, label, source } = saved;
    if (!SOURCES.has(source)) throw new RangeError(`a saved segment has an unknown source ${JSON.stringify(source)}`);
    if (!(Number.isInteger(startMs) && Number.isInteger(endMs) && 0 <= startMs && startMs <= endMs)) throw new RangeError(`a saved segment has a bad span ${startMs}–${endMs}`);
    if (!Number.isInteger(segment) || segment < 0) throw new RangeError(`a saved segment has a bad number ${segment}`);
    if (label !== null && !(saved.scores && typeof saved.scores === "object" && label in saved.scores)) throw new RangeError(`a saved segment's label ${JSON.stringify(label)} has no score`);
    if (saved.channel !== undefined && saved.channel !== null && !CHANNELS.includes(saved.channel)) throw new RangeError(`a saved segment has a bad channel ${JSON.stringify(saved.channel)}`);
    const entry = { ...pick(saved), index: this.entries.length };
    this.entries.push(entry);
    return entry;
  }

  // What is kept of a session (results only, never audio): plain data for IndexedDB.
  snapshot() {
    return { model: this.model, entries: this.entries.map(pick) };
  }

  clear() {
    this.entries = [];
  }

  endMs() {
    return this.entries.reduce((end, entry) => Math.max(end, entry.endMs), 0);
  }

  // channel: only that party's segments (0 or 1); undefined: every segment.
  classified(channel = undefined) {
    return this.entries.filter((entry) => entry.label !== null && (channel === undefined || entry.channel === channel));
  }

  // The parties (channels) on the timeline, in order: [] when nothing was analysed per channel.
  parties() {
    return [...new Set(this.entries.map((entry) => entry.channel).filter((channel) => channel !== undefined && channel !== null))].sort();
  }

  // Exponential moving average of the scores over classified segments, one per segment;
  // an uncertain segment moves it by a quarter of the usual step (UNCERTAIN_WEIGHT).
  smoothed() {
    const out = [];
    let state = null;
    for (const entry of this.classified()) {
      const next = {};
      const step = this.smoothing * weightOf(entry);
      for (const [label, score] of Object.entries(entry.scores)) {
        const previous = state && label in state ? state[label] : score;
        next[label] = step * score + (1 - step) * previous;
      }
      state = next;
      const label = argmax(next);
      out.push({ entry, scores: next, label, confidence: next[label] });
    }
    return out;
  }

  // Time share of each label among classified audio: {totalMs, uncertainMs, byLabel:
  // {label: {ms, share}}}; with a channel, of that party's audio only. Uncertain segments
  // count at UNCERTAIN_WEIGHT of their time in the shares (ms stays the real time).
  summary(channel = undefined) {
    const byLabel = {};
    for (const label of this.labels) byLabel[label] = { ms: 0, share: 0 };
    const weighted = {};
    let totalMs = 0;
    let weightedMs = 0;
    let uncertainMs = 0;
    for (const entry of this.classified(channel)) {
      const ms = entry.endMs - entry.startMs;
      const weight = weightOf(entry);
      byLabel[entry.label] ??= { ms: 0, share: 0 };
      byLabel[entry.label].ms += ms;
      weighted[entry.label] = (weighted[entry.label] ?? 0) + ms * weight;
      totalMs += ms;
      weightedMs += ms * weight;
      if (weight < 1) uncertainMs += ms;
    }
    for (const [label, item] of Object.entries(byLabel)) item.share = weightedMs > 0 ? (weighted[label] ?? 0) / weightedMs : 0;
    return { totalMs, uncertainMs, byLabel };
  }

  toJSON() {
    return {
      model: this.model,
      segments: this.entries.map((entry) => ({
        source: entry.source,
        origin: entry.origin,
        segment: entry.segment,
        start_ms: entry.startMs,
        end_ms: entry.endMs,
        label: entry.label,
        confidence: entry.confidence,
        scores: entry.scores,
        skipped: entry.skipped,
        latency_ms: entry.latencyMs,
        model_version: entry.modelVersion,
        ...(hasChannel(entry) ? { channel: entry.channel } : {}),
        ...(entry.uncertain === undefined || entry.uncertain === null ? {} : { uncertain: entry.uncertain, warnings: entry.warnings, quality: entry.quality }),
      })),
      summary: this.summary(),
      ...(this.parties().length ? { parties: this.parties().map((channel) => ({ channel, name: partyName(channel), summary: this.summary(channel) })) } : {}),
    };
  }

  // With quality fields (quality=1), the columns uncertain and warnings follow the scores.
  toCSV() {
    const labels = this.labels;
    const quality = this.entries.some((entry) => typeof entry.uncertain === "boolean");
    const channels = this.parties().length > 0; // a channel column only when there are parties
    const header = ["source", "origin", ...(channels ? ["channel"] : []), "segment", "start_ms", "end_ms", "label", "confidence", "skipped", "latency_ms", "model_version", ...labels.map((l) => `score_${l}`), ...(quality ? ["uncertain", "warnings"] : [])];
    const rows = this.entries.map((entry) => [
      entry.source,
      entry.origin,
      ...(channels ? [hasChannel(entry) ? entry.channel : ""] : []),
      entry.segment,
      entry.startMs,
      entry.endMs,
      entry.label ?? "",
      entry.confidence ?? "",
      entry.skipped ?? "",
      entry.latencyMs ?? "",
      entry.modelVersion ?? "",
      ...labels.map((label) => (entry.scores && label in entry.scores ? entry.scores[label] : "")),
      ...(quality ? (typeof entry.uncertain === "boolean" ? [String(entry.uncertain), entry.warnings.join(" ")] : ["", ""]) : []),
    ]);
    return [header, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
  }

  // WebVTT: one cue per segment, "label confidence" or why it was not classified; an
  // uncertain one has a second line naming its warnings.
  toVTT() {
    const cues = this.entries.map((entry, i) => {
      let said = entry.label === null ? `(not classified: ${entry.skipped})` : `${entry.label} ${entry.confidence.toFixed(2)}`;
      if (entry.uncertain === true) said += `\n(uncertain: ${entry.warnings.join(", ")})`;
      const text = hasChannel(entry) ? `<v ${partyName(entry.channel)}>${said}` : said;
      return `${i + 1}\n${vttTime(entry.startMs)} --> ${vttTime(entry.endMs)}\n${text}\n`;
    });
    return ["WEBVTT\n", ...cues].join("\n");
  }
}

const FIELDS = ["segment", "startMs", "endMs", "label", "confidence", "scores", "latencyMs", "modelVersion", "skipped", "source", "origin"];
const QUALITY_FIELDS = ["uncertain", "warnings", "quality"]; // kept only when present

function pick(entry) {
  const out = {};
  for (const field of FIELDS) out[field] = entry[field] ?? (field === "origin" ? "" : null);
  if (out.scores) out.scores = { ...out.scores };
  if (hasChannel(entry)) out.channel = entry.channel;
  if (typeof entry.uncertain === "boolean") {
    for (const field of QUALITY_FIELDS) out[field] = structuredClone(entry[field]);
  }
  return out;
}

function hasChannel(entry) {
  return entry.channel !== undefined && entry.channel !== null;
}

export function vttTime(ms) {
  const total = Math.max(0, Math.round(ms));
  const hours = Math.floor(total / 3600000);
  const minutes = Math.floor(total / 60000) % 60;
  const seconds = Math.floor(total / 1000) % 60;
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(hours)}:${pad(minutes)}:${pad(seconds)}.${pad(total % 1000, 3)}`;
}

export function argmax(scores) {
  let best = null;
  for (const [label, score] of Object.entries(scores)) if (best === null || score > scores[best]) best = label;
  return best;
}

// Quotes where needed, and defuses text a spreadsheet would run as a formula.
export function csvCell(value) {
  if (typeof value === "number") return String(value);
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
