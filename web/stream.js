// One live session over /v1/stream: connects, reconnects with backoff, queues audio while away.
import { Backoff } from "./backoff.js";
import { parseServerMessage, ProtocolError } from "./protocol.js";

export const CLOSE = { NORMAL: 1000, POLICY: 1008, TOO_BIG: 1009, INTERNAL: 1011, TRY_AGAIN_LATER: 1013 };
const FINISH_TIMEOUT_MS = 15000;

// states: "connecting", "live", "waiting" {reason: "busy"|"lost", delayMs},
// "blocked" (the WebSocket never opens), "failed" {code, message}, "ended"
export class LiveStream {
  constructor({ url, sampleRateHz = 16000, maxQueueMs = 10000, backoff = new Backoff(), onState, onMessage, onProtocolError }) {
    this.url = url;
    this.sampleRateHz = sampleRateHz;
    this.maxQueueSamples = (maxQueueMs * sampleRateHz) / 1000;
    this.backoff = backoff;
    this.handlers = { onState, onMessage, onProtocolError };
    this.queue = [];
    this.queuedSamples = 0;
    this.nextSample = 0;
    this.everOpened = false;
    this.failedOpens = 0;
    this.state = "idle";
    this.socket = null;
    this.timer = null;
    this.finishing = null;
    this.lastError = null;
  }

  start() {
    this.connect();
  }

  setState(state, detail = {}) {
    this.state = state;
    this.handlers.onState(state, detail);
  }

  connect() {
    this.timer = null;
    this.lastError = null;
    this.setState("connecting", { attempt: this.backoff.attempts + 1 });
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      this.setState("blocked", { message: error.message });
      return;
    }
    socket.binaryType = "arraybuffer";
    const connection = { socket, opened: false, baseSample: null };
    this.socket = socket;
    socket.onopen = () => {
      connection.opened = true;
      this.everOpened = true;
      this.failedOpens = 0;
    };
    socket.onmessage = (event) => this.receive(connection, event.data);
    socket.onclose = (event) => this.closed(connection, event);
  }

  receive(connection, data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = parseServerMessage(data);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.handlers.onProtocolError(error);
      return;
    }
    if (msg.type === "ready") {
      connection.baseSample = this.queue.length > 0 ? this.queue[0].startSample : this.nextSample;
      this.backoff.reset();
      this.setState("live", { session: msg.session });
      this.sendQueued();
      if (this.finishing) this.sendEnd();
    } else if (msg.type === "error") {
      this.lastError = msg;
    }
    const baseMs = connection.baseSample === null ? 0 : (connection.baseSample * 1000) / this.sampleRateHz;
    this.handlers.onMessage(msg, baseMs);
    if (msg.type === "end" && this.finishing) this.finishing.resolve();
  }

  // Queues or sends one frame of PCM; frames are numbered by their first sample.
  send(pcm) {
    this.queue.push({ pcm, startSample: this.nextSample });
    this.queuedSamples += pcm.length;
    this.nextSample += pcm.length;
    while (this.queuedSamples > this.maxQueueSamples && this.queue.length > 1) {
      this.queuedSamples -= this.queue.shift().pcm.length;
    }
    if (this.state === "live") this.sendQueued();
  }

  sendQueued() {
    for (const { pcm } of this.queue) this.socket.send(pcm.buffer.byteLength === pcm.byteLength ? pcm.buffer : pcm.slice().buffer);
    this.queue = [];
    this.queuedSamples = 0;
  }

  // Frames that never reached the server (for the record-and-upload fallback).
  takeQueued() {
    const frames = this.queue.map((item) => item.pcm);
    const startSample = this.queue.length > 0 ? this.queue[0].startSample : this.nextSample;
    this.queue = [];
    this.queuedSamples = 0;
    return { frames, startSample };
  }

  sendEnd() {
    this.socket.send(JSON.stringify({ type: "end" }));
  }

  // Sends {"type": "end"} and resolves once the server has answered everything (or gave up).
  finish() {
    if (this.finishing) return this.finishing.promise;
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    this.finishing = { promise, resolve };
    const timeout = setTimeout(resolve, FINISH_TIMEOUT_MS);
    promise.then(() => {
      clearTimeout(timeout);
      this.close();
    });
    if (this.state === "live") this.sendEnd();
    else if (this.state !== "connecting") resolve();
    return promise;
  }

  close() {
    clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(CLOSE.NORMAL);
    if (this.state !== "failed" && this.state !== "blocked") this.setState("ended");
  }

  retryNow() {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.connect();
  }

  closed(connection, event) {
    if (connection.socket !== this.socket) return;
    this.socket = null;
    if (this.finishing) {
      this.finishing.resolve();
      return;
    }
    const error = this.lastError;
    if (event.code === CLOSE.TRY_AGAIN_LATER) return this.retry("busy", error);
    if (event.code === CLOSE.POLICY || event.code === CLOSE.TOO_BIG) {
      this.setState("failed", { code: error ? error.code : String(event.code), message: error ? error.message : event.reason });
      return;
    }
    if (!connection.opened) {
      this.failedOpens += 1;
      if (!this.everOpened && this.failedOpens >= 2) {
        this.setState("blocked", { message: `the connection to ${new URL(this.url).host} could not be opened` });
        return;
      }
    }
    this.retry("lost", error);
  }

  retry(reason, error) {
    const delayMs = this.backoff.next();
    this.setState("waiting", { reason, delayMs, message: error ? error.message : "" });
    this.timer = setTimeout(() => this.connect(), delayMs);
  }
}
