// The page: wires microphone capture, the live stream, uploads and the views together.
import { MicrophoneError, startCapture } from "./capture.js";
import { parseModel } from "./protocol.js";
import { SessionResults } from "./results.js";
import { LiveStream } from "./stream.js";
import { classifyAudio, UploadError } from "./upload.js";
import { percent, renderBars, renderLegend, renderReadout, renderSummary, renderTable, renderTimeline, titleCase } from "./view.js";
import { concatPcm16, encodeWav } from "./wav.js";

const RATE_HZ = 16000;
const FRAME_MS = 40;
const MAX_RECORDING_MS = 600000;

const $ = (id) => document.getElementById(id);
const els = {
  start: $("start"), status: $("conn-status"), model: $("model-info"),
  speaking: $("speaking"), speakingText: $("speaking-text"), level: $("level"), levelFill: $("level-fill"),
  message: $("message"), messageTitle: $("message-title"), messageText: $("message-text"), messageActions: $("message-actions"),
  current: $("current"), currentSwatch: $("current-swatch"), currentLabel: $("current-label"), currentConf: $("current-conf"), currentMeta: $("current-meta"),
  smooth: $("smooth"), bars: $("bars"), announcer: $("announcer"),
  timelineRaw: $("timeline-raw"), timelineSmooth: $("timeline-smooth"), timelineSmoothRow: $("timeline-smooth-row"), timelineEmpty: $("timeline-empty"), axis: $("timeline-axis"), legend: $("legend"),
  table: $("segments-body"), summaryBar: $("summary-bar"), summaryList: $("summary-list"), summaryTotal: $("summary-total"),
  exportJson: $("export-json"), exportCsv: $("export-csv"), clear: $("clear"),
  file: $("file"), drop: $("drop"), uploadStatus: $("upload-status"),
  contextRate: $("context-rate"), captured: $("captured"), sessionId: $("session-id"), framesSent: $("frames-sent"),
};

const params = new URLSearchParams(location.search);
const token = params.get("token") || null;
const results = new SessionResults();

const app = { mode: "idle", stopping: false, capture: null, stream: null, recording: null, early: [], offsetMs: 0, audioEndMs: 0, capturedSamples: 0, frames: 0, lastRenderMs: 0 };

// Where the next session or upload goes on the timeline: after all audio so far.
function timelineEndMs() {
  return Math.max(results.endMs(), app.audioEndMs);
}

