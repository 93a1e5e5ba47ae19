// Rendering: readout, score bars, segment table, summary, saved sessions. No state of its own.
import { laneLayout, partyName } from "./parties.js";
import { isUncertain, leadHeldMs, uncertaintyReason } from "./quality.js";

const COLOURS = { neutral: "#4b5563", happy: "#b45309", sad: "#1d4ed8", angry: "#b91c1c", fearful: "#6d28d9", disgust: "#047857", calm: "#0e7490", surprised: "#be185d" };
const SPARE = ["#0f766e", "#9d174d", "#4338ca", "#a16207", "#15803d", "#7e22ce", "#c2410c", "#334155"];

export function colourOf(label, labels = []) {
  if (label in COLOURS) return COLOURS[label];
  const index = Math.max(0, labels.indexOf(label));
  return SPARE[index % SPARE.length];
}

export function titleCase(label) {
  return label ? label.charAt(0).toUpperCase() + label.slice(1) : "";
}

export function percent(value) {
  return `${Math.round(value * 100)}%`;
}

export function clock(ms) {
  const totalS = ms / 1000;
  const minutes = Math.floor(totalS / 60);
  const seconds = (totalS - minutes * 60).toFixed(1).padStart(4, "0");
  return `${minutes}:${seconds}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function swatch(label, labels) {
  return el("span", { class: "swatch", "aria-hidden": "true", style: { background: colourOf(label, labels) } });
}

// The "uncertain" badge: its reason is its accessible name and shows on hover and focus.
function markUncertain(badge, entry) {
  const reason = uncertaintyReason(entry);
  badge.hidden = !reason;
  badge.dataset.reason = reason;
  badge.title = reason;
  if (reason) badge.setAttribute("aria-label", reason);
  else badge.removeAttribute("aria-label");
}

export function renderReadout(els, view, labels) {
  els.current.dataset.provisional = String(Boolean(view && view.provisional));
  // A smoothed readout is not one segment's: uncertain segments are down-weighted in it.
  const uncertain = Boolean(view && !view.smoothed && isUncertain(view.entry));
  els.current.dataset.uncertain = String(uncertain);
  if (els.currentUncertain) markUncertain(els.currentUncertain, uncertain ? view.entry : null);
  if (!view) {
    els.currentLabel.textContent = "—";
    els.currentConf.textContent = "";
    els.current.dataset.label = "";
    els.currentSwatch.style.background = "";
    return;
  }
  els.current.dataset.label = view.label;
  els.currentSwatch.style.background = colourOf(view.label, labels);
  els.currentLabel.textContent = titleCase(view.label);
  els.currentConf.textContent = percent(view.confidence);
  const entry = view.entry;
  const latency = entry.latencyMs === null ? "" : ` · latency ${Math.round(entry.latencyMs)} ms`;
  const held = `${titleCase(view.label)} leading for ${(leadHeldMs(entry) / 1000).toFixed(1)} s`;
  const kind = view.provisional
    ? `Provisional: segment in progress ${clock(entry.startMs)}–${clock(entry.endMs)}, not final yet · ${held}`
    : view.smoothed
      ? "Smoothed over recent segments (uncertain ones count a quarter)"
      : `Segment ${clock(entry.startMs)}–${clock(entry.endMs)}`;
  els.currentMeta.textContent = `${kind}${latency}`;
}

export function renderBars(list, scores, labels, provisional = false) {
  list.dataset.provisional = String(provisional);
  list.replaceChildren(
    ...labels.map((label) => {
      const value = scores && label in scores ? scores[label] : 0;
      const fill = el("span", { class: "bar-fill", style: { width: `${(value * 100).toFixed(1)}%`, background: colourOf(label, labels) } });
      return el(
        "li",
        { class: "bar", dataset: { label } },
        el("span", { class: "bar-label", text: titleCase(label) }),
        el("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        el("span", { class: "bar-value", text: scores ? percent(value) : "–" }),
      );
    }),
  );
}

export function renderLegend(container, labels) {
  container.replaceChildren(...labels.map((label) => el("li", {}, swatch(label, labels), el("span", { text: titleCase(label) }))));
}

export function renderTable(body, results) {
  const labels = results.labels;
  body.replaceChildren(
    ...results.entries.map((entry) => {
      const emotion = entry.label === null ? el("td", { "data-col": "Emotion", text: `not classified (${entry.skipped.replace("_", " ")})` }) : el("td", { "data-col": "Emotion" }, swatch(entry.label, labels), el("span", { text: titleCase(entry.label) }));
      if (isUncertain(entry)) {
        const badge = el("span", { class: "uncertain-badge", tabindex: "0", role: "note", text: "uncertain" });
        markUncertain(badge, entry);
        emotion.append(" ", badge);
      }
      return el(
        "tr",
        { dataset: { index: String(entry.index), source: entry.source, label: entry.label ?? "", skipped: entry.skipped ?? "", uncertain: String(isUncertain(entry)) } },
        el("td", { "data-col": "Time", text: `${clock(entry.startMs)}–${clock(entry.endMs)}` }),
        emotion,
        el("td", { class: "num", "data-col": "Confidence", text: entry.confidence === null ? "–" : percent(entry.confidence) }),
        el("td", { class: "num", "data-col": "Latency", text: entry.latencyMs === null ? "–" : `${Math.round(entry.latencyMs)} ms` }),
        el("td", { "data-col": "Source", text: sourceText(entry) }),
      );
    }),
  );
}

function sourceText(entry) {
  const source = entry.source === "live" ? "live" : entry.origin || entry.source;
  return entry.channel === undefined || entry.channel === null ? source : `${source} · ${partyName(entry.channel)}`;
}

function stackParts(byLabel, labels) {
  return Object.entries(byLabel)
    .filter(([, item]) => item.ms > 0)
    .map(([label, item]) => el("span", { class: "stack-part", title: `${label} ${percent(item.share)}`, style: { width: `${item.share * 100}%`, background: colourOf(label, labels) } }));
}

function summaryItems(byLabel, labels) {
  return Object.entries(byLabel).map(([label, item]) =>
    el(
      "li",
      { dataset: { label, share: item.share.toFixed(4) } },
      swatch(label, labels),
      el("span", { class: "summary-label", text: titleCase(label) }),
      el("span", { class: "summary-value", text: `${percent(item.share)} · ${(item.ms / 1000).toFixed(1)} s` }),
    ),
  );
}

export function renderSummary(els, results) {
  const labels = results.labels;
  const { totalMs, uncertainMs, byLabel } = results.summary();
  els.summaryBar.replaceChildren(...stackParts(byLabel, labels));
  els.summaryList.replaceChildren(...summaryItems(byLabel, labels));
  els.summaryTotal.textContent = totalMs > 0 ? `${(totalMs / 1000).toFixed(1)} s of speech classified in ${results.classified().length} segments${uncertainNote(uncertainMs)}` : "Nothing classified yet.";
  renderPartySummaries(els.partySummaries, results);
}

// The summary's word on uncertain segments (quality=1): how much, and how they count.
function uncertainNote(uncertainMs) {
  return uncertainMs > 0 ? `; ${(uncertainMs / 1000).toFixed(1)} s of it uncertain, counted at a quarter of its time` : "";
}

// With a recording analysed per channel: the summary of each party on its own.
export function renderPartySummaries(container, results) {
  const labels = results.labels;
  const parties = results.parties();
  container.hidden = parties.length === 0;
  container.replaceChildren(
    ...parties.map((channel) => {
      const { totalMs, uncertainMs, byLabel } = results.summary(channel);
      const name = partyName(channel);
      const total = totalMs > 0 ? `${(totalMs / 1000).toFixed(1)} s classified in ${results.classified(channel).length} segments${uncertainNote(uncertainMs)}` : "nothing classified";
      return el(
        "section",
        { class: "party-summary", dataset: { channel: String(channel) }, "aria-label": `${name} summary` },
        el("h3", { text: name }),
        el("p", { class: "small", text: total }),
        el("div", { class: "stack", "aria-hidden": "true" }, ...stackParts(byLabel, labels)),
        el("ul", { class: "summary-list", "aria-label": `Share of ${name}'s time per emotion` }, ...summaryItems(byLabel, labels)),
      );
    }),
  );
}

