// AudioWorklet: microphone at the context's rate -> low-pass resampled -> 16-bit PCM frames.
import { Resampler } from "./resampler.js";
import { floatToPcm16 } from "./wav.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRateHz, frameSamples } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, targetRateHz);
    this.frame = new Float32Array(frameSamples);
    this.filled = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data.type === "flush") this.flush();
    };
  }

  push(samples) {
    let offset = 0;
    while (offset < samples.length) {
      const take = Math.min(samples.length - offset, this.frame.length - this.filled);
      this.frame.set(samples.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === this.frame.length) this.send("audio", this.frame);
    }
  }

  send(type, samples) {
    let sum = 0;
    let peak = 0;
    for (let i = 0; i < samples.length; i++) {
      const value = Math.abs(samples[i]);
      sum += value * value;
      if (value > peak) peak = value;
    }
    const rms = samples.length > 0 ? Math.sqrt(sum / samples.length) : 0;
    const pcm = floatToPcm16(samples);
    this.port.postMessage({ type, pcm: pcm.buffer, rms, peak }, [pcm.buffer]);
    this.filled = 0;
  }

  flush() {
    this.push(this.resampler.flush());
    this.send("flushed", this.frame.subarray(0, this.filled));
    this.running = false;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (this.running && channel) this.push(this.resampler.process(channel));
    return this.running;
  }
}

registerProcessor("emostream-capture", CaptureProcessor);
