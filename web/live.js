// The live session: microphone capture, the stream to the server, the offline recording
// fallback when the stream is blocked, and the level meter. The page (app.js) owns the
// DOM's other parts and gives this controller its state, elements and view functions.
import { describeSettings, MicrophoneError, startCapture } from "./capture.js";
import { RATE_HZ } from "./state.js";
import { LiveStream } from "./stream.js";
import { concatPcm16, encodeWav } from "./wav.js";

const FRAME_MS = 40;
const MAX_RECORDING_MS = 600000;

export class LiveSession {
  // view: showMessage, clearMessage, setBusy, setStatus, setModel, checkModelVersion,
  // renderSpeech, announceLatest, drawChart, persist, setUploadEnabled, classifyInto,
  // streamUrl, refreshMicrophones, showMicError (app.js).
  constructor({ state, els, view }) {
    Object.assign(this, { state, els, view });
    // The page's connections to the outside: one of each at a time.
    Object.assign(this, { capture: null, stream: null, recording: null, early: [], stopping: false, lastDrawMs: 0 });
  }

  onFrame(pcm, level) {
    if (!this.state.capturing) return;
    this.state.captured(pcm.length);
    const capturedMs = this.state.capturedMs();
    this.els.captured.dataset.ms = String(capturedMs);
    this.els.captured.textContent = `${(capturedMs / 1000).toFixed(1)} s`;
    const db = level.rms > 0 ? 20 * Math.log10(level.rms) : -100;
    const meter = Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
    this.els.levelFill.style.width = `${meter}%`;
    this.els.level.setAttribute("aria-valuenow", String(meter));
    if (this.state.mode === "starting") {
      this.early.push(pcm);
    } else if (this.state.mode === "live" || this.state.mode === "stopping") {
      if (this.stream) this.stream.send(pcm);
      this.state.sent();
      this.els.framesSent.textContent = String(this.state.framesSent);
    } else if (this.state.mode === "recording") {
      this.recording.frames.push(pcm);
      this.recording.samples += pcm.length;
      if (this.recording.samples >= (MAX_RECORDING_MS * RATE_HZ) / 1000) this.stop();
    }
    if (capturedMs - this.lastDrawMs >= 500) {
      this.lastDrawMs = capturedMs;
      this.view.drawChart();
    }
  }

  onStreamMessage(msg, baseMs) {
    switch (msg.type) {
      case "ready":
        this.els.sessionId.textContent = msg.session;
        this.els.interim.textContent = msg.interimMs > 0 ? `every ${msg.interimMs} ms of speech` : "off";
        this.view.setModel(msg.model);
        this.view.checkModelVersion(msg.model.version);
        this.state.ready({ session: msg.session, interimMs: msg.interimMs });
        break;
      case "speech_start":
        this.state.speechStarted(msg.tMs, baseMs);
        break;
      case "speech_end":
        this.state.speechEnded(msg.tMs);
        break;
      case "partial":
        this.state.partialArrived(msg, baseMs);
        break;
      case "result":
      case "skipped":
        this.state.finalArrived(msg, baseMs);
        this.view.renderSpeech();
        this.view.announceLatest();
        break;
      default:
        break; // message types this page does not know are ignored (protocol forward compatibility)
    }
  }

  retryActions() {
    return [
      { label: "Retry now", run: () => this.stream && this.stream.retryNow() },
      { label: "Stop", run: () => this.stop() },
    ];
  }

  onStreamState(streamState, detail) {
    switch (streamState) {
      case "connecting":
        this.view.setStatus("connecting", detail.attempt > 1 ? `Reconnecting (attempt ${detail.attempt})…` : "Connecting…");
        break;
      case "live":
        this.view.setStatus("live", "Live");
        this.view.clearMessage("connection");
        break;
      case "waiting": {
        const seconds = Math.max(1, Math.round(detail.delayMs / 1000));
        this.state.connectionLost();
        if (detail.reason === "busy") {
          this.view.setStatus("waiting", "Server busy");
          this.view.showMessage("connection", "The server is busy or restarting", `It cannot take this session right now. Trying again in ${seconds} s — keep talking, the last few seconds are kept.`, this.retryActions());
        } else {
          this.view.setStatus("waiting", "Reconnecting");
          this.view.showMessage("connection", "Connection lost", `Reconnecting in ${seconds} s. Your timeline is kept; audio from the last few seconds is sent once the connection is back.`, this.retryActions());
        }
        break;
      }
      case "blocked":
        this.startRecordingFallback();
        break;
      case "failed":
        this.failStream(detail);
        break;
      default:
        break;
    }
  }

  failStream(detail) {
    const text =
      detail.code === "unauthorized"
        ? "This server needs an access token. Open the link you were given (it ends in ?token=…)."
        : detail.code === "limit"
          ? `The session reached a limit of the server: ${detail.message || "time limit"}. Press Start to begin a new session.`
          : `The server refused the stream: ${detail.message || detail.code}.`;
    this.view.showMessage("error", "Live analysis stopped", text, [{ label: "Start again", run: () => this.start() }]);
    this.teardown("Stopped");
  }

