// Streaming sample-rate converter: Kaiser-windowed sinc low-pass, polyphase.
// Runs unchanged in an AudioWorklet, in the page and in Node (no DOM, no globals).
//
// Output sample n sits at input position n * inRate / outRate (zero phase: no delay).
// The filter's cutoff sits below the lower of the two Nyquist frequencies, so a
// downsampler removes what would alias and an upsampler removes images.

const MAX_PHASES = 1024;

function gcd(a, b) {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function besselI0(x) {
  let sum = 1;
  let term = 1;
  const half = x / 2;
  for (let k = 1; k < 50; k++) {
    term *= (half / k) * (half / k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

function checkRate(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value) || Math.round(value) < 1000 || value > 384000) {
    throw new RangeError(`${name} must be a sample rate in Hz between 1000 and 384000, got ${value}`);
  }
  return Math.round(value);
}

export function designFilter(inRateHz, outRateHz, attenuationDb = 70, transitionFraction = 0.125) {
  const nyquistHz = Math.min(inRateHz, outRateHz) / 2;
  const transitionHz = nyquistHz * transitionFraction;
  const cutoffHz = nyquistHz - transitionHz / 2;
  const beta = attenuationDb > 50 ? 0.1102 * (attenuationDb - 8.7) : 0.5842 * (attenuationDb - 21) ** 0.4 + 0.07886 * (attenuationDb - 21);
  const length = Math.ceil((attenuationDb - 7.95) / (14.357 * (transitionHz / inRateHz)));
  const halfTaps = Math.max(2, Math.ceil(length / 2));
  return { cutoffHz, beta, halfTaps };
}

export class Resampler {
  #up; #down; #halfTaps; #taps; #rows; #exact; #table;
  #buf; #bufLen = 0; #bufStart = 0;
  #inCount = 0; #outCount = 0; #ip = 0; #phase = 0;
  #stepInt; #stepFrac;

  constructor(inputRateHz, outputRateHz, { attenuationDb = 70, transitionFraction = 0.125 } = {}) {
    const inRate = checkRate("inputRateHz", inputRateHz);
    const outRate = checkRate("outputRateHz", outputRateHz);
    const g = gcd(inRate, outRate);
    this.inputRateHz = inRate;
    this.outputRateHz = outRate;
    this.#up = outRate / g;
    this.#down = inRate / g;
    this.#stepInt = Math.floor(this.#down / this.#up);
    this.#stepFrac = this.#down % this.#up;
    const { cutoffHz, beta, halfTaps } = designFilter(inRate, outRate, attenuationDb, transitionFraction);
    this.#halfTaps = halfTaps;
    this.#taps = 2 * halfTaps;
    this.#exact = this.#up <= MAX_PHASES;
    this.#rows = this.#exact ? this.#up : MAX_PHASES;
    this.#table = this.#buildTable(cutoffHz / inRate, beta);
    this.#buf = new Float32Array(Math.max(4096, 4 * this.#taps));
    this.reset();
  }

  // Input samples that must arrive after an output's position before it is emitted.
  get lookaheadSamples() {
    return this.#halfTaps;
  }

  reset() {
    this.#buf.fill(0, 0, this.#halfTaps);
    this.#bufLen = this.#halfTaps;
    this.#bufStart = -this.#halfTaps;
    this.#inCount = 0;
    this.#outCount = 0;
    this.#ip = 0;
    this.#phase = 0;
  }

  // Row r holds the taps for fractional position r / rows; taps cover j - frac for j in (-half, half].
  #buildTable(cutoff, beta) {
    const rows = this.#exact ? this.#rows : this.#rows + 1;
    const taps = this.#taps;
    const half = this.#halfTaps;
    const table = new Float32Array(rows * taps);
    const i0beta = besselI0(beta);
    for (let r = 0; r < rows; r++) {
      const frac = r / this.#rows;
      let sum = 0;
      const row = new Float64Array(taps);
      for (let t = 0; t < taps; t++) {
        const d = t - half + 1 - frac;
        const x = d / half;
        const window = Math.abs(x) >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - x * x)) / i0beta;
        const arg = 2 * cutoff * d;
        const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
        row[t] = 2 * cutoff * sinc * window;
        sum += row[t];
      }
      for (let t = 0; t < taps; t++) table[r * taps + t] = row[t] / sum;
    }
    return table;
  }

  #append(input) {
    const needed = this.#bufLen + input.length;
    if (needed > this.#buf.length) {
      const bigger = new Float32Array(Math.max(needed, 2 * this.#buf.length));
      bigger.set(this.#buf.subarray(0, this.#bufLen));
      this.#buf = bigger;
    }
    this.#buf.set(input, this.#bufLen);
    this.#bufLen = needed;
  }

  #emit(limit) {
    const half = this.#halfTaps;
    const taps = this.#taps;
    const table = this.#table;
    const buf = this.#buf;
    const capacity = Math.max(0, Math.ceil(((limit - half - this.#ip + 1) * this.#up) / this.#down) + 1);
    const out = new Float32Array(capacity);
    let count = 0;
    while (this.#ip + half < limit) {
      const base = this.#ip - half + 1 - this.#bufStart;
      let acc = 0;
      if (this.#exact) {
        const offset = this.#phase * taps;
        for (let t = 0; t < taps; t++) acc += buf[base + t] * table[offset + t];
      } else {
        const position = (this.#phase / this.#up) * this.#rows;
        const r = Math.floor(position);
        const w = position - r;
        const a = r * taps;
        const b = a + taps;
        for (let t = 0; t < taps; t++) acc += buf[base + t] * (table[a + t] + w * (table[b + t] - table[a + t]));
      }
      out[count++] = acc;
      this.#outCount++;
      this.#ip += this.#stepInt;
      this.#phase += this.#stepFrac;
      if (this.#phase >= this.#up) {
        this.#phase -= this.#up;
        this.#ip += 1;
      }
    }
    this.#discard();
    return out.subarray(0, count);
  }

  #discard() {
    const keepFrom = this.#ip - this.#halfTaps + 1;
    const drop = Math.min(keepFrom - this.#bufStart, this.#bufLen);
    if (drop <= 0) return;
    this.#buf.copyWithin(0, drop, this.#bufLen);
    this.#bufLen -= drop;
    this.#bufStart += drop;
  }

  // Feed input samples; returns the output samples that are now complete.
  process(input) {
    if (!(input instanceof Float32Array)) {
      throw new TypeError(`process() takes a Float32Array, got ${Object.prototype.toString.call(input)}`);
    }
    this.#append(input);
    this.#inCount += input.length;
    return this.#emit(this.#inCount);
  }

  // End of input: returns the remaining outputs (total ceil(inputs * out / in)) and resets.
  flush() {
    const total = Math.ceil((this.#inCount * this.#up) / this.#down);
    const pending = total - this.#outCount;
    let out = new Float32Array(0);
    if (pending > 0) {
      const lastIp = Math.floor(((total - 1) * this.#down) / this.#up);
      const padding = Math.max(0, lastIp + this.#halfTaps + 1 - this.#inCount);
      this.#append(new Float32Array(padding));
      out = this.#emit(this.#inCount + padding).slice(0, pending);
    }
    this.reset();
    return out;
  }
}
