// The session's segments on one timeline (audio time in ms), with smoothing, summary and export.
import { partyName } from "./parties.js";
import { CHANNELS } from "./protocol.js";

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

  // Exponential moving average of the scores over classified segments, one per segment.
  smoothed() {
    const out = [];
    let state = null;
    for (const entry of this.classified()) {
      const next = {};
      for (const [label, score] of Object.entries(entry.scores)) {
        const previous = state && label in state ? state[label] : score;
        next[label] = this.smoothing * score + (1 - this.smoothing) * previous;
      }
      state = next;
      const label = argmax(next);
      out.push({ entry, scores: next, label, confidence: next[label] });
    }
    return out;
  }

  // Time share of each label among classified audio: {totalMs, byLabel: {label: {ms, share}}};
  // with a channel, of that party's audio only.
  summary(channel = undefined) {
    const byLabel = {};
    for (const label of this.labels) byLabel[label] = { ms: 0, share: 0 };
    let totalMs = 0;
    for (const entry of this.classified(channel)) {
      const ms = entry.endMs - entry.startMs;
      byLabel[entry.label] ??= { ms: 0, share: 0 };
      byLabel[entry.label].ms += ms;
      totalMs += ms;
    }
    for (const item of Object.values(byLabel)) item.share = totalMs > 0 ? item.ms / totalMs : 0;
    return { totalMs, byLabel };
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
      })),
      summary: this.summary(),
      ...(this.parties().length ? { parties: this.parties().map((channel) => ({ channel, name: partyName(channel), summary: this.summary(channel) })) } : {}),
    };
  }

  toCSV() {
    const labels = this.labels;
    const channels = this.parties().length > 0; // a channel column only when there are parties
    const header = ["source", "origin", ...(channels ? ["channel"] : []), "segment", "start_ms", "end_ms", "label", "confidence", "skipped", "latency_ms", "model_version", ...labels.map((l) => `score_${l}`)];
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
    ]);
    return [header, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
  }

  // WebVTT: one cue per segment, "label confidence" or why it was not classified.
  toVTT() {
    const cues = this.entries.map((entry, i) => {
      const said = entry.label === null ? `(not classified: ${entry.skipped})` : `${entry.label} ${entry.confidence.toFixed(2)}`;
      const text = hasChannel(entry) ? `<v ${partyName(entry.channel)}>${said}` : said;
      return `${i + 1}\n${vttTime(entry.startMs)} --> ${vttTime(entry.endMs)}\n${text}\n`;
    });
    return ["WEBVTT\n", ...cues].join("\n");
  }
}

const FIELDS = ["segment", "startMs", "endMs", "label", "confidence", "scores", "latencyMs", "modelVersion", "skipped", "source", "origin"];

function pick(entry) {
  const out = {};
  for (const field of FIELDS) out[field] = entry[field] ?? (field === "origin" ? "" : null);
  if (out.scores) out.scores = { ...out.scores };
  if (hasChannel(entry)) out.channel = entry.channel;
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
