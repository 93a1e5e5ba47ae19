"""Admission of uploads in two stages, so that slow bodies cannot hold the classify slots.

An upload holds its client address's slot (``max_uploads_per_ip``) from the start to the
end. While its body arrives it also holds one of ``max_upload_bodies`` receiving slots;
only once the body is complete does it take one of the ``max_uploads`` slots that bound
decoding and classifying at once. A client trickling bodies therefore blocks at most
its own address's slots and some receiving slots, never the work of others whose
bodies have arrived, and the minimum body rate (server/upload.py) ends a trickle early.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from server.access import ConnectionLimiter
from server.metrics import Metrics
from server.settings import Settings

_UNLIMITED = sys.maxsize
_ANYONE = ""


class UploadSlots:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._stages = metrics.uploads_in_progress
        self._clients = ConnectionLimiter(
            _UNLIMITED, settings.max_uploads_per_ip, "uploads in progress"
        )
        self._receiving = ConnectionLimiter(
            settings.max_upload_bodies, _UNLIMITED, "upload bodies being received"
        )
        self._classifying = ConnectionLimiter(
            settings.max_uploads, _UNLIMITED, "uploads in progress"
        )

    @property
    def total(self) -> int:
        """Uploads in progress, at any stage."""
        return self._clients.total

    @property
    def receiving(self) -> int:
        return self._receiving.total

    @property
    def classifying(self) -> int:
        return self._classifying.total

    @contextmanager
    def client(self, client: str) -> Iterator[None]:
        """The whole upload of ``client``; raises ``ConnectionLimit`` at its address's cap."""
        with self._clients.hold(client):
            yield

    @contextmanager
    def receive(self) -> Iterator[None]:
        """While the body arrives; raises ``ConnectionLimit`` when too many do at once."""
        with (
            self._receiving.hold(_ANYONE),
            self._stages.labels(stage="receiving").track_inprogress(),
        ):
            yield

    @contextmanager
    def classify(self) -> Iterator[None]:
        """While the complete upload is decoded and classified; ``ConnectionLimit`` when full."""
        with (
            self._classifying.hold(_ANYONE),
            self._stages.labels(stage="classifying").track_inprogress(),
        ):
            yield
