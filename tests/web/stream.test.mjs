import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { Backoff } from "../../web/backoff.js";
import { LiveStream } from "../../web/stream.js";

// A WebSocket stand-in: the test plays the server by calling open(), message() and close().
class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static made = [];
  static waiters = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = FakeSocket.CONNECTING;
    FakeSocket.made.push(this);
    for (const resolve of FakeSocket.waiters.splice(0)) resolve(this);
  }

  send(data) {
    if (this.readyState !== FakeSocket.OPEN) throw new Error("send on a socket that is not open");
    this.sent.push(data);
  }

  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen();
  }

  message(obj) {
    this.onmessage({ data: JSON.stringify(obj) });
  }

  close(code = 1000) {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.onclose({ code, reason: "" });
  }
}

const READY = { type: "ready", session: "s1", model: { name: "m", version: "v", labels: ["a", "b"] } };
const RESULT = { type: "result", segment: 0, start_ms: 100, end_ms: 900, label: "a", confidence: 0.6, scores: { a: 0.6, b: 0.4 }, latency_ms: 5 };

function makeStream(options = {}) {
  const states = [];
  const messages = [];
  const errors = [];
  const stream = new LiveStream({
    url: "ws://host/v1/stream?sample_rate=16000",
    backoff: new Backoff({ initialMs: 1, maxMs: 4, jitter: 0 }),
    onState: (state, detail) => states.push([state, detail]),
    onMessage: (msg, baseMs) => messages.push([msg, baseMs]),
    onProtocolError: (error) => errors.push(error.message),
    ...options,
  });
  return { stream, states, messages, errors };
}

const lastSocket = () => FakeSocket.made[FakeSocket.made.length - 1];
// Resolves with the next socket the stream creates (its retry timer fires first).
const nextConnect = () => new Promise((resolve) => FakeSocket.waiters.push(resolve));

describe("LiveStream", () => {
  beforeEach(() => {
    globalThis.WebSocket = FakeSocket;
    FakeSocket.made = [];
    FakeSocket.waiters = [];
  });

  it("queues audio until ready, then sends it and reports times from the first sample", () => {
    const { stream, states, messages } = makeStream();
    stream.start();
    stream.send(new Int16Array(640));
    stream.send(new Int16Array(640));
    const socket = lastSocket();
    socket.open();
    assert.equal(socket.sent.length, 0);
    socket.message(READY);
    assert.equal(socket.sent.length, 2);
    assert.equal(socket.sent[0].byteLength, 1280);
    stream.send(new Int16Array(640));
    assert.equal(socket.sent.length, 3);
    socket.message(RESULT);
    assert.deepEqual(states.map(([s]) => s), ["connecting", "live"]);
    assert.equal(messages[1][0].label, "a");
    assert.equal(messages[1][1], 0);
  });

  it("keeps at most maxQueueMs of audio while away, dropping the oldest", () => {
    const { stream, messages } = makeStream({ maxQueueMs: 100 });
    stream.start();
    for (let i = 0; i < 5; i++) stream.send(new Int16Array(640).fill(i));
    const socket = lastSocket();
    socket.open();
    socket.message(READY);
    assert.deepEqual(socket.sent.map((b) => new Int16Array(b)[0]), [3, 4]);
    socket.message(RESULT);
    assert.equal(messages[1][1], 120, "the connection starts at frame 3, 120 ms in");
  });

  it("retries with backoff after 1013 and says the server is busy", async () => {
    const { stream, states } = makeStream();
    stream.start();
    const first = lastSocket();
    first.open();
    first.message({ type: "error", code: "busy", message: "server full" });
    const retried = nextConnect();
    first.close(1013);
    assert.deepEqual(states[1], ["waiting", { reason: "busy", delayMs: 1, message: "server full" }]);
    const second = await retried;
    assert.notEqual(second, first);
    second.open();
    second.message(READY);
    assert.equal(stream.state, "live");
    stream.close();
  });

  it("reconnects after losing a live connection, placing new times after the old audio", async () => {
    const { stream, states, messages } = makeStream();
    stream.start();
    const first = lastSocket();
    first.open();
    first.message(READY);
    stream.send(new Int16Array(1600));
    const retried = nextConnect();
    first.close(1006);
    assert.equal(states.at(-1)[1].reason, "lost");
    stream.send(new Int16Array(1600));
    const second = await retried;
    second.open();
    second.message(READY);
    second.message(RESULT);
    assert.equal(messages.at(-1)[1], 100, "the second connection starts 100 ms into the session");
    assert.equal(second.sent.length, 1);
    stream.close();
  });

  it("keeps retrying when the server is down after a session worked", async () => {
    const { stream, states } = makeStream();
    stream.start();
    const first = lastSocket();
    first.open();
    first.message(READY);
    let retried = nextConnect();
    first.close(1013);
    for (let i = 0; i < 3; i++) {
      const socket = await retried;
      retried = nextConnect();
      socket.close(1006);
    }
    await retried;
    assert.ok(!states.some(([s]) => s === "blocked"));
    stream.close();
  });

  it("falls back to recording when the socket never opens, twice", async () => {
    const { stream, states } = makeStream();
    stream.start();
    stream.send(new Int16Array(320));
    const retried = nextConnect();
    lastSocket().close(1006);
    (await retried).close(1006);
    assert.equal(states.at(-1)[0], "blocked");
    const { frames, startSample } = stream.takeQueued();
    assert.equal(frames.length, 1);
    assert.equal(startSample, 0);
  });

  it("stops on a policy close, with the server's error", () => {
    const { stream, states } = makeStream();
    stream.start();
    const socket = lastSocket();
    socket.open();
    socket.message({ type: "error", code: "unauthorized", message: "a valid access token is required" });
    socket.close(1008);
    assert.deepEqual(states.at(-1), ["failed", { code: "unauthorized", message: "a valid access token is required" }]);
  });

  it("finish() sends end and resolves when the server says end", async () => {
    const { stream, states } = makeStream();
    stream.start();
    const socket = lastSocket();
    socket.open();
    socket.message(READY);
    const done = stream.finish();
    assert.deepEqual(JSON.parse(socket.sent.at(-1)), { type: "end" });
    socket.message({ type: "end", segments: 0, audio_ms: 0 });
    await done;
    assert.equal(states.at(-1)[0], "ended");
    assert.equal(socket.readyState, FakeSocket.CLOSED);
  });

  it("finish() while connecting waits for ready, then sends the queued audio and end", async () => {
    const { stream } = makeStream();
    stream.start();
    stream.send(new Int16Array(640));
    const done = stream.finish();
    const socket = lastSocket();
    socket.open();
    socket.message(READY);
    assert.equal(socket.sent.length, 2);
    assert.deepEqual(JSON.parse(socket.sent[1]), { type: "end" });
    socket.message({ type: "end", segments: 0, audio_ms: 40 });
    await done;
  });

  it("reports malformed messages and goes on", () => {
    const { stream, errors, messages } = makeStream();
    stream.start();
    const socket = lastSocket();
    socket.open();
    socket.onmessage({ data: "{not json" });
    socket.message({ ...RESULT, confidence: "high" });
    socket.message(READY);
    assert.equal(errors.length, 2);
    assert.match(errors[1], /confidence/);
    assert.equal(messages.length, 1);
    stream.close();
  });
});
