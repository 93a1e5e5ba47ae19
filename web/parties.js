// Two parties of a call (a stereo recording analysed channel by channel): names and lanes.
// DOM-free, so node can test it; view.js draws what laneLayout() returns.
import { isUncertain, uncertaintyReason } from "./quality.js";

// Channel 0 (left) is party 1, channel 1 (right) party 2.
export function partyName(channel) {
  return `Party ${channel + 1}`;
}

// One lane per party over the span [fromMs, toMs] of the timeline: each segment of that
// party as a block with its position and width in percent of the span, and (quality=1)
// whether it is uncertain and why.
export function laneLayout(entries, parties, fromMs, toMs) {
  const spanMs = Math.max(1, toMs - fromMs);
  const place = (ms) => (100 * (Math.min(Math.max(ms, fromMs), toMs) - fromMs)) / spanMs;
  return parties.map((channel) => ({
    channel,
    name: partyName(channel),
    blocks: entries
      .filter((entry) => entry.channel === channel && entry.endMs > fromMs && entry.startMs < toMs)
      .map((entry) => ({
        index: entry.index,
        startMs: entry.startMs,
        endMs: entry.endMs,
        label: entry.label,
        skipped: entry.skipped,
        uncertain: isUncertain(entry),
        reason: uncertaintyReason(entry),
        leftPct: place(entry.startMs),
        widthPct: place(entry.endMs) - place(entry.startMs),
      })),
  }));
}
