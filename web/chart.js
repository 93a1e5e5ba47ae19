// The scores-over-time chart: every class's score per segment on the audio-time axis, drawn
// by uPlot (installed from npm, served by this server at lib/uplot/), following the live
// edge until the person zooms or pans. The data side is plain functions, tested under Node.

export const LIBRARY_URL = new URL("lib/uplot/uPlot.esm.js", import.meta.url);
export const FOLLOW_SPAN_MS = 60000;
const MIN_SPAN_MS = 2000;

// Columns for uPlot: x (seconds, each segment's middle) and one score column per label.
export function chartColumns(points, labels) {
  const xs = points.map((p) => (p.startMs + p.endMs) / 2000);
  return [xs, ...labels.map((label) => points.map((p) => (p.scores && label in p.scores ? p.scores[label] : null)))];
}

// The visible window [startMs, endMs] that follows the live edge: the last spanMs of audio.
export function followWindow(nowMs, spanMs = FOLLOW_SPAN_MS) {
  const endMs = Math.max(nowMs, spanMs);
  return { startMs: endMs - spanMs, endMs };
}

// Zooms a window by factor around centreMs and pans it by shiftMs, kept inside [0, totalMs].
export function moveWindow({ startMs, endMs }, { factor = 1, centreMs = (startMs + endMs) / 2, shiftMs = 0, totalMs }) {
  const span = Math.min(Math.max((endMs - startMs) * factor, MIN_SPAN_MS), Math.max(totalMs, MIN_SPAN_MS));
  const ratio = endMs > startMs ? (centreMs - startMs) / (endMs - startMs) : 0.5;
  let start = centreMs - span * ratio + shiftMs;
  start = Math.min(Math.max(start, 0), Math.max(totalMs, span) - span);
  return { startMs: start, endMs: start + span };
}

