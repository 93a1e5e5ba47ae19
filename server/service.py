"""The resources shared by every connection: settings, model, pool, limits, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import vad
from classifier.inference import Classifier, OnnxClassifier, ThreadOptions
from classifier.model import Manifest, ModelError, read_manifest
from classifier.selection import Selection, Timer, probe_timer, select_graph
from server.access import ConnectionLimiter
from server.metrics import Metrics
from server.pool import InferencePool
from server.settings import Settings
from server.upload_layout import LayoutCost, measure_layout
from server.upload_slots import UploadSlots

log = logging.getLogger(__name__)

ClassifierLoader = Callable[[Path], Classifier]
# The timer for a model directory's graphs under given session options (tests stub it).
TimerFactory = Callable[[Path, ThreadOptions], Timer]


class Drainable(Protocol):
    def request_shutdown(self) -> None: ...

    async def wait_closed(self) -> None: ...


class Service:
    """Created with the app; ``start`` loads the model in the lifespan, ``stop`` releases it."""

    def __init__(
        self,
        settings: Settings,
        loader: ClassifierLoader | None = None,
        timer: TimerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_ip)
        self.uploads = UploadSlots(settings, self.metrics)
        # Uploads are decoded and segmented here, never on the inference workers' cores alone.
        self.decoder = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        self.sessions: set[Drainable] = set()
        self.draining = False
        self._loader = loader
        self._timer = timer
        self._pool: InferencePool | None = None
        # Which graph the pool's classifiers run and why (None: a test's own loader).
        self._selection: Selection | None = None
        self._swap_lock = asyncio.Lock()
        self.segmenter_config = settings.segmenter_config()
        # Silero streams' frames, batched across streams (None: webrtcvad, or batching off).
        self.vad_batcher: vad.SileroBatcher | None = None
        # The lone session's speedup, measured at load, for planning uploads (None: no lone).
        self.layout_cost: LayoutCost | None = None

    def _threads(self, intra_op_threads: int) -> ThreadOptions:
        return ThreadOptions(
            intra_op_threads=intra_op_threads, graph_optimization=self.settings.graph_optimization
        )

    def _load(self, model_dir: Path) -> tuple[Classifier, Classifier | None, Selection | None]:
        """The shared classifier, for the adaptive layout the one for a lone segment (same
        graph, more threads), and which graph they run and why (EMOSTREAM_GRAPH).

        A test loader gets no lone session and no selection: it has no thread settings."""
        if self._loader is not None:
            self.layout_cost = None
            return self._loader(model_dir), None, None
        shared_threads = self._threads(self.settings.intra_op_threads)
        selection = select_graph(
            read_manifest(model_dir),
            self.settings.graph,
            (self._timer or probe_timer)(model_dir, shared_threads),
        )
        # The named variant (the manifest's own graph may have none).
        variant = selection.graph.variant or None
        shared = OnnxClassifier(model_dir, shared_threads, variant)
        if shared.graph.sha256 != selection.graph.sha256:
            raise ModelError(
                f"the model directory {str(model_dir)!r} changed while it was loaded",
                "the model directory changed while it was loaded",
            )
        log.info(
            "graph %s (%s): %s%s",
            selection.name,
            selection.by,
            selection.reason,
            "; median ms per probe: "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in selection.median_ms.items())
            if selection.median_ms
            else "",
        )
        lone_threads = self.settings.lone_intra_op_threads
        if lone_threads <= self.settings.intra_op_threads:
            self.layout_cost = None
            return shared, None, selection
        lone = OnnxClassifier(model_dir, self._threads(lone_threads), variant)
        self.layout_cost = measure_layout(shared, lone, self.settings.workers)
        log.info(
            "lone session (%d threads) runs a segment %.2f times as fast as one of %d workers",
            lone_threads,
            self.layout_cost.speedup,
            self.settings.workers,
        )
        return shared, lone, selection

    @property
    def pool(self) -> InferencePool:
        if self._pool is None:
            raise RuntimeError("service is not started")
        return self._pool

    @property
    def ready(self) -> bool:
        # A momentarily full pool is still ready: a proxy must not take a busy replica out.
        return self._pool is not None and not self.draining and self._pool.open

    @property
    def manifest(self) -> Manifest:
        return self.pool.classifier.manifest

    @property
    def selection(self) -> Selection | None:
        return self._selection

    def model_public(self) -> dict[str, Any]:
        """``GET /v1/model``'s answer: the public manifest, with the graph that runs and why."""
        selection = self._selection
        if selection is None:
            return self.manifest.public()
        return self.manifest.public(selection.graph, selection.public())

    def new_detector(self) -> vad.Detector:
        """A fresh voice detector for one stream (Silero: state on the shared session)."""
        return vad.make_detector(self.segmenter_config, self.settings.vad_model_path)

    def _on_vad_batch(self, size: int) -> None:
        self.metrics.vad_calls.inc()
        self.metrics.vad_frames.inc(size)

    def start(self) -> None:
        # Loads and checks the Silero model now: a bad file stops the server at start.
        detector = self.new_detector()
        if isinstance(detector, vad.SileroDetector) and self.settings.vad_batch:
            self.vad_batcher = vad.SileroBatcher(
                detector.model, self.settings.vad_batch, on_batch=self._on_vad_batch
            )
        classifier, lone, self._selection = self._load(self.settings.model_dir)
        self._pool = InferencePool(
            classifier,
            lone=lone,
            workers=self.settings.workers,
            queue_size=self.settings.queue_size,
            queue_timeout_s=self.settings.queue_timeout_ms / 1000,
            metrics=self.metrics,
            batch_max=self.settings.batch_max,
        )
        self.metrics.set_model(classifier.manifest.name, classifier.manifest.version)
        log.info(
            "serving model %s version %s from %s",
            classifier.manifest.name,
            classifier.manifest.version,
            self.settings.model_dir,
        )

    def stop(self) -> None:
        self.decoder.shutdown(wait=True, cancel_futures=True)
        if self.vad_batcher is not None:
            self.vad_batcher.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def switch_model(self, model_dir: Path | None = None) -> Manifest:
        """Load and validate ``model_dir`` (default: the configured one), then serve it.

        Raises ``ModelError`` and keeps the current model when the new one is refused.
        Live sessions continue; segments already admitted finish on the old model.
        """
        target = model_dir or self.settings.model_dir
        async with self._swap_lock:
            try:
                classifier, lone, selection = await asyncio.to_thread(self._load, target)
            except ValueError:
                self.metrics.model_swaps.labels(outcome="refused").inc()
                raise
            old = self.pool.swap(classifier, lone)
            self._selection = selection
        self.metrics.model_swaps.labels(outcome="switched").inc()
        self.metrics.set_model(classifier.manifest.name, classifier.manifest.version)
        log.info(
            "switched model %s %s -> %s %s (from %s)",
            old.manifest.name,
            old.manifest.version,
            classifier.manifest.name,
            classifier.manifest.version,
            target,
        )
        return classifier.manifest

    async def drain(self) -> None:
        """Ask every session to finish its utterance, deliver its results and close."""
        self.draining = True
        sessions = list(self.sessions)
        for session in sessions:
            session.request_shutdown()
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in sessions],
                timeout=self.settings.shutdown_timeout_s,
            )
