import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { chartColumns, FOLLOW_SPAN_MS, followWindow, moveWindow } from "../../web/chart.js";

describe("chart data", () => {
  it("has one x per segment (its middle, in seconds) and one column per label", () => {
    const points = [
      { startMs: 0, endMs: 2000, scores: { a: 0.9, b: 0.1 } },
      { startMs: 3000, endMs: 4000, scores: { a: 0.2, b: 0.8 } },
    ];
    assert.deepEqual(chartColumns(points, ["a", "b", "c"]), [[1, 3.5], [0.9, 0.2], [0.1, 0.8], [null, null]]);
    assert.deepEqual(chartColumns([], ["a"]), [[], []]);
  });

  it("follows the live edge with the last minute", () => {
    assert.deepEqual(followWindow(0), { startMs: 0, endMs: FOLLOW_SPAN_MS });
    assert.deepEqual(followWindow(3600000), { startMs: 3600000 - FOLLOW_SPAN_MS, endMs: 3600000 });
  });

  it("zooms around a point and pans, inside the session", () => {
    const view = { startMs: 0, endMs: 60000 };
    assert.deepEqual(moveWindow(view, { factor: 0.5, centreMs: 30000, totalMs: 600000 }), { startMs: 15000, endMs: 45000 });
    assert.deepEqual(moveWindow(view, { shiftMs: 30000, totalMs: 600000 }), { startMs: 30000, endMs: 90000 });
    assert.deepEqual(moveWindow(view, { shiftMs: -30000, totalMs: 600000 }), { startMs: 0, endMs: 60000 });
    assert.deepEqual(moveWindow({ startMs: 540000, endMs: 600000 }, { shiftMs: 30000, totalMs: 600000 }), { startMs: 540000, endMs: 600000 });
    const tiny = moveWindow(view, { factor: 0.0001, centreMs: 30000, totalMs: 600000 });
    assert.equal(tiny.endMs - tiny.startMs, 2000, "zoom stops at 2 s");
    const all = moveWindow(view, { factor: 100, totalMs: 600000 });
    assert.deepEqual(all, { startMs: 0, endMs: 600000 }, "zoom out stops at the whole session");
  });
});