function css(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

function clockLabel(seconds) {
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  return `${m}:${String(s).padStart(2, "0")}`;
}

export class ScoreChart {
  // uPlot: the library's constructor; container: an empty element; colourOf(label) -> CSS colour.
  constructor(uPlot, container, { labels, colourOf, onUserMove = () => {} }) {
    this.uPlot = uPlot;
    this.container = container;
    this.labels = labels;
    this.colourOf = colourOf;
    this.onUserMove = onUserMove;
    this.follow = true;
    this.spanMs = FOLLOW_SPAN_MS;
    this.window = followWindow(0);
    this.points = [];
    this.partial = null;
    this.progress = null;
    this.totalMs = 0;
    this.plot = null;
    this.build();
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(container);
    // Ctrl/⌘ + wheel zooms around the pointer, Shift + wheel pans; a plain wheel scrolls the page.
    container.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
  }

  wheel(event) {
    const span = this.window.endMs - this.window.startMs;
    if (event.shiftKey) {
      event.preventDefault();
      this.move({ shiftMs: Math.sign(event.deltaY || event.deltaX) * span * 0.2 });
    } else if (event.ctrlKey || event.metaKey) {
      event.preventDefault();
      const rect = this.plot.over.getBoundingClientRect();
      const centreMs = this.plot.posToVal(event.clientX - rect.left, "x") * 1000;
      this.move({ factor: event.deltaY > 0 ? 1.25 : 0.8, centreMs });
    }
  }

  static async load(container, options) {
    const { default: uPlot } = await import(LIBRARY_URL.href);
    return new ScoreChart(uPlot, container, options);
  }

  build() {
    if (this.plot) this.plot.destroy();
    const ink = css("--muted", "#5b6472");
    const grid = css("--line", "#e3e6eb");
    const axis = { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts = {
      width: Math.max(200, this.container.clientWidth),
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      scales: { x: { time: false, auto: false, min: this.window.startMs / 1000, max: this.window.endMs / 1000 }, y: { auto: false, range: [0, 1] } },
      axes: [
        { ...axis, values: (u, ticks) => ticks.map(clockLabel) },
        { ...axis, size: 52, values: (u, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
      ],
      series: [{ label: "time" }, ...this.labels.map((label) => ({ label, stroke: this.colourOf(label), width: 2, points: { show: true, size: 5, fill: this.colourOf(label) } }))],
      hooks: {
        setSelect: [(u) => this.selected(u)],
        draw: [(u) => this.drawProvisional(u)],
      },
    };
    this.plot = new this.uPlot(opts, chartColumns(this.points, this.labels), this.container);
    this.publish();
  }

  fit() {
    const width = Math.max(200, this.container.clientWidth);
    if (this.plot && Math.abs(this.plot.width - width) > 1) this.plot.setSize({ width, height: 220 });
  }

  // Where the plot area (inside the axes) lies on the page, so that other timelines can line up.
  plotRect() {
    return this.plot.over.getBoundingClientRect();
  }

  // Dragging across the chart zooms to the dragged span and stops following the live edge.
  selected(u) {
    const { left, width } = u.select;
    if (width < 3) return;
    const startMs = u.posToVal(left, "x") * 1000;
    const endMs = u.posToVal(left + width, "x") * 1000;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    this.follow = false;
    this.window = moveWindow({ startMs, endMs }, { totalMs: this.totalMs });
    this.apply();
    this.onUserMove(this.follow);
  }

  setLabels(labels) {
    if (labels.join("\u0000") === this.labels.join("\u0000")) return;
    this.labels = labels;
    this.build();
  }

  // points: finals with scores; partial: the provisional one or null; progress: {startMs, endMs} or null.
  update({ points, partial, progress, nowMs }) {
    this.points = points;
    this.partial = partial;
    this.progress = progress;
    this.totalMs = Math.max(nowMs, points.length ? points[points.length - 1].endMs : 0);
    if (this.follow) this.window = followWindow(this.totalMs, this.spanMs);
    this.plot.setData(chartColumns(points, this.labels), false);
    this.apply();
  }

  apply() {
    this.plot.setScale("x", { min: this.window.startMs / 1000, max: this.window.endMs / 1000 });
    this.publish();
  }

  setFollow(follow) {
    this.follow = follow;
    if (follow) this.window = followWindow(this.totalMs, this.spanMs);
    this.apply();
  }

  // How much audio the live window shows.
  setSpan(spanMs) {
    this.spanMs = spanMs;
    this.setFollow(true);
  }

  showAll() {
    this.follow = false;
    this.window = { startMs: 0, endMs: Math.max(this.totalMs, MIN_SPAN_MS) };
    this.apply();
    this.onUserMove(this.follow);
  }

  move(change) {
    this.follow = false;
    this.window = moveWindow(this.window, { ...change, totalMs: this.totalMs });
    this.apply();
    this.onUserMove(this.follow);
  }

  // The segment in progress as a shaded band, and its provisional scores as hollow points.
  drawProvisional(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    if (this.progress) {
      const x0 = u.valToPos(this.progress.startMs / 1000, "x", true);
      const x1 = u.valToPos(this.progress.endMs / 1000, "x", true);
      ctx.fillStyle = css("--progress", "rgba(37, 99, 235, 0.12)");
      ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
    }
    if (this.partial) {
      const x = u.valToPos((this.partial.startMs + this.partial.endMs) / 2000, "x", true);
      ctx.lineWidth = 2 * devicePixelRatio;
      for (const label of this.labels) {
        if (!(label in this.partial.scores)) continue;
        const y = u.valToPos(this.partial.scores[label], "y", true);
        ctx.strokeStyle = this.colourOf(label);
        ctx.beginPath();
        ctx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    ctx.restore();
  }

  // What the chart shows, for people reading the DOM and for tests.
  publish() {
    const data = this.container.dataset;
    data.points = String(this.points.length);
    data.classes = String(this.labels.length);
    data.follow = String(this.follow);
    data.viewStartMs = String(Math.round(this.window.startMs));
    data.viewEndMs = String(Math.round(this.window.endMs));
    data.progressStartMs = this.progress ? String(Math.round(this.progress.startMs)) : "";
    data.progressEndMs = this.progress ? String(Math.round(this.progress.endMs)) : "";
    data.partial = this.partial ? String(this.partial.segment) : "";
  }
}
