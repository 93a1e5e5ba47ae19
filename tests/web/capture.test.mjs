import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { constraints, describeSettings } from "../../web/capture.js";

describe("capture settings", () => {
  it("asks for the raw voice, from the chosen microphone when there is one", () => {
    assert.deepEqual(constraints(), { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: { ideal: 1 } } });
    assert.deepEqual(constraints("abc").audio.deviceId, { exact: "abc" });
  });

  it("describes what the browser applied", () => {
    const text = describeSettings({ sampleRate: 48000, channelCount: 1, sampleSize: 16, echoCancellation: false, noiseSuppression: true, autoGainControl: false, latency: 0.01, deviceId: "x" });
    assert.equal(text, "48000 Hz, 1 channel, 16-bit, echo cancellation off, noise suppression on, auto gain off, latency 10 ms");
    assert.equal(describeSettings({ channelCount: 2 }), "2 channels");
    assert.equal(describeSettings({}), "not reported by this browser");
  });
});
