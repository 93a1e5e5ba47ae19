import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Resampler } from "../../web/resampler.js";

function sine(freqHz, rateHz, seconds, amplitude = 0.5) {
  const out = new Float32Array(Math.round(rateHz * seconds));
  for (let i = 0; i < out.length; i++) out[i] = amplitude * Math.sin((2 * Math.PI * freqHz * i) / rateHz);
  return out;
}

function concat(parts) {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function resampleAll(input, inRate, outRate = 16000) {
  const r = new Resampler(inRate, outRate);
  return concat([r.process(input), r.flush()]);
}

// Least-squares fit of a*sin + b*cos at freqHz over the steady middle: amplitude and residual RMS.
function fitSine(signal, freqHz, rateHz, skip) {
  let ss = 0, sc = 0, cc = 0, ys = 0, yc = 0;
  for (let n = skip; n < signal.length - skip; n++) {
    const s = Math.sin((2 * Math.PI * freqHz * n) / rateHz);
    const c = Math.cos((2 * Math.PI * freqHz * n) / rateHz);
    ss += s * s; sc += s * c; cc += c * c; ys += signal[n] * s; yc += signal[n] * c;
  }
  const det = ss * cc - sc * sc;
  const a = (ys * cc - yc * sc) / det;
  const b = (yc * ss - ys * sc) / det;
  let residual = 0;
  let count = 0;
  for (let n = skip; n < signal.length - skip; n++) {
    const model = a * Math.sin((2 * Math.PI * freqHz * n) / rateHz) + b * Math.cos((2 * Math.PI * freqHz * n) / rateHz);
    residual += (signal[n] - model) ** 2;
    count++;
  }
  return { amplitude: Math.hypot(a, b), phase: Math.atan2(b, a), residualRms: Math.sqrt(residual / count) };
}

function rms(signal, skip) {
  let sum = 0;
  for (let n = skip; n < signal.length - skip; n++) sum += signal[n] ** 2;
  return Math.sqrt(sum / (signal.length - 2 * skip));
}

describe("Resampler", () => {
  for (const [inRate, freqHz] of [[44100, 1000], [44100, 6500], [48000, 440], [48000, 7000], [22050, 3000], [8000, 1000], [96000, 2500], [44056, 1234]]) {
    it(`keeps a ${freqHz} Hz tone at ${freqHz} Hz, its level and its phase (${inRate} Hz in)`, () => {
      const out = resampleAll(sine(freqHz, inRate, 1.0), inRate);
      const fit = fitSine(out, freqHz, 16000, 800);
      assert.ok(Math.abs(fit.amplitude - 0.5) < 0.5 * 0.012, `amplitude ${fit.amplitude}`);
      assert.ok(Math.abs(fit.phase) < 0.01, `phase ${fit.phase} rad: output is delayed`);
      assert.ok(fit.residualRms < 0.5 * 1e-3, `residual ${fit.residualRms}: other frequencies present`);
    });
  }

  it("puts a wrongly assumed rate's tone at another pitch (the fit above can fail)", () => {
    const out = resampleAll(sine(1000, 48000, 1.0), 44100);
    const fit = fitSine(out, 1000, 16000, 800);
    assert.ok(fit.residualRms > 0.1, `residual ${fit.residualRms}`);
  });

  for (const [inRate, freqHz] of [[44100, 9000], [44100, 10000], [44100, 15000], [48000, 8500], [48000, 12000], [48000, 20000], [96000, 30000]]) {
    it(`attenuates ${freqHz} Hz (would alias) by more than 60 dB (${inRate} Hz in)`, () => {
      const out = resampleAll(sine(freqHz, inRate, 1.0), inRate);
      const level = rms(out, 800) / (0.5 / Math.SQRT2);
      assert.ok(level < 1e-3, `alias at ${(20 * Math.log10(level)).toFixed(1)} dB`);
    });
  }

  it("picking every third sample would alias (the attenuation test can fail)", () => {
    const input = sine(12000, 48000, 1.0);
    const picked = new Float32Array(input.length / 3).map((_, i) => input[3 * i]);
    assert.ok(rms(picked, 800) > 0.3);
  });

  it("removes images when upsampling 8 kHz to 16 kHz", () => {
    const out = resampleAll(sine(3000, 8000, 1.0), 8000);
    const fit = fitSine(out, 3000, 16000, 800);
    assert.ok(fit.residualRms < 0.5 * 2e-3, `image residual ${fit.residualRms}`);
  });

  for (const inRate of [44100, 48000, 22050, 8000, 16001, 16000]) {
    it(`gives the same samples and counts whatever the chunking (${inRate} Hz in)`, () => {
      const input = new Float32Array(inRate).map((_, i) => Math.sin(i * 0.01) * 0.3 + Math.sin(i * 0.37) * 0.2);
      const oneShot = new Resampler(inRate, 16000);
      const whole = concat([oneShot.process(input), oneShot.flush()]);
      assert.equal(whole.length, Math.ceil((input.length * 16000) / inRate));

      const chunked = new Resampler(inRate, 16000);
      const parts = [];
      let fed = 0;
      let seed = 7;
      for (const size of [1, 127, 128, 0, 3, 1000]) {
        parts.push(chunked.process(input.subarray(fed, fed + size)));
        fed += size;
      }
      while (fed < input.length) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        const size = Math.min(1 + (seed % 700), input.length - fed);
        parts.push(chunked.process(input.subarray(fed, fed + size)));
        fed += size;
        const emitted = parts.reduce((n, p) => n + p.length, 0);
        const expected = Math.max(0, Math.ceil(((fed - chunked.lookaheadSamples) * 16000) / inRate));
        assert.equal(emitted, expected, `after ${fed} inputs`);
      }
      parts.push(chunked.flush());
      assert.deepEqual(concat(parts), whole);
    });
  }

  it("starts afresh after flush()", () => {
    const r = new Resampler(44100, 16000);
    const input = sine(500, 44100, 0.25);
    const first = concat([r.process(input), r.flush()]);
    const second = concat([r.process(input), r.flush()]);
    assert.deepEqual(second, first);
  });

  it("flushes nothing when given nothing", () => {
    assert.equal(new Resampler(44100, 16000).flush().length, 0);
  });

  for (const bad of [0, -44100, Number.NaN, Infinity, "44100", 999, 1e9]) {
    it(`refuses the input rate ${String(bad)} and names it`, () => {
      assert.throws(() => new Resampler(bad, 16000), (error) => error instanceof RangeError && error.message.includes(String(bad)));
    });
  }

  it("refuses input that is not a Float32Array", () => {
    assert.throws(() => new Resampler(44100, 16000).process([0.1, 0.2]), /Float32Array.*Array/);
  });
});
