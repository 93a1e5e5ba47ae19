// The page: wires the DOM to the page state (state.js), the live session (live.js), uploads,
// the chart and the sessions kept in this browser.
import { ArchiveError, describe, newRecord, SessionArchive } from "./archive.js";
import { listMicrophones, MicrophoneError } from "./capture.js";
import { ScoreChart } from "./chart.js";
import { interimMsFrom, parseModel } from "./protocol.js";
import { announcement } from "./quality.js";
import { SessionResults } from "./results.js";
import { PageState, RATE_HZ } from "./state.js";
import { LiveSession } from "./live.js";
import { classifyAudio, UploadError } from "./upload.js";
import { colourOf, renderBars, renderLanes, renderLegend, renderReadout, renderSessions, renderSummary, renderTable } from "./view.js";

const DEFAULT_INTERIM_MS = 1000;
const MIC_KEY = "emostream.microphone";

const $ = (id) => document.getElementById(id);
const els = {
  start: $("start"), status: $("conn-status"), model: $("model-info"), mic: $("mic"), demo: $("demo-notice"), demoText: $("demo-text"),
  speaking: $("speaking"), speakingText: $("speaking-text"), level: $("level"), levelFill: $("level-fill"),
  message: $("message"), messageTitle: $("message-title"), messageText: $("message-text"), messageActions: $("message-actions"),
  current: $("current"), currentSwatch: $("current-swatch"), currentLabel: $("current-label"), currentConf: $("current-conf"), currentMeta: $("current-meta"), currentUncertain: $("current-uncertain"),
  smooth: $("smooth"), bars: $("bars"), announcer: $("announcer"),
  chart: $("chart"), chartMissing: $("chart-missing"), timelineEmpty: $("timeline-empty"), legend: $("legend"),
  follow: $("follow"), span: $("span"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), panBack: $("pan-back"), panForward: $("pan-forward"), showAll: $("show-all"),
  table: $("segments-body"), summaryBar: $("summary-bar"), summaryList: $("summary-list"), summaryTotal: $("summary-total"),
  lanes: $("lanes"), partySummaries: $("party-summaries"), separate: $("separate"),
  exportJson: $("export-json"), exportCsv: $("export-csv"), exportVtt: $("export-vtt"), clear: $("clear"), sessions: $("sessions"),
  file: $("file"), drop: $("drop"), uploadStatus: $("upload-status"),
  deviceLabel: $("device-label"), appliedSettings: $("applied-settings"), contextRate: $("context-rate"), interim: $("interim"),
  captured: $("captured"), sessionId: $("session-id"), framesSent: $("frames-sent"),
};

const params = new URLSearchParams(location.search);
const token = params.get("token") || null;
const interimMs = interimMsFrom(params.get("interim_ms"), DEFAULT_INTERIM_MS);

const state = new PageState({ onChange: (what) => changed(what) });
const saved = { archive: null, record: newRecord(), writes: Promise.resolve() };
let chart = null;
let manifestVersion = null;
// The live session's controller (live.js); the page gives it what it draws with.
const live = new LiveSession({
  state,
  els,
  view: {
    showMessage: (...args) => showMessage(...args),
    clearMessage: (kind) => clearMessage(kind),
    setBusy: (busy) => setBusy(busy),
    setStatus: (status, text) => setStatus(status, text),
    setModel: (model) => setModel(model),
    checkModelVersion: (version) => {
      if (manifestVersion !== null && version !== manifestVersion) loadModel();
    },
    renderSpeech: () => renderSpeech(),
    announceLatest: () => announceLatest(),
    drawChart: () => drawChart(),
    persist: () => persist(),
    setUploadEnabled: (enabled) => setUploadEnabled(enabled),
    classifyInto: (...args) => classifyInto(...args),
    streamUrl: () => streamUrl(),
    refreshMicrophones: () => refreshMicrophones(),
    showMicError: (error) => showMicError(error),
  },
});

