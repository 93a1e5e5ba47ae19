// 16-bit PCM helpers and a WAV (RIFF) encoder. Runs in an AudioWorklet, the page and Node.

export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const value = Math.round(samples[i] * 32767);
    out[i] = value > 32767 ? 32767 : value < -32768 ? -32768 : value;
  }
  return out;
}

export function concatPcm16(chunks) {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Int16Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

const HEADER_BYTES = 44;
const MAX_DATA_BYTES = 0xffffffff - HEADER_BYTES + 8;

// Interleaved 16-bit samples to a canonical 44-byte-header PCM WAV file.
export function encodeWav(samples, sampleRateHz, channels = 1) {
  if (!(samples instanceof Int16Array)) {
    throw new TypeError(`encodeWav() takes an Int16Array, got ${Object.prototype.toString.call(samples)}`);
  }
  if (!Number.isInteger(sampleRateHz) || sampleRateHz < 1 || sampleRateHz > 768000) {
    throw new RangeError(`sampleRateHz must be an integer between 1 and 768000, got ${sampleRateHz}`);
  }
  if (!Number.isInteger(channels) || channels < 1 || channels > 8) {
    throw new RangeError(`channels must be an integer between 1 and 8, got ${channels}`);
  }
  if (samples.length % channels !== 0) {
    throw new RangeError(`${samples.length} samples do not divide into ${channels} channels`);
  }
  const dataBytes = samples.length * 2;
  if (dataBytes > MAX_DATA_BYTES) {
    throw new RangeError(`${dataBytes} bytes of audio do not fit in a WAV file`);
  }
  const buffer = new ArrayBuffer(HEADER_BYTES + dataBytes);
  const view = new DataView(buffer);
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  const blockAlign = channels * 2;
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i++) view.setInt16(HEADER_BYTES + 2 * i, samples[i], true);
  return buffer;
}
