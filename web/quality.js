// Signal quality and "uncertain" (protocol quality=1, docs/quality.md): how the page words
// them, announces them and weighs uncertain segments. No DOM.

// An uncertain segment counts this much in the summary's shares and the smoothed readout.
export const UNCERTAIN_WEIGHT = 0.25;

const fixed = (value, digits = 0) => Number(value).toFixed(digits);

// What each warning means, in words, with the measure behind it.
const WARNING_TEXT = {
  low_snr: (q, entry) => `loud background noise (speech ${fixed(q.snrDb)} dB above it)`,
  too_quiet: (q) => `very quiet (${fixed(q.levelDbfs)} dBFS)`,
  clipping: (q) => `distorted by clipping (${fixed(q.clipped * 100, 1)} % of samples at full scale)`,
  low_confidence: (q, entry) => `the model is unsure (${fixed(entry.confidence * 100)} % confidence)`,
  too_short_speech: (q) => `little speech in the segment (${fixed(q.speech * 100)} %)`,
};

export function isUncertain(entry) {
  return Boolean(entry && entry.uncertain === true);
}

// "Uncertain: very quiet (-52 dBFS); the model is unsure (38 % confidence)", or "" when
// the entry is not uncertain. Unknown warnings are named as they came.
export function uncertaintyReason(entry) {
  if (!isUncertain(entry)) return "";
  const quality = entry.quality ?? {};
  const reasons = (entry.warnings ?? []).map((warning) => {
    const describe = WARNING_TEXT[warning];
    return describe && entry.quality ? describe(quality, entry) : warning.replaceAll("_", " ");
  });
  return `Uncertain: ${reasons.length ? reasons.join("; ") : "the server gave no reason"}`;
}

// The aria-live text of a final result: an uncertain one is never stated as fact.
export function announcement(label, confidence, entry, { smoothed = false } = {}) {
  const name = label.charAt(0).toUpperCase() + label.slice(1);
  const score = `${Math.round(confidence * 100)}%`;
  const suffix = smoothed ? " (smoothed)" : "";
  if (!isUncertain(entry)) return `${name}, ${score}${suffix}`;
  const reasons = (entry.warnings ?? []).map((w) => w.replaceAll("_", " ")).join(", ");
  return `Possibly ${label}, ${score}${suffix}; uncertain${reasons ? `: ${reasons}` : ""}`;
}

export function weightOf(entry) {
  return isUncertain(entry) ? UNCERTAIN_WEIGHT : 1;
}

// How long a partial's leading label has held, in ms of audio.
export function leadHeldMs(partial) {
  if (!partial || !Number.isFinite(partial.leadSinceMs)) return 0;
  return Math.max(0, partial.endMs - partial.leadSinceMs);
}
