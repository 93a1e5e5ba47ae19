// The page's state, in one owner: what the page is doing, the session's results, the
// provisional segment, the clocks. No DOM: app.js renders it, tests drive it under Node.
import { SessionResults } from "./results.js";

export const RATE_HZ = 16000;
// A result ends the "analysing" state when it reaches the speech_end it follows, within this.
const SPEECH_END_SLACK_MS = 300;

// mode: "idle" | "starting" | "live" | "stopping" | "recording" | "uploading"
// speech: "off" | "listening" | "speaking" | "analysing"
export class PageState {
  constructor({ results = new SessionResults(), onChange = () => {} } = {}) {
    this.results = results;
    this.onChange = onChange;
    this.mode = "idle";
    this.speech = "off";
    this.partial = null; // {segment, baseMs, startMs, endMs, label, confidence, scores, ...} on the timeline
    this.awaitingEndMs = null; // speech_end t_ms (connection time) whose segment has not come yet
    this.lastFinal = null; // {baseMs, segment} of the connection's latest final message
    this.offsetMs = 0; // where the current live session starts on the timeline
    this.audioEndMs = 0; // end of all audio so far, classified or not
    this.capturedSamples = 0;
    this.framesSent = 0;
    this.serverSession = null;
    this.interimMs = 0;
    this.speechStartMs = null;
  }

  changed(what) {
    this.onChange(what, this);
  }

  get capturing() {
    return ["starting", "live", "stopping", "recording"].includes(this.mode);
  }

  // Where the next session or upload goes on the timeline: after all audio so far.
  timelineEndMs() {
    return Math.max(this.results.endMs(), this.audioEndMs);
  }

  // The live edge: audio time of the newest captured sample.
  nowMs() {
    return this.mode === "idle" || this.mode === "uploading" ? this.timelineEndMs() : this.offsetMs + (this.capturedSamples * 1000) / RATE_HZ;
  }

  capturedMs() {
    return Math.round((this.capturedSamples * 1000) / RATE_HZ);
  }

  begin() {
    if (this.mode !== "idle") throw new Error(`cannot start while ${this.mode}`);
    Object.assign(this, { mode: "starting", speech: "listening", offsetMs: this.timelineEndMs(), capturedSamples: 0, framesSent: 0, partial: null, awaitingEndMs: null, lastFinal: null, serverSession: null });
    this.changed("mode");
  }

  setMode(mode) {
    this.mode = mode;
    this.changed("mode");
  }

  captured(samples) {
    this.capturedSamples += samples;
  }

  sent() {
    this.framesSent += 1;
  }

  ready({ session, interimMs }) {
    Object.assign(this, { serverSession: session, interimMs, partial: null, awaitingEndMs: null, lastFinal: null });
    this.changed("ready");
  }

  setSpeech(speech) {
    if (this.speech === speech) return;
    this.speech = speech;
    this.changed("speech");
  }

  speechStarted(tMs = 0, baseMs = 0) {
    this.awaitingEndMs = null;
    this.speechStartMs = Math.round(this.offsetMs + baseMs + tMs);
    this.setSpeech("speaking");
  }

  // The segment still in progress, on the timeline: from its partial's start, or from where
  // speech started (or the last final ended, for an utterance cut into several segments).
  progress() {
    if (this.speech !== "speaking" && this.speech !== "analysing") return null;
    const entries = this.results.entries;
    const lastEnd = entries.length ? entries[entries.length - 1].endMs : 0;
    const startMs = this.partial ? this.partial.startMs : Math.max(this.speechStartMs ?? 0, lastEnd);
    const endMs = this.speech === "speaking" ? this.nowMs() : Math.max(startMs, this.partial ? this.partial.endMs : startMs);
    return endMs > startMs ? { startMs, endMs } : null;
  }

  speechEnded(tMs) {
    const last = this.lastFinal;
    if (last && last.endMs + SPEECH_END_SLACK_MS >= tMs) {
      this.setSpeech("listening"); // its segment's result came first
      return;
    }
    this.awaitingEndMs = tMs;
    this.setSpeech("analysing");
  }

  // The connection went away: whatever was in progress will not be answered on it.
  connectionLost() {
    this.awaitingEndMs = null;
    this.partial = null;
    if (this.capturing) this.setSpeech("listening");
    this.changed("partial");
  }

  // A provisional result of the segment in progress (baseMs: the connection's offset).
  partialArrived(msg, baseMs) {
    const last = this.lastFinal;
    if (last && last.baseMs === baseMs && msg.segment <= last.segment) return false; // its final came first
    const at = this.offsetMs + baseMs;
    const current = this.partial;
    if (current && current.baseMs === baseMs && current.segment === msg.segment && Math.round(at + msg.endMs) <= current.endMs) return false;
    const startMs = Math.round(at + msg.startMs);
    // Where the leading label took the lead: the segment's start, or the end of the last
    // partial of this segment that led with another label.
    const sameSegment = current && current.baseMs === baseMs && current.segment === msg.segment;
    const leadSinceMs = !sameSegment ? startMs : current.label === msg.label ? current.leadSinceMs : current.endMs;
    this.partial = { ...msg, baseMs, startMs, endMs: Math.round(at + msg.endMs), leadSinceMs };
    this.changed("partial");
    return true;
  }

  // A final result or skipped segment of the live stream; it supersedes its partials.
  finalArrived(msg, baseMs) {
    const entry = this.results.add(msg, this.offsetMs + baseMs, "live", "");
    this.lastFinal = { baseMs, segment: msg.segment, endMs: msg.endMs };
    if (this.partial && this.partial.baseMs === baseMs && this.partial.segment <= msg.segment) this.partial = null;
    if (this.speech === "analysing" && this.awaitingEndMs !== null && msg.endMs + SPEECH_END_SLACK_MS >= this.awaitingEndMs) {
      this.awaitingEndMs = null;
      this.speech = "listening";
    }
    this.changed("results");
    return entry;
  }

  // Segments of an upload or a browser recording, placed at offsetMs.
  uploaded(segments, offsetMs, durationMs, source, origin) {
    for (const segment of segments) this.results.add(segment, offsetMs, source, origin);
    this.audioEndMs = Math.max(this.audioEndMs, offsetMs + durationMs);
    this.changed("results");
  }

  end() {
    this.audioEndMs = Math.max(this.audioEndMs, this.nowMs());
    Object.assign(this, { mode: "idle", speech: "off", partial: null, awaitingEndMs: null });
    this.changed("mode");
  }

  // Replaces the timeline with another session's (a new one when entries is empty).
  load({ model = null, entries = [], audioEndMs = 0 } = {}) {
    if (this.mode !== "idle") throw new Error(`cannot switch sessions while ${this.mode}`);
    this.results.entries = [];
    if (model) this.results.setModel(model);
    for (const entry of entries) this.results.restore(entry);
    this.audioEndMs = Math.max(audioEndMs, this.results.endMs());
    this.partial = null;
    this.changed("results");
  }
}