function streamUrl() {
  const url = new URL("v1/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("sample_rate", String(RATE_HZ));
  url.searchParams.set("encoding", "pcm_s16le");
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

function apiUrl(path) {
  return new URL(path, location.href).toString();
}

// ---- messages and status -------------------------------------------------

function showMessage(kind, title, text, actions = []) {
  els.message.dataset.kind = kind;
  els.messageTitle.textContent = title;
  els.messageText.textContent = text;
  els.messageActions.replaceChildren(
    ...actions.map(({ label, run }) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.addEventListener("click", run);
      return button;
    }),
  );
  els.message.hidden = false;
}

function clearMessage(kind) {
  if (kind === undefined || els.message.dataset.kind === kind) {
    els.message.hidden = true;
    els.message.dataset.kind = "";
  }
}

// While starting or stopping the button ignores presses but keeps keyboard focus.
function setBusy(busy) {
  els.start.setAttribute("aria-disabled", String(busy));
}

function setStatus(state, text) {
  els.status.dataset.state = state;
  els.status.textContent = text;
}

function setSpeaking(value) {
  els.speaking.dataset.speaking = String(value);
  els.speakingText.textContent = app.mode === "idle" ? "Microphone off" : value ? "Speaking" : "Listening";
}

function announce(text) {
  els.announcer.textContent = text;
}

function setModel(model) {
  results.setModel(model);
  els.model.textContent = `Model: ${model.name} · version ${model.version}`;
  renderLegend(els.legend, model.labels);
  render();
}

// ---- rendering -------------------------------------------------------------

function currentView() {
  if (els.smooth.checked) {
    const smoothed = results.smoothed();
    const last = smoothed[smoothed.length - 1];
    return last ? { ...last, smoothed: true } : null;
  }
  const classified = results.classified();
  const last = classified[classified.length - 1];
  return last ? { entry: last, label: last.label, confidence: last.confidence, scores: last.scores, smoothed: false } : null;
}

function nowMs() {
  return app.mode === "idle" ? 0 : app.offsetMs + (app.capturedSamples * 1000) / RATE_HZ;
}

function render() {
  const view = currentView();
  renderReadout(els, view, results.labels);
  renderBars(els.bars, view ? view.scores : null, results.labels);
  renderTimeline(els, results, els.smooth.checked, nowMs());
  renderTable(els.table, results);
  renderSummary(els, results);
  const empty = results.entries.length === 0;
  els.exportJson.disabled = empty;
  els.exportCsv.disabled = empty;
  els.clear.disabled = empty || app.mode !== "idle";
}

function addSegments(segments, offsetMs, source, origin) {
  for (const segment of segments) results.add(segment, offsetMs, source, origin);
  render();
  const view = currentView();
  if (view) announce(`${titleCase(view.label)}, ${percent(view.confidence)}${view.smoothed ? " (smoothed)" : ""}`);
}

// ---- live session ------------------------------------------------------------

function onFrame(pcm, level) {
  if (!["starting", "live", "stopping", "recording"].includes(app.mode)) return;
  app.capturedSamples += pcm.length;
  const capturedMs = Math.round((app.capturedSamples * 1000) / RATE_HZ);
  els.captured.dataset.ms = String(capturedMs);
  els.captured.textContent = `${(capturedMs / 1000).toFixed(1)} s`;
  const db = level.rms > 0 ? 20 * Math.log10(level.rms) : -100;
  const meter = Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
  els.levelFill.style.width = `${meter}%`;
  els.level.setAttribute("aria-valuenow", String(meter));
  if (app.mode === "starting") {
    app.early.push(pcm);
  } else if (app.mode === "live" || app.mode === "stopping") {
    if (app.stream) app.stream.send(pcm);
    app.frames += 1;
    els.framesSent.textContent = String(app.frames);
  } else if (app.mode === "recording") {
    app.recording.frames.push(pcm);
    app.recording.samples += pcm.length;
    if (app.recording.samples >= (MAX_RECORDING_MS * RATE_HZ) / 1000) stop();
  }
  if (nowMs() - app.lastRenderMs >= 500) {
    app.lastRenderMs = nowMs();
    renderTimeline(els, results, els.smooth.checked, nowMs());
  }
}

function onStreamMessage(msg, baseMs) {
  switch (msg.type) {
    case "ready":
      setModel(msg.model);
      els.sessionId.textContent = msg.session;
      break;
    case "speech_start":
      setSpeaking(true);
      break;
    case "speech_end":
      setSpeaking(false);
      break;
    case "result":
    case "skipped":
      addSegments([msg], app.offsetMs + baseMs, "live", "");
      break;
    default:
      break;
  }
}

const retryActions = () => [
  { label: "Retry now", run: () => app.stream && app.stream.retryNow() },
  { label: "Stop", run: () => stop() },
];

function onStreamState(state, detail) {
  switch (state) {
    case "connecting":
      setStatus("connecting", detail.attempt > 1 ? `Reconnecting (attempt ${detail.attempt})…` : "Connecting…");
      break;
    case "live":
      setStatus("live", "Live");
      clearMessage("connection");
      break;
    case "waiting": {
      const seconds = Math.max(1, Math.round(detail.delayMs / 1000));
      setSpeaking(false);
      if (detail.reason === "busy") {
        setStatus("waiting", "Server busy");
        showMessage("connection", "The server is busy or restarting", `It cannot take this session right now. Trying again in ${seconds} s — keep talking, the last few seconds are kept.`, retryActions());
      } else {
        setStatus("waiting", "Reconnecting");
        showMessage("connection", "Connection lost", `Reconnecting in ${seconds} s. Your timeline is kept; audio from the last few seconds is sent once the connection is back.`, retryActions());
      }
      break;
    }
    case "blocked":
      startRecordingFallback();
      break;
    case "failed":
      failStream(detail);
      break;
    default:
      break;
  }
}

function failStream(detail) {
  const text =
    detail.code === "unauthorized"
      ? "This server needs an access token. Open the link you were given (it ends in ?token=…)."
      : detail.code === "limit"
        ? `The session reached a limit of the server: ${detail.message || "time limit"}. Press Start to begin a new session.`
        : `The server refused the stream: ${detail.message || detail.code}.`;
  showMessage("error", "Live analysis stopped", text, [{ label: "Start again", run: () => start() }]);
  teardown("Stopped");
}

function startRecordingFallback() {
  const { frames, startSample } = app.stream.takeQueued();
  app.stream = null;
  app.mode = "recording";
  app.recording = { frames, samples: frames.reduce((n, f) => n + f.length, 0), offsetMs: app.offsetMs + (startSample * 1000) / RATE_HZ };
  setStatus("recording", "Recording (offline)");
  setSpeaking(false);
  showMessage(
    "recording",
    "Live analysis is not available here",
    "The live connection to the server was blocked (often by a firewall or proxy). The page is recording in your browser instead: press Stop when you are done and the recording will be uploaded and analysed.",
    [{ label: "Stop and analyse", run: () => stop() }],
  );
}

async function start() {
  if (app.mode !== "idle") return;
  clearMessage();
  setBusy(true);
  setStatus("connecting", "Opening microphone…");
  Object.assign(app, { mode: "starting", early: [], offsetMs: timelineEndMs(), capturedSamples: 0, frames: 0, lastRenderMs: 0 });
  let capture;
  try {
    capture = await startCapture({ onFrame, onEnded: micEnded, targetRateHz: RATE_HZ, frameMs: FRAME_MS });
  } catch (error) {
    app.mode = "idle";
    if (!(error instanceof MicrophoneError)) throw error;
    setBusy(false);
    setStatus("idle", "Not connected");
    showMicError(error);
    return;
  }
  Object.assign(app, { mode: "live", capture });
  els.contextRate.textContent = `${capture.contextRateHz} Hz → ${RATE_HZ} Hz, ${FRAME_MS} ms frames`;
  els.start.textContent = "Stop";
  els.start.dataset.running = "true";
  setBusy(false);
  setUploadEnabled(false);
  setSpeaking(false);
  app.stream = new LiveStream({
    url: streamUrl(),
    sampleRateHz: RATE_HZ,
    onState: onStreamState,
    onMessage: onStreamMessage,
    onProtocolError: (error) => showMessage("warning", "Unexpected message from the server", error.message),
  });
  for (const pcm of app.early) app.stream.send(pcm);
  app.early = [];
  app.stream.start();
  render();
}

async function stop() {
  const mode = app.mode;
  if ((mode !== "live" && mode !== "recording") || app.stopping) return;
  app.stopping = true;
  if (mode === "live") app.mode = "stopping";
  setBusy(true);
  setStatus("stopping", mode === "live" ? "Finishing…" : "Uploading…");
  await app.capture.stop(); // the last partial frame still reaches onFrame
  app.mode = mode === "live" ? "stopping" : "uploading";
  if (mode === "live" && app.stream) {
    await app.stream.finish();
    clearMessage("connection");
  } else if (mode === "recording") {
    await uploadRecording();
  }
  teardown("Stopped");
}

function teardown(statusText) {
  app.audioEndMs = Math.max(app.audioEndMs, nowMs());
  if (app.capture) app.capture.stop();
  if (app.stream) app.stream.close();
  Object.assign(app, { mode: "idle", stopping: false, capture: null, stream: null, recording: null });
  els.start.textContent = "Start listening";
  els.start.dataset.running = "false";
  els.start.disabled = !globalThis.isSecureContext;
  setBusy(false);
  els.levelFill.style.width = "0%";
  els.level.setAttribute("aria-valuenow", "0");
  setSpeaking(false);
  setStatus("idle", statusText);
  setUploadEnabled(true);
  render();
}

async function uploadRecording() {
  const { frames, offsetMs } = app.recording;
  const pcm = concatPcm16(frames);
  if (pcm.length === 0) {
    showMessage("error", "Nothing was recorded", "The recording is empty, so there is nothing to analyse.");
    return;
  }
  showMessage("recording", "Analysing the recording…", `Uploading ${(pcm.length / RATE_HZ).toFixed(1)} s of audio.`);
  const wav = new Blob([encodeWav(pcm, RATE_HZ)], { type: "audio/wav" });
  await classifyInto(wav, "recording.wav", offsetMs, "recording", (text) => showMessage("recording", "Recording analysed", text));
}

function micEnded() {
  showMessage("error", "The microphone stopped", "It was unplugged, switched off or taken by another app. Check it and press Start again.", [{ label: "Start again", run: () => start() }]);
  if (app.mode === "live") stop();
  else teardown("Stopped");
}

const MIC_MESSAGES = {
  denied: ["Microphone access is blocked", "Allow this site to use the microphone (the camera/microphone icon in the address bar or the site settings), then press Try again. You can also analyse a recorded file below."],
  "no-device": ["No microphone found", "Connect a microphone (or a headset) and press Try again. You can also analyse a recorded file below."],
  "in-use": ["The microphone is busy", "Another app may be using it. Close that app and press Try again."],
  insecure: ["This page needs a secure connection", "Browsers only allow the microphone on pages opened over HTTPS or on this computer (localhost). Open the https:// address of this server. You can still analyse a recorded file below."],
  unsupported: ["This browser cannot record audio", "Use a current version of Chrome, Edge, Firefox or Safari. You can still analyse a recorded file below."],
  failed: ["The microphone could not be started", ""],
};

function showMicError(error) {
  const [title, text] = MIC_MESSAGES[error.kind];
  const actions = error.kind === "insecure" || error.kind === "unsupported" ? [] : [{ label: "Try again", run: () => start() }];
  showMessage("error", title, text || error.message, actions);
}

// ---- uploads ---------------------------------------------------------------

function setUploadEnabled(enabled) {
  els.file.disabled = !enabled;
  els.drop.dataset.disabled = String(!enabled);
}

async function classifyInto(blob, name, offsetMs, source, done) {
  try {
    const reply = await classifyAudio(blob, name, { url: apiUrl("v1/classify"), token });
    if (!results.model) setModel(reply.model);
    app.audioEndMs = Math.max(app.audioEndMs, offsetMs + reply.durationMs);
    addSegments(reply.segments, offsetMs, source, name);
    const classified = reply.segments.filter((s) => s.label !== null).length;
    done(`${name}: ${(reply.durationMs / 1000).toFixed(1)} s, ${reply.segments.length} segments (${classified} classified).`);
  } catch (error) {
    if (!(error instanceof UploadError)) throw error;
    showMessage("error", `Could not analyse ${name}`, error.message);
  }
}

async function uploadFile(file) {
  if (app.mode !== "idle") return;
  app.mode = "uploading";
  setUploadEnabled(false);
  els.start.disabled = true;
  els.uploadStatus.textContent = `Analysing ${file.name}…`;
  await classifyInto(file, file.name, timelineEndMs(), "upload", (text) => (els.uploadStatus.textContent = text));
  if (els.uploadStatus.textContent.startsWith("Analysing")) els.uploadStatus.textContent = "";
  app.mode = "idle";
  teardown(els.status.textContent);
}

// ---- export ----------------------------------------------------------------

function download(text, type, extension) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `emostream-${new Date().toISOString().replaceAll(":", "-").slice(0, 19)}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- wiring ----------------------------------------------------------------

async function loadModel() {
  try {
    const response = await fetch(apiUrl("v1/model"), { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.ok) setModel(parseModel(await response.json()));
    else if (response.status === 401) showMessage("error", "Access token needed", "This server needs an access token. Open the link you were given (it ends in ?token=…).");
  } catch (error) {
    els.model.textContent = "Model: not reachable";
    console.warn("model info unavailable:", error.message);
  }
}

function wire() {
  els.start.addEventListener("click", () => (app.mode === "idle" ? start() : stop()));
  els.smooth.addEventListener("change", () => render());
  els.exportJson.addEventListener("click", () => download(JSON.stringify(results.toJSON(), null, 2), "application/json", "json"));
  els.exportCsv.addEventListener("click", () => download(results.toCSV(), "text/csv", "csv"));
  els.clear.addEventListener("click", () => {
    results.clear();
    app.audioEndMs = 0;
    render();
    announce("Timeline cleared");
  });
  els.file.addEventListener("change", () => {
    const [file] = els.file.files;
    if (file) uploadFile(file);
    els.file.value = "";
  });
  els.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    els.drop.dataset.over = "true";
  });
  els.drop.addEventListener("dragleave", () => (els.drop.dataset.over = "false"));
  els.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    els.drop.dataset.over = "false";
    const [file] = event.dataTransfer.files;
    if (file && els.file.disabled === false) uploadFile(file);
  });
}

function init() {
  wire();
  teardown("Not connected");
  if (!globalThis.isSecureContext) showMicError(new MicrophoneError("insecure", ""));
  loadModel();
}

init();
