"""Prometheus metrics, one registry per app (no global state shared between test apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
# The event loop's lag is a millisecond or two when all is well: finer buckets at the low end.
LOOP_LAG_BUCKETS_S = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "emostream_open_connections", "Open WebSocket sessions.", registry=r
        )
        self.connections_total = Counter(
            "emostream_connections", "WebSocket connections by outcome.", ["outcome"], registry=r
        )
        self.segments = Counter(
            "emostream_segments", "Segments cut by the segmenter.", ["source"], registry=r
        )
        self.skipped = Counter(
            "emostream_skipped", "Segments not classified, by reason.", ["reason"], registry=r
        )
        self.inference_seconds = Histogram(
            "emostream_inference_seconds",
            "Model run time per segment.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "emostream_queue_wait_seconds",
            "Time a segment waited for a worker.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_depth = Gauge(
            "emostream_queue_depth", "Segments waiting for a worker.", registry=r
        )
        self.in_progress = Gauge(
            "emostream_inference_in_progress", "Segments being classified.", registry=r
        )
        self.pool_dropped = Counter(
            "emostream_pool_dropped",
            "Jobs the inference pool did not run, by priority class and reason "
            "(full: refused; displaced: gave its place to better work; deadline: waited too long).",
            ["priority", "reason"],
            registry=r,
        )
        self.layout_runs = Counter(
            "emostream_layout_runs",
            "Model runs by layout (lone: a segment alone on the wide session; shared: one "
            "thread per worker).",
            ["layout"],
            registry=r,
        )
        self.batch_size = Histogram(
            "emostream_batch_size",
            "Segments per model run (more than one: equal-length segments batched, "
            "EMOSTREAM_BATCH_MAX).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.partials_computed = Counter(
            "emostream_partials_computed", "Partial results computed and sent.", registry=r
        )
        self.partials_dropped = Counter(
            "emostream_partials_dropped",
            "Partial results not computed or not sent, by reason (pool: refused or displaced "
            "by the inference pool; superseded: a newer one replaced it while it waited; "
            "final: its segment ended first; error: the model failed).",
            ["reason"],
            registry=r,
        )
        self.vad_frames = Counter(
            "emostream_vad_frames",
            "Frames the batched Silero VAD decided (divided by emostream_vad_calls: the "
            "mean batch).",
            registry=r,
        )
        self.vad_calls = Counter(
            "emostream_vad_calls", "Model calls of the batched Silero VAD.", registry=r
        )
        self.uploads = Counter(
            "emostream_uploads", "Uploaded files by HTTP status.", ["status"], registry=r
        )
        self.uploads_in_progress = Gauge(
            "emostream_uploads_in_progress",
            "Uploads by stage (receiving: the body is arriving; classifying: decoded and "
            "classified).",
            ["stage"],
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "emostream_event_loop_lag_seconds",
            "How much later than due the event loop ran a probe task woken every 50 ms "
            "(server/loop_lag.py): what a message arriving then waited for the loop.",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=r,
        )
        messages = Counter(
            "emostream_ws_messages",
            "WebSocket messages the sessions handled, by kind (binary: audio frames; text).",
            ["kind"],
            registry=r,
        )
        self.ws_binary_messages = messages.labels(kind="binary")
        self.ws_text_messages = messages.labels(kind="text")
        self.model_info = Gauge(
            "emostream_model_info", "The served model (value 1).", ["name", "version"], registry=r
        )
        self.model_swaps = Counter(
            "emostream_model_swaps", "Model switch attempts by outcome.", ["outcome"], registry=r
        )

    def set_model(self, name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
