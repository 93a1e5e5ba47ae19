"""EMOSTREAM_GRAPH in the server (server/service.py): the chosen graph is served by the
pool's sessions, reported by ``/v1/model`` and the log, and chosen again on a model switch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import GraphSpec, ModelError
from server.settings import Settings

AUTH = {"Authorization": "Bearer admin-secret"}
MS = {"convmm": 50.0, "convmm-u8u8": 40.0, "convmm-perchannel": 30.0, "convmm-reduce-range": 1.0}


@pytest.fixture
def stub_timer(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, ThreadOptions, str]]:
    """Every graph the server measures times as MS says; the calls are recorded."""
    calls: list[tuple[Path, ThreadOptions, str]] = []

    def factory(model_dir: Path, threads: ThreadOptions) -> Callable[[GraphSpec], float]:
        def timer(graph: GraphSpec) -> float:
            calls.append((model_dir, threads, graph.variant))
            return MS[graph.variant]

        return timer

    monkeypatch.setattr("server.service.probe_timer", factory)
    return calls


def test_the_fastest_graph_is_served_and_reported(
    make_client: Any,
    tiny_alternatives_dir: Path,
    stub_timer: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="server.service"):
        client = make_client(model_dir=tiny_alternatives_dir, intra_op_threads=1, workers=2)
    # Measured with the pool's own session options; the low-agreement one is not measured.
    assert [(c[1].intra_op_threads, c[2]) for c in stub_timer] == [
        (1, "convmm"),
        (1, "convmm-u8u8"),
        (1, "convmm-perchannel"),
    ]
    graph = client.get("/v1/model").json()["graph"]
    assert graph["variant"] == "convmm-perchannel"
    assert graph["agreement"] == 1.0
    service = client.app.state.service
    assert graph["sha256"] == service.pool.classifier.graph.sha256
    assert graph["selection"] == {
        "by": "measured",
        "reason": "fastest of 3 measured (median of 5 runs of a 3 s probe); "
        "left out: convmm-reduce-range (agreement 0.9700 < 0.99)",
        "median_ms": {"convmm": 50.0, "convmm-u8u8": 40.0, "convmm-perchannel": 30.0},
    }
    assert "model-" not in str(graph)  # no file names
    # The lone session (more threads) runs the same graph.
    assert service.pool.lone is not None
    assert service.pool.lone.graph.variant == "convmm-perchannel"
    assert service.pool.classifier.graph.variant == "convmm-perchannel"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("graph ")]
    assert lines == [
        "graph convmm-perchannel (measured): fastest of 3 measured (median of 5 runs of a 3 s "
        "probe); left out: convmm-reduce-range (agreement 0.9700 < 0.99); median ms per probe: "
        "convmm 50.0, convmm-u8u8 40.0, convmm-perchannel 30.0"
    ]


def test_a_configured_variant_is_served_without_measuring(
    make_client: Any, tiny_alternatives_dir: Path, stub_timer: list[Any]
) -> None:
    client = make_client(model_dir=tiny_alternatives_dir, graph="convmm-u8u8")
    graph = client.get("/v1/model").json()["graph"]
    assert (graph["variant"], graph["selection"]["by"]) == ("convmm-u8u8", "configured")
    assert stub_timer == []
    default = make_client(model_dir=tiny_alternatives_dir, graph="default")
    assert default.get("/v1/model").json()["graph"]["variant"] == "convmm"


def test_an_unknown_variant_stops_the_server_naming_the_known_ones(
    make_client: Any, tiny_alternatives_dir: Path, stub_timer: list[Any]
) -> None:
    with pytest.raises(ModelError, match=r"EMOSTREAM_GRAPH=avx512 .*convmm, convmm-u8u8"):
        make_client(model_dir=tiny_alternatives_dir, graph="avx512")


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="graph"):
        Settings(graph="Not A Name")


def test_a_model_switch_chooses_again(
    make_client: Any, tiny_model_dir: Path, tiny_alternatives_dir: Path, stub_timer: list[Any]
) -> None:
    client = make_client(admin_token="admin-secret")
    assert client.get("/v1/model").json()["graph"]["selection"]["by"] == "only"
    assert stub_timer == []
    reply = client.post(
        "/admin/model", json={"model_dir": str(tiny_alternatives_dir)}, headers=AUTH
    )
    assert reply.status_code == 200
    assert reply.json()["model"]["graph"]["variant"] == "convmm-perchannel"
    assert client.get("/v1/model").json()["graph"]["selection"]["by"] == "measured"
    service = client.app.state.service
    assert service.pool.classifier.graph.variant == "convmm-perchannel"
    assert service.pool.lone.graph.variant == "convmm-perchannel"
    reply = client.post("/admin/model", json={"model_dir": str(tiny_model_dir)}, headers=AUTH)
    assert reply.json()["model"]["graph"]["selection"]["by"] == "only"


def test_a_switch_to_a_model_without_the_configured_variant_is_refused(
    make_client: Any, tiny_model_dir: Path, tiny_alternatives_dir: Path, stub_timer: list[Any]
) -> None:
    client = make_client(
        model_dir=tiny_alternatives_dir, graph="convmm-u8u8", admin_token="admin-secret"
    )
    reply = client.post("/admin/model", json={"model_dir": str(tiny_model_dir)}, headers=AUTH)
    assert reply.status_code == 422
    assert "EMOSTREAM_GRAPH=convmm-u8u8" in reply.json()["error"]["message"]
    graph = client.get("/v1/model").json()["graph"]
    assert (graph["variant"], graph["selection"]["by"]) == ("convmm-u8u8", "configured")


def test_measured_for_real_at_load(make_client: Any, tiny_alternatives_dir: Path) -> None:
    client = make_client(model_dir=tiny_alternatives_dir)
    graph = client.get("/v1/model").json()["graph"]
    selection = graph["selection"]
    assert selection["by"] == "measured"
    assert set(selection["median_ms"]) == {"convmm", "convmm-u8u8", "convmm-perchannel"}
    assert all(ms > 0 for ms in selection["median_ms"].values())
    assert graph["variant"] in selection["median_ms"]
    served = client.app.state.service.pool.classifier
    assert isinstance(served, OnnxClassifier) and served.graph.variant == graph["variant"]


def test_a_directory_changed_between_choosing_and_loading_is_refused(
    make_client: Any, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from classifier.model import read_manifest

    def earlier_manifest(model_dir: Path) -> Any:
        manifest = read_manifest(model_dir)
        graph = manifest.graph.model_copy(update={"sha256": "0" * 64})
        return manifest.model_copy(update={"graph": graph})

    monkeypatch.setattr("server.service.read_manifest", earlier_manifest)
    with pytest.raises(ModelError, match="changed while it was loaded"):
        make_client(model_dir=tiny_model_dir)
