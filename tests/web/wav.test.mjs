import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { concatPcm16, encodeWav, floatToPcm16 } from "../../web/wav.js";

function ascii(view, offset, length) {
  return String.fromCharCode(...new Uint8Array(view.buffer, offset, length));
}

describe("floatToPcm16", () => {
  it("scales, rounds and clips", () => {
    const pcm = floatToPcm16(new Float32Array([0, 0.5, -0.5, 1, -1, 1.5, -1.5, 1e-6, 0.99999]));
    assert.deepEqual([...pcm], [0, 16384, -16383, 32767, -32767, 32767, -32768, 0, 32767]);
  });

  it("maps NaN to silence instead of garbage", () => {
    assert.deepEqual([...floatToPcm16(new Float32Array([Number.NaN]))], [0]);
  });
});

describe("concatPcm16", () => {
  it("joins chunks in order", () => {
    const out = concatPcm16([new Int16Array([1, 2]), new Int16Array([]), new Int16Array([3])]);
    assert.deepEqual([...out], [1, 2, 3]);
  });
});

describe("encodeWav", () => {
  it("writes a canonical PCM header", () => {
    const samples = new Int16Array([0, 1, -1, 32767, -32768, 1234]);
    const view = new DataView(encodeWav(samples, 16000));
    assert.equal(view.byteLength, 44 + 12);
    assert.equal(ascii(view, 0, 4), "RIFF");
    assert.equal(view.getUint32(4, true), 36 + 12);
    assert.equal(ascii(view, 8, 4), "WAVE");
    assert.equal(ascii(view, 12, 4), "fmt ");
    assert.equal(view.getUint32(16, true), 16);
    assert.equal(view.getUint16(20, true), 1, "format: PCM");
    assert.equal(view.getUint16(22, true), 1, "channels");
    assert.equal(view.getUint32(24, true), 16000, "sample rate");
    assert.equal(view.getUint32(28, true), 32000, "byte rate");
    assert.equal(view.getUint16(32, true), 2, "block align");
    assert.equal(view.getUint16(34, true), 16, "bits per sample");
    assert.equal(ascii(view, 36, 4), "data");
    assert.equal(view.getUint32(40, true), 12);
  });

  it("stores every sample little-endian, unchanged", () => {
    const samples = new Int16Array(5000).map((_, i) => ((i * 7919) % 65536) - 32768);
    const view = new DataView(encodeWav(samples, 44100));
    const back = new Int16Array(samples.length).map((_, i) => view.getInt16(44 + 2 * i, true));
    assert.deepEqual(back, samples);
    assert.equal(view.getUint8(44 + 2 * 4999), samples[4999] & 0xff);
  });

  it("describes stereo and other rates", () => {
    const view = new DataView(encodeWav(new Int16Array(8), 48000, 2));
    assert.equal(view.getUint16(22, true), 2);
    assert.equal(view.getUint32(28, true), 48000 * 4);
    assert.equal(view.getUint16(32, true), 4);
  });

  it("encodes an empty recording as a valid empty file", () => {
    const view = new DataView(encodeWav(new Int16Array(0), 16000));
    assert.equal(view.byteLength, 44);
    assert.equal(view.getUint32(40, true), 0);
  });

  it("refuses bad arguments, naming the value", () => {
    assert.throws(() => encodeWav(new Float32Array(4), 16000), /Int16Array.*Float32Array/);
    assert.throws(() => encodeWav(new Int16Array(4), 16000.5), /16000\.5/);
    assert.throws(() => encodeWav(new Int16Array(4), 0), /got 0/);
    assert.throws(() => encodeWav(new Int16Array(4), 16000, 0), /channels.*got 0/);
    assert.throws(() => encodeWav(new Int16Array(3), 16000, 2), /3 samples.*2 channels/);
  });
});