function streamUrl() {
  const url = new URL("v1/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("sample_rate", String(RATE_HZ));
  url.searchParams.set("encoding", "pcm_s16le");
  if (interimMs > 0) url.searchParams.set("interim_ms", String(interimMs));
  url.searchParams.set("quality", "1"); // uncertain results are marked (docs/quality.md)
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

function setStatus(status, text) {
  els.status.dataset.state = status;
  els.status.textContent = text;
}

function announce(text) {
  els.announcer.textContent = text;
}

function setModel(model) {
  state.results.setModel(model);
  els.model.textContent = `Model: ${model.name} · version ${model.version}`;
  renderLegend(els.legend, model.labels);
  if (chart) chart.setLabels(model.labels);
  render();
}

// ---- rendering -------------------------------------------------------------

const SPEECH_TEXT = { off: "Microphone off", listening: "Listening", speaking: "Speaking", analysing: "Analysing…" };

function changed(what) {
  if (what === "speech" || what === "mode") renderSpeech();
  if (what === "mode") listSessions();
  if (what === "results" || what === "partial" || what === "mode" || what === "ready") render();
  if (what === "results") persist();
}

function renderSpeech() {
  els.speaking.dataset.speaking = String(state.speech === "speaking");
  els.speaking.dataset.speech = state.speech;
  els.speakingText.textContent = SPEECH_TEXT[state.speech];
}

function currentView() {
  const results = state.results;
  if (state.partial && state.partial.label !== null) {
    const p = state.partial;
    return { entry: p, label: p.label, confidence: p.confidence, scores: p.scores, smoothed: false, provisional: true };
  }
  if (els.smooth.checked) {
    const smoothed = results.smoothed();
    const last = smoothed[smoothed.length - 1];
    return last ? { ...last, smoothed: true, provisional: false } : null;
  }
  const classified = results.classified();
  const last = classified[classified.length - 1];
  return last ? { entry: last, label: last.label, confidence: last.confidence, scores: last.scores, smoothed: false, provisional: false } : null;
}

function chartPoints() {
  if (els.smooth.checked) return state.results.smoothed().map((item) => ({ startMs: item.entry.startMs, endMs: item.entry.endMs, scores: item.scores }));
  return state.results.classified();
}

function drawChart() {
  if (chart) {
    els.chart.dataset.series = els.smooth.checked ? "smoothed" : "raw";
    chart.update({ points: chartPoints(), partial: state.partial && state.partial.scores ? state.partial : null, progress: state.progress(), nowMs: state.nowMs() });
  }
  drawLanes();
}

// The parties' lanes show what the chart shows (the whole session without a chart).
function drawLanes() {
  const view = chart ? chart.window : { startMs: 0, endMs: state.timelineEndMs() };
  renderLanes(els.lanes, state.results, view.startMs, view.endMs);
  alignLanes();
}

// Each lane's track spans exactly the chart's plot area, so a block sits under its points.
function alignLanes() {
  if (!chart || els.chart.hidden || els.lanes.hidden) return;
  const plot = chart.plotRect();
  const lanes = els.lanes.getBoundingClientRect();
  if (plot.width <= 0 || lanes.width <= 0) return;
  els.lanes.style.setProperty("--lane-name-width", `${Math.max(0, plot.left - lanes.left)}px`);
  els.lanes.style.setProperty("--lane-track-width", `${plot.width}px`);
}

function render() {
  const results = state.results;
  const view = currentView();
  renderReadout(els, view, results.labels);
  renderBars(els.bars, view ? view.scores : null, results.labels, Boolean(view && view.provisional));
  drawChart();
  renderTable(els.table, results);
  renderSummary(els, results);
  const empty = results.entries.length === 0;
  els.timelineEmpty.hidden = !empty;
  els.exportJson.disabled = empty;
  els.exportCsv.disabled = empty;
  els.exportVtt.disabled = empty;
  els.clear.disabled = empty || state.mode !== "idle";
}

// Finals only are announced: a screen reader must not chatter through every partial. An
// uncertain result is announced as "Possibly …" with its warnings, never as fact.
function announceLatest() {
  const view = currentView();
  if (view && !view.provisional) announce(announcement(view.label, view.confidence, view.smoothed ? null : view.entry, { smoothed: view.smoothed }));
  else {
    const last = state.results.classified().at(-1);
    if (last) announce(announcement(last.label, last.confidence, last));
  }
}

// ---- sessions kept in this browser -----------------------------------------------

function persist() {
  const { archive, record } = saved;
  if (!archive || state.results.entries.length === 0) return;
  const snapshot = state.results.snapshot();
  Object.assign(record, { ...snapshot, audioEndMs: Math.round(state.nowMs()), updatedAt: new Date().toISOString() });
  const copy = structuredClone(record);
  saved.writes = saved.writes
    .then(() => archive.save(copy))
    .then(() => {
      archive.setCurrent(copy.id);
      return listSessions();
    })
    .catch((error) => storageFailed(error));
}

function storageFailed(error) {
  if (!(error instanceof ArchiveError)) throw error;
  showMessage("warning", "Results are not being kept in this browser", `${error.message}. Export the session before you close the page.`);
}

async function listSessions() {
  if (!saved.archive) return;
  let rows;
  try {
    rows = (await saved.archive.list()).map(describe);
  } catch (error) {
    storageFailed(error);
    return;
  }
  renderSessions(els.sessions, rows, saved.archive.currentId(), { open: openSession, export: exportSession, remove: deleteSession }, state.mode !== "idle");
}

function restore(record) {
  saved.record = record;
  try {
    state.load(record);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    showMessage("warning", "A saved session could not be reopened", error.message);
    saved.record = newRecord();
    state.load({ model: state.results.model });
  }
  if (state.results.model) setModel(state.results.model);
}

async function openSession(id) {
  if (state.mode !== "idle") return;
  const record = await saved.archive.get(id);
  if (!record) return;
  await saved.writes;
  restore(record);
  saved.archive.setCurrent(id);
  if (chart) chart.showAll();
  await listSessions();
  announce("Session reopened");
}

async function exportSession(id) {
  const record = await saved.archive.get(id);
  if (!record) return;
  const results = new SessionResults();
  if (record.model) results.setModel(record.model);
  for (const entry of record.entries) results.restore(entry);
  download(JSON.stringify(results.toJSON(), null, 2), "application/json", "json", record.createdAt);
}

async function deleteSession(id) {
  await saved.writes;
  const shown = saved.record.id === id;
  if (shown && state.mode !== "idle") return;
  await saved.archive.delete(id);
  if (shown) newSession();
  await listSessions();
  announce("Session deleted");
}

function newSession() {
  saved.record = newRecord();
  if (saved.archive) saved.archive.setCurrent(null);
  state.load({ model: state.results.model });
  listSessions();
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
  const actions = error.kind === "insecure" || error.kind === "unsupported" ? [] : [{ label: "Try again", run: () => live.start() }];
  showMessage("error", title, text || error.message, actions);
}

async function refreshMicrophones() {
  let mics;
  try {
    mics = await listMicrophones();
  } catch (error) {
    console.warn("microphones cannot be listed:", error.message);
    return;
  }
  const chosen = els.mic.value || localStorage.getItem(MIC_KEY) || "";
  const options = [new Option("Default microphone", "")];
  mics.forEach((mic, i) => options.push(new Option(mic.label || `Microphone ${i + 1}`, mic.deviceId)));
  els.mic.replaceChildren(...options);
  els.mic.value = mics.some((mic) => mic.deviceId === chosen) ? chosen : "";
}

// ---- uploads ---------------------------------------------------------------

function setUploadEnabled(enabled) {
  els.file.disabled = !enabled;
  els.drop.dataset.disabled = String(!enabled);
}

async function classifyInto(blob, name, offsetMs, source, done) {
  try {
    const url = new URL(apiUrl("v1/classify"));
    url.searchParams.set("quality", "1");
    if (source === "upload" && els.separate.checked) url.searchParams.set("channels", "separate");
    const reply = await classifyAudio(blob, name, { url: url.toString(), token });
    if (!state.results.model) setModel(reply.model);
    state.uploaded(reply.segments, offsetMs, reply.durationMs, source, name);
    announceLatest();
    const classified = reply.segments.filter((s) => s.label !== null).length;
    done(`${name}: ${(reply.durationMs / 1000).toFixed(1)} s, ${reply.segments.length} segments (${classified} classified).`);
  } catch (error) {
    if (!(error instanceof UploadError)) throw error;
    showMessage("error", `Could not analyse ${name}`, error.message);
  }
}

async function uploadFile(file) {
  if (state.mode !== "idle") return;
  state.setMode("uploading");
  setUploadEnabled(false);
  els.start.disabled = true;
  els.uploadStatus.textContent = `Analysing ${file.name}…`;
  await classifyInto(file, file.name, state.timelineEndMs(), "upload", (text) => (els.uploadStatus.textContent = text));
  if (els.uploadStatus.textContent.startsWith("Analysing")) els.uploadStatus.textContent = "";
  live.teardown(els.status.textContent);
}

// ---- export ----------------------------------------------------------------

function download(text, type, extension, at = new Date().toISOString()) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `emostream-${at.replaceAll(":", "-").slice(0, 19)}.${extension}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- wiring ----------------------------------------------------------------

async function loadModel() {
  try {
    const response = await fetch(apiUrl("v1/model"), { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.ok) {
      const manifest = await response.json();
      const model = parseModel(manifest);
      manifestVersion = model.version;
      showDemoNotice(manifest);
      setModel(model);
    } else if (response.status === 401) showMessage("error", "Access token needed", "This server needs an access token. Open the link you were given (it ends in ?token=…).");
  } catch (error) {
    els.model.textContent = "Model: not reachable";
    console.warn("model info unavailable:", error.message);
  }
}

// The manifest's "demo" field (docs/model-format.md) marks a model whose labels mean little.
function showDemoNotice(manifest) {
  const demo = manifest.demo === true;
  els.demo.hidden = !demo;
  if (demo) els.demoText.textContent = `The model on this server (${manifest.name}) is a demo, trained on synthetic speech only.`;
}

async function loadChart() {
  try {
    chart = await ScoreChart.load(els.chart, { labels: state.results.labels, colourOf: (label) => colourOf(label, state.results.labels), onUserMove: (follow) => ((els.follow.checked = follow), drawLanes()) });
    new ResizeObserver(alignLanes).observe(els.chart);
  } catch (error) {
    els.chartMissing.hidden = false;
    els.chart.hidden = true;
    console.warn("chart library unavailable:", error.message);
    return;
  }
  drawChart();
}

function typingIn(target) {
  return target instanceof Element && Boolean(target.closest("input, select, textarea, button, a, summary, [contenteditable=''], [contenteditable='true']"));
}

function wire() {
  els.start.addEventListener("click", () => (state.mode === "idle" ? live.start() : live.stop()));
  // Space starts and stops, unless a control that uses Space itself has the focus.
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || event.repeat || event.ctrlKey || event.altKey || event.metaKey || typingIn(event.target)) return;
    if (els.start.disabled || els.start.getAttribute("aria-disabled") === "true") return;
    event.preventDefault();
    els.start.click();
  });
  window.addEventListener("beforeunload", (event) => {
    if (!state.capturing) return;
    event.preventDefault();
    event.returnValue = ""; // older browsers need it set to show the "leave page?" prompt
  });
  // A link to a folded section (the demo notice's "How to load a real model") unfolds it.
  const unfold = () => {
    const target = location.hash.length > 1 ? document.getElementById(location.hash.slice(1)) : null;
    if (target instanceof HTMLDetailsElement) target.open = true;
  };
  window.addEventListener("hashchange", unfold);
  unfold();
  els.mic.addEventListener("change", () => localStorage.setItem(MIC_KEY, els.mic.value));
  if (navigator.mediaDevices) navigator.mediaDevices.addEventListener("devicechange", () => refreshMicrophones());
  els.smooth.addEventListener("change", () => render());
  els.follow.addEventListener("change", () => chart && (chart.setFollow(els.follow.checked), drawLanes()));
  els.span.addEventListener("change", () => {
    els.follow.checked = true;
    if (chart) chart.setSpan(Number(els.span.value));
    drawLanes();
  });
  els.zoomIn.addEventListener("click", () => chart && chart.move({ factor: 0.5 }));
  els.zoomOut.addEventListener("click", () => chart && chart.move({ factor: 2 }));
  els.panBack.addEventListener("click", () => chart && chart.move({ shiftMs: -(chart.window.endMs - chart.window.startMs) / 2 }));
  els.panForward.addEventListener("click", () => chart && chart.move({ shiftMs: (chart.window.endMs - chart.window.startMs) / 2 }));
  els.showAll.addEventListener("click", () => chart && chart.showAll());
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => chart && (chart.build(), drawChart()));
  els.exportJson.addEventListener("click", () => download(JSON.stringify(state.results.toJSON(), null, 2), "application/json", "json"));
  els.exportCsv.addEventListener("click", () => download(state.results.toCSV(), "text/csv", "csv"));
  els.exportVtt.addEventListener("click", () => download(state.results.toVTT(), "text/vtt", "vtt"));
  els.clear.addEventListener("click", () => {
    newSession();
    announce("New session started; the previous one is kept below");
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

async function openArchive() {
  try {
    saved.archive = await SessionArchive.open();
  } catch (error) {
    if (!(error instanceof ArchiveError)) throw error;
    els.sessions.replaceChildren();
    showMessage("warning", "Results are not being kept in this browser", `${error.message}. Export the session before you close the page.`);
    return;
  }
  const id = saved.archive.currentId();
  const record = id ? await saved.archive.get(id).catch(() => null) : null;
  if (record) restore(record);
  await listSessions();
}

async function init() {
  wire();
  live.teardown("Not connected");
  renderSpeech();
  if (!globalThis.isSecureContext) showMicError(new MicrophoneError("insecure", ""));
  await Promise.all([loadChart(), openArchive()]);
  await loadModel();
  refreshMicrophones();
  document.body.dataset.ready = "true";
}

init();