  startRecordingFallback() {
    const { frames, startSample } = this.stream.takeQueued();
    this.stream = null;
    this.recording = { frames, samples: frames.reduce((n, f) => n + f.length, 0), offsetMs: this.state.offsetMs + (startSample * 1000) / RATE_HZ };
    this.state.connectionLost();
    this.state.setMode("recording");
    this.view.setStatus("recording", "Recording (offline)");
    this.view.showMessage(
      "recording",
      "Live analysis is not available here",
      "The live connection to the server was blocked (often by a firewall or proxy). The page is recording in your browser instead: press Stop when you are done and the recording will be uploaded and analysed.",
      [{ label: "Stop and analyse", run: () => this.stop() }],
    );
  }

  async start() {
    if (this.state.mode !== "idle") return;
    this.view.clearMessage();
    this.view.setBusy(true);
    this.view.setStatus("connecting", "Opening microphone…");
    this.early = [];
    this.lastDrawMs = 0;
    this.state.begin();
    let capture;
    try {
      capture = await startCapture({ onFrame: (pcm, level) => this.onFrame(pcm, level), onEnded: () => this.micEnded(), targetRateHz: RATE_HZ, frameMs: FRAME_MS, deviceId: this.els.mic.value });
    } catch (error) {
      this.state.end();
      if (!(error instanceof MicrophoneError)) throw error;
      this.view.setBusy(false);
      this.view.setStatus("idle", "Not connected");
      this.view.showMicError(error);
      return;
    }
    this.capture = capture;
    this.els.deviceLabel.textContent = capture.deviceLabel || "(unnamed)";
    this.els.appliedSettings.textContent = describeSettings(capture.settings);
    this.els.contextRate.textContent = `${capture.contextRateHz} Hz → ${RATE_HZ} Hz, ${FRAME_MS} ms frames`;
    this.els.start.textContent = "Stop";
    this.els.start.dataset.running = "true";
    this.els.mic.disabled = true;
    this.view.setBusy(false);
    this.view.setUploadEnabled(false);
    this.state.setMode("live");
    this.stream = new LiveStream({
      url: this.view.streamUrl(),
      sampleRateHz: RATE_HZ,
      onState: (streamState, detail) => this.onStreamState(streamState, detail),
      onMessage: (msg, baseMs) => this.onStreamMessage(msg, baseMs),
      onProtocolError: (error) => this.view.showMessage("warning", "Unexpected message from the server", error.message),
    });
    for (const pcm of this.early) this.stream.send(pcm);
    this.early = [];
    this.stream.start();
    this.view.refreshMicrophones(); // labels become readable once permission is granted
  }

  async stop() {
    const mode = this.state.mode;
    if ((mode !== "live" && mode !== "recording") || this.stopping) return;
    this.stopping = true;
    if (mode === "live") this.state.setMode("stopping");
    this.view.setBusy(true);
    this.view.setStatus("stopping", mode === "live" ? "Finishing…" : "Uploading…");
    await this.capture.stop(); // the last partial frame still reaches onFrame
    this.state.setMode(mode === "live" ? "stopping" : "uploading");
    if (mode === "live" && this.stream) {
      await this.stream.finish();
      this.view.clearMessage("connection");
    } else if (mode === "recording") {
      await this.uploadRecording();
    }
    this.teardown("Stopped");
  }

  teardown(statusText) {
    if (this.capture) this.capture.stop();
    if (this.stream) this.stream.close();
    Object.assign(this, { capture: null, stream: null, recording: null, stopping: false });
    this.state.end();
    this.els.start.textContent = "Start listening";
    this.els.start.dataset.running = "false";
    this.els.start.disabled = !globalThis.isSecureContext;
    this.els.mic.disabled = false;
    this.view.setBusy(false);
    this.els.levelFill.style.width = "0%";
    this.els.level.setAttribute("aria-valuenow", "0");
    this.view.setStatus("idle", statusText);
    this.view.setUploadEnabled(true);
    this.view.persist();
  }

  async uploadRecording() {
    const { frames, offsetMs } = this.recording;
    const pcm = concatPcm16(frames);
    if (pcm.length === 0) {
      this.view.showMessage("error", "Nothing was recorded", "The recording is empty, so there is nothing to analyse.");
      return;
    }
    this.view.showMessage("recording", "Analysing the recording…", `Uploading ${(pcm.length / RATE_HZ).toFixed(1)} s of audio.`);
    const wav = new Blob([encodeWav(pcm, RATE_HZ)], { type: "audio/wav" });
    await this.view.classifyInto(wav, "recording.wav", offsetMs, "recording", (text) => this.view.showMessage("recording", "Recording analysed", text));
  }

  micEnded() {
    this.view.showMessage("error", "The microphone stopped", "It was unplugged, switched off or taken by another app. Check it and press Start again.", [{ label: "Start again", run: () => this.start() }]);
    if (this.state.mode === "live") this.stop();
    else this.teardown("Stopped");
  }
}
