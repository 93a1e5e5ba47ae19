// Microphone capture: getUserMedia -> AudioWorklet (capture-worklet.js) -> 16 kHz PCM frames.

export class MicrophoneError extends Error {
  // kind: "insecure" | "unsupported" | "denied" | "no-device" | "in-use" | "failed"
  constructor(kind, message) {
    super(message);
    this.name = "MicrophoneError";
    this.kind = kind;
  }
}

// The voice as it is: the browser's speech processing would change what the model hears.
export function constraints(deviceId = "") {
  const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: { ideal: 1 } };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return { audio };
}

// Audio inputs as {deviceId, label}; labels are empty until the site has microphone permission.
export async function listMicrophones() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "audioinput" && d.deviceId !== "default" && d.deviceId !== "communications").map((d) => ({ deviceId: d.deviceId, label: d.label }));
}

// What the browser actually applied (getSettings), for the technical details.
export function describeSettings(settings) {
  const parts = [];
  if (settings.sampleRate) parts.push(`${settings.sampleRate} Hz`);
  if (settings.channelCount) parts.push(`${settings.channelCount} channel${settings.channelCount === 1 ? "" : "s"}`);
  if (settings.sampleSize) parts.push(`${settings.sampleSize}-bit`);
  for (const [key, name] of [["echoCancellation", "echo cancellation"], ["noiseSuppression", "noise suppression"], ["autoGainControl", "auto gain"]]) {
    if (typeof settings[key] === "boolean") parts.push(`${name} ${settings[key] ? "on" : "off"}`);
  }
  if (typeof settings.latency === "number") parts.push(`latency ${Math.round(settings.latency * 1000)} ms`);
  return parts.join(", ") || "not reported by this browser";
}

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

async function getStream(deviceId) {
  if (!globalThis.isSecureContext) {
    throw new MicrophoneError("insecure", "This page was opened over plain HTTP, where browsers do not allow microphone access.");
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !globalThis.AudioWorkletNode) {
    throw new MicrophoneError("unsupported", "This browser cannot capture audio from a microphone.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia(constraints(deviceId));
  } catch (error) {
    throw classify(error);
  }
}

// Starts capture; onFrame(Int16Array pcm, {rms, peak}) for each frame of frameMs at targetRateHz.
export async function startCapture({ onFrame, onEnded, targetRateHz = 16000, frameMs = 40, deviceId = "" }) {
  const stream = await getStream(deviceId);
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
    settings: track && track.getSettings ? track.getSettings() : {},
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
