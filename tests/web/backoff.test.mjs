import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Backoff } from "../../web/backoff.js";

describe("Backoff", () => {
  it("doubles from the initial delay up to the cap", () => {
    const backoff = new Backoff({ initialMs: 500, maxMs: 5000, jitter: 0 });
    assert.deepEqual(Array.from({ length: 7 }, () => backoff.next()), [500, 1000, 2000, 4000, 5000, 5000, 5000]);
  });

  it("starts again after reset()", () => {
    const backoff = new Backoff({ initialMs: 100, jitter: 0 });
    backoff.next();
    backoff.next();
    backoff.reset();
    assert.equal(backoff.next(), 100);
  });

  it("spreads delays by the jitter fraction, never past the cap", () => {
    const low = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.2, random: () => 0 });
    const high = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.2, random: () => 0.999999 });
    const mid = new Backoff({ initialMs: 1000, maxMs: 8000, jitter: 0.2, random: () => 0.75 });
    assert.equal(low.next(), 800);
    assert.equal(high.next(), 1000);
    assert.equal(mid.next(), 1100);
  });

  it("refuses nonsense settings, naming them", () => {
    assert.throws(() => new Backoff({ initialMs: 0 }), /initialMs.*0/);
    assert.throws(() => new Backoff({ initialMs: 10, maxMs: 5 }), /10 and 5/);
    assert.throws(() => new Backoff({ factor: 0.5 }), /factor.*0\.5/);
    assert.throws(() => new Backoff({ jitter: 1 }), /jitter.*1/);
  });
});
