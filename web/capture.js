// Microphone capture: getUserMedia -> AudioWorklet (capture-worklet.js) -> 16 kHz PCM frames.

export class MicrophoneError extends Error {
  // kind: "insecure" | "unsupported" | "denied" | "no-device" | "in-use" | "failed"
  constructor(kind, message) {
    super(message);
    this.name = "MicrophoneError";
    this.kind = kind;
  }
}

const CONSTRAINTS = {
  audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: { ideal: 1 } },
};

function classify(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return new MicrophoneError("denied", "Microphone access was denied.");
    case "NotFoundError":
    case "OverconstrainedError":
      return new MicrophoneError("no-device", "No microphone was found.");
    case "NotReadableError":
    case "AbortError":
      return new MicrophoneError("in-use", "The microphone could not be opened; another app may be using it.");
    default:
      return new MicrophoneError("failed", `The microphone could not be started (${error && error.message ? error.message : error}).`);
  }
}

async function getStream() {
  if (!globalThis.isSecureContext) {
    throw new MicrophoneError("insecure", "This page was opened over plain HTTP, where browsers do not allow microphone access.");
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !globalThis.AudioWorkletNode) {
    throw new MicrophoneError("unsupported", "This browser cannot capture audio from a microphone.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  } catch (error) {
    throw classify(error);
  }
}

// Starts capture; onFrame(Int16Array pcm, {rms, peak}) for each frame of frameMs at targetRateHz.
export async function startCapture({ onFrame, onEnded, targetRateHz = 16000, frameMs = 40 }) {
  const stream = await getStream();
  let context;
  try {
    context = new AudioContext({ latencyHint: "interactive" });
    await context.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    if (context) context.close();
    throw new MicrophoneError("failed", `Audio processing could not start (${error.message}).`);
  }
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "emostream-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    channelCount: 1,
    channelCountMode: "explicit",
    channelInterpretation: "speakers",
    processorOptions: { targetRateHz, frameSamples: Math.round((targetRateHz * frameMs) / 1000) },
  });
  let flushed;
  const done = new Promise((resolve) => (flushed = resolve));
  node.port.onmessage = ({ data }) => {
    const pcm = new Int16Array(data.pcm);
    if (pcm.length > 0) onFrame(pcm, { rms: data.rms, peak: data.peak });
    if (data.type === "flushed") flushed();
  };
  source.connect(node);
  const [track] = stream.getAudioTracks();
  if (track && onEnded) track.addEventListener("ended", onEnded, { once: true });
  await context.resume();

  let stopped = false;
  return {
    contextRateHz: context.sampleRate,
    targetRateHz,
    deviceLabel: track ? track.label : "",
    // Delivers the last partial frame, then releases the microphone.
    async stop() {
      if (stopped) return;
      stopped = true;
      if (track && onEnded) track.removeEventListener("ended", onEnded);
      node.port.postMessage({ type: "flush" });
      const timeout = new Promise((resolve) => setTimeout(resolve, 1000));
      await Promise.race([done, timeout]);
      source.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      await context.close();
    },
  };
}
