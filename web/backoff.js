// Exponential backoff with jitter for reconnecting.

export class Backoff {
  constructor({ initialMs = 500, maxMs = 10000, factor = 2, jitter = 0.2, random = Math.random } = {}) {
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError(`need 0 < initialMs <= maxMs, got ${initialMs} and ${maxMs}`);
    if (!(factor >= 1)) throw new RangeError(`factor must be at least 1, got ${factor}`);
    if (!(jitter >= 0 && jitter < 1)) throw new RangeError(`jitter must be in [0, 1), got ${jitter}`);
    Object.assign(this, { initialMs, maxMs, factor, jitter, random });
    this.attempts = 0;
  }

  // Delay before the next attempt: initial * factor^attempts, capped, then +-jitter.
  next() {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempts);
    this.attempts += 1;
    const spread = base * this.jitter * (2 * this.random() - 1);
    return Math.round(Math.min(this.maxMs, base + spread));
  }

  reset() {
    this.attempts = 0;
  }
}