// With a recording analysed per channel: a lane per party over [fromMs, toMs], each
// segment a block in its label's colour.
export function renderLanes(container, results, fromMs, toMs) {
  const labels = results.labels;
  const parties = results.parties();
  container.hidden = parties.length === 0;
  container.replaceChildren(
    ...laneLayout(results.entries, parties, fromMs, toMs).map((lane) =>
      el(
        "div",
        { class: "lane", dataset: { channel: String(lane.channel), blocks: String(lane.blocks.length) } },
        el("span", { class: "lane-name", text: lane.name }),
        el(
          "div",
          { class: "lane-track" },
          ...lane.blocks.map((block) =>
            el("span", {
              class: "lane-block",
              title: `${clock(block.startMs)}–${clock(block.endMs)} ${block.label ?? `not classified (${block.skipped})`}${block.uncertain ? ` · ${block.reason}` : ""}`,
              dataset: { index: String(block.index), label: block.label ?? "", skipped: block.skipped ?? "", uncertain: String(block.uncertain) },
              style: { left: `${block.leftPct.toFixed(3)}%`, width: `${block.widthPct.toFixed(3)}%`, background: block.label ? colourOf(block.label, labels) : "" },
            }),
          ),
        ),
      ),
    ),
  );
}

function duration(ms) {
  const totalS = Math.round(ms / 1000);
  const minutes = Math.floor(totalS / 60);
  return minutes > 0 ? `${minutes} min ${totalS % 60} s` : `${totalS} s`;
}

// rows: describe()d records; actions: {open(id), export(id), remove(id)}; currentId: shown now.
// busy: while capturing, sessions cannot be switched or the shown one deleted.
export function renderSessions(list, rows, currentId, actions, busy = false) {
  if (rows.length === 0) {
    list.replaceChildren(el("li", { class: "small", text: "No saved sessions yet." }));
    return;
  }
  list.replaceChildren(
    ...rows.map((row) => {
      const when = new Date(row.createdAt).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      const name = `${when}, ${duration(row.lengthMs)}`;
      const current = row.id === currentId;
      const button = (text, run, label, locked) => {
        const b = el("button", { type: "button", class: "quiet", "aria-label": `${label} ${name}`, text });
        b.disabled = locked;
        b.addEventListener("click", () => run(row.id));
        return b;
      };
      return el(
        "li",
        { dataset: { id: row.id, current: String(current), segments: String(row.segments), lengthMs: String(row.lengthMs) } },
        el("span", { class: "session-name" }, el("time", { datetime: row.createdAt, text: when }), el("span", { class: "small", text: ` · ${duration(row.lengthMs)} · ${row.classified} classified${current ? " · shown" : ""}` })),
        el("span", { class: "session-actions" }, button("Open", actions.open, "Open", busy), button("Export", actions.export, "Export", false), button("Delete", actions.remove, "Delete", busy && current)),
      );
    }),
  );
}
