"""Every benchmark script runs end to end on tiny settings and writes its JSON and plot.

No timings are asserted: only that each script works and records what BENCHMARKS.md reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import vad_quality
from classifier.model import read_manifest
from server.settings import BUNDLED_MODEL_DIR
from vad import SegmenterConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of exported tiny models shared by all scripts."""
    return tmp_path_factory.mktemp("bench-models")


def run_quick(script: str, out: Path, work_dir: Path, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", f"bench.{script}", "--quick", "--out", str(out)]
    argv += ["--work-dir", str(work_dir), *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    data = json.loads((out / f"{script}.json").read_text())
    png = out / f"{script}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["benchmark"] == script
    assert data["quick"] is True
    assert data["machine"]["cores"] >= 1
    return dict(data)


def test_model_cost(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("model_cost", tmp_path, work_dir)
    paths = {row["path"] for row in data["rows"]}
    assert paths == {
        "onnx-fp32",
        "onnx-int8-matmul",
        "onnx-int8-convmm",
        "prototype-pipeline",
        "torch-forward",
    }
    for row in data["rows"]:
        assert row["ms"]["median"] > 0
        assert row["gflop"] > 0
    assert 0.9 < data["flops_torch_counter_ratio"] < 1.1


def test_quantization(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick(
        "quantization", tmp_path, work_dir, "--variants", "fp32", "int8-matmul", "int8-matmul-conv"
    )
    rows = {row["variant"]: row for row in data["rows"]}
    assert rows["fp32"]["agreement_vs_fp32"]["max_abs_logit_error"] == 0.0
    assert "ConvInteger" in rows["int8-matmul-conv"]["graph"]["ops"]
    assert "ConvInteger" not in rows["int8-matmul"]["graph"]["ops"]
    for row in rows.values():
        assert set(row["ms_by_level"]) == {"disable", "basic", "extended", "all"}


def test_graph_variants(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("graph_variants", tmp_path, work_dir)
    rows = {row["variant"]: row for row in data["rows"]}
    assert list(rows) == [
        "int8-convmm",
        "int8-convmm-u8u8",
        "int8-convmm-reduce-range",
        "int8-convmm-perchannel",
        "int8-convmm-static",
    ]
    for row in rows.values():
        assert set(row["ms_by_threads"]) == {"1", "2"}
        assert row["ms_by_threads"]["1"]["median"] > 0
        assert 0.0 <= row["agreement_vs_fp32"]["top1_agreement"] <= 1.0
    for name, row in rows.items():  # dynamic: MatMulInteger; static: QDQ pairs
        quantized_op = "QuantizeLinear" if name.endswith("static") else "MatMulInteger"
        assert quantized_op in row["graph"]["ops"], name
    assert len({row["sha256"] for row in rows.values()}) == 5  # five recipes, five graphs
    for threads in ("1", "2"):
        picks = data["auto_pick_by_threads"][threads]
        for pick in picks.values():
            assert pick["variant"] in rows
            assert pick["by"] == "measured"
        fastest = min(rows, key=lambda v: rows[v]["ms_by_threads"][threads]["median"])
        chosen = rows[picks["speed_only"]["variant"]]["ms_by_threads"][threads]["median"]
        assert chosen <= rows[fastest]["ms_by_threads"][threads]["median"] * 1.03


def test_layout(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("layout", tmp_path, work_dir)
    layouts = {(r["workers"], r["intra_op_threads"]) for r in data["summary"]}
    assert {(1, 2), (2, 1)} <= layouts
    assert all(r["segments"] > 0 for r in data["rows"])


def test_vad_cost(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("vad_cost", tmp_path, work_dir)
    assert [
        (row["detector"], row["input_rate_hz"], row.get("streams")) for row in data["rows"]
    ] == [
        ("silero", 16000, None),
        ("silero", 48000, None),
        ("silero (inline)", 16000, 1),
        ("silero (batched)", 16000, 1),
        ("silero (inline)", 16000, 4),
        ("silero (batched)", 16000, 4),
        ("webrtc", 16000, None),
        ("webrtc", 48000, None),
    ]
    # Inline and batched decide alike, so they cut the same segments.
    by_kind = {(row["detector"], row.get("streams")): row["segments"] for row in data["rows"]}
    assert by_kind[("silero (inline)", 4)] == by_kind[("silero (batched)", 4)]
    assert all(row["segments"] > 0 for row in data["rows"])
    assert all(row["cpu_ms_per_audio_s"]["median"] > 0 for row in data["rows"])


def test_end_to_end(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("end_to_end", tmp_path, work_dir)
    stacks = {row["stack"] for row in data["summary"]}
    assert len(stacks) == 3  # the prototype, ours with a fixed and with the adaptive layout
    assert any("fixed layout" in s for s in stacks)
    assert any("lone segment on 2 threads" in s for s in stacks)
    for row in data["rows"]:
        assert row["error_count"] == 0
        assert row["requests"] > 0


def test_live_capacity(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("live_capacity", tmp_path, work_dir)
    assert [m["conversation"] for m in data["models"]] == ["half", "dense"]
    assert data["speech_fraction"]["dense"] > data["speech_fraction"]["half"]
    for model in data["models"]:
        assert [run["k"] for run in model["runs"]] == [1, 2]
        for run in model["runs"]:
            assert run["failed_clients"] == []
            assert run["results"] > 0
            assert run["utterance_latency_s"]["n"] > 0
            assert run["interim_ms"] == 0 and run["partials_received"] == 0
            assert run["speech_s_per_s"] > 0
        partials = model["partials"]
        assert partials["interim_ms"] == 1000
        assert partials["k"] in (1, 2)
        on = partials["run"]
        assert on["interim_ms"] == 1000
        assert on["partials_received"] == on["partials_computed"]
        assert on["partials_computed"] + sum(on["partials_dropped"].values()) > 0
        assert partials["one_speaker_first_label_s"]["n"] > 0


def test_upload_stages(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("upload_stages", tmp_path, work_dir)
    (result,) = data["results"]
    assert result["clip"] == "paused" and result["model"] == "bundled"
    assert len(result["segments"]) == 2
    stages = result["stages"]
    for stage in ("decode (+ resample)", "segmentation (VAD + segmenter)", "JSON render"):
        assert stages[stage]["calls"] >= 1
    assert stages["  VAD model (Silero)"]["calls"] > 50  # one call per 32 ms frame
    runs = sum(v["calls"] for k, v in stages.items() if k.startswith("model, "))
    assert runs == 2
    assert result["layout_cost"]["speedup"] > 0


def test_core_scaling(tmp_path: Path, work_dir: Path) -> None:
    # Two processes behind Caddy on two cores where the machine has them, else one on one.
    two = len(os.sched_getaffinity(0)) >= 2
    extra = ["--cores", "2", "--processes", "2"] if two else []
    data = run_quick("core_scaling", tmp_path, work_dir, *extra)
    (row,) = data["rows"]
    assert row["cores"] == len(row["server_cpus"]) == (2 if two else 1)
    assert row["caddy"] is two and row["processes"] == (2 if two else 1)
    assert row["client_cpus"] and isinstance(row["clients_share_server_cpus"], bool)
    assert [r["k"] for r in row["runs"]] == [1, 2]
    assert row["max_k_passing"] >= 1  # one tiny-model speaker always fits
    assert row["speakers_per_core"] == row["max_k_passing"] / row["cores"]
    assert row["offline"]["speech_s_per_s"] > 0
    assert row["serving_efficiency"] == pytest.approx(
        row["speech_s_per_s_at_capacity"] / row["offline"]["speech_s_per_s"]
    )


def test_live_loop(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("live_loop", tmp_path, work_dir)
    rows = data["rows"]
    assert [r["streams"] for r in rows] == [1, 2]
    for row in rows:
        assert row["clients"]["errors"] == []
        assert row["clients"]["results"] >= row["streams"]  # every speaker got a label
        assert row["loop_cpu_s"] > 0 and row["loop_ms_per_audio_s_per_stream"] > 0
        shares = row["profiled_shares"]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares["Silero model calls (ONNX Runtime)"] > 0


def test_memory(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("memory", tmp_path, work_dir)
    assert [r["connections"] for r in data["idle_connection_rounds"]] == [10, 10]
    assert data["rss_idle_mb"] > 0
    assert data["rss_peak_active_mb"] >= data["rss_before_active_mb"]


def test_upload_memory(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("upload_memory", tmp_path, work_dir)
    assert data["decoded_audio_mb"] == pytest.approx(60 * 16000 * 4 / 2**20)
    assert data["one"]["uploads"] == 1 and data["one"]["segments"] > 0
    assert data["one"]["peak_growth_mb"] > 0
    assert data["concurrent"]["uploads"] == 2


def test_flood(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("flood", tmp_path, work_dir)
    assert data["order"] == ["baseline 0", "attacked 0"]
    assert data["machine_before"]["loadavg_1_5_15"] and data["machine"]["loadavg_1_5_15"]
    assert data["server_settings"]["EMOSTREAM_TRUSTED_PROXIES"] == "127.0.0.1/32"
    assert data["server_settings"]["EMOSTREAM_MAX_CONNECTIONS_PER_IP"] == "10"  # the default
    baseline, attacked = data["rounds"]
    for r in data["rounds"]:
        assert r["speakers"]["round"]["utterances"] >= 4  # every speaker had one at least
        assert r["speakers"]["failed_sessions"] == []
        assert r["server_in_window"]["loop_lag"]["probes"] > 0
        assert r["server_in_window"]["cpu_cores"]["event_loop"] > 0
    assert "floods" not in baseline and "uploads" not in baseline
    floods = attacked["floods"]["by_kind"]
    assert set(floods) == {"frames", "flush", "junk"}
    for kind in ("flush", "junk"):  # each trips its budget within the window at least once
        assert floods[kind]["messages_sent"] > 0
        assert any(reason.startswith("1008 limit") for reason in floods[kind]["closes"])
    assert "1008 limit max_bad_messages" in floods["junk"]["closes"]
    assert floods["junk"]["error_replies"]["bad_message"] > 0
    accepted = attacked["floods"]["accepted_by_server"]
    assert accepted["junk"]["messages"] == floods["junk"]["error_replies"]["bad_message"]
    assert accepted["flush"]["messages"] > 0
    assert attacked["uploads"]["done"] > 0 and "200" in attacked["uploads"]["by_status"]
    # the messages the server handled in the window: the speakers' frames at least
    assert attacked["server_in_window"]["messages"]["binary"] > 0
    assert set(data["target"]) >= {"p95_difference_s", "within_target", "met"}
    assert data["target"]["p95_baseline_s"] is not None


def test_op_profile(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("op_profile", tmp_path, work_dir)
    rows = {row["variant"]: row for row in data["rows"]}
    assert set(rows) == {"fp32", "int8-matmul"}
    assert "Conv" in rows["fp32"]["kernel_ms_by_op"]
    assert rows["fp32"]["kernel_ms_total"] > 0


def test_failover(tmp_path: Path, work_dir: Path) -> None:
    from tests.programs import require

    require("caddy")
    data = run_quick("failover", tmp_path, work_dir)
    assert [row["kind"] for row in data["summary"]] == ["sigterm", "sigkill"]
    for row in data["summary"]:
        assert row["runs"] == 1
        assert row["finished_streams"] == row["streams"] == 2
        assert row["moved_streams"] >= 1
        assert row["reconnect_gap_s"]["n"] == row["moved_streams"]
        assert row["new_connections"] > 0


def test_vad_quality(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("vad_quality", tmp_path, work_dir)
    rows = {(r["detector"], r["condition"], r["endpoint"]): r for r in data["rows"]}
    detectors = ("silero", "webrtc2")
    assert set(rows) == {
        (d + gate, c, e)
        for d in detectors
        for gate in ("", " (no babble gate)")
        for c in ("clean", "white0", "babble10")
        for e in ("300", "600", vad_quality.DEFAULT)
    }
    # The babble gate (on by default) separates utterances in babble and leaves a clean
    # room and white noise as they were.
    babble = [rows[(d, "babble10", "600")]["found"] for d in ("silero", "silero (no babble gate)")]
    assert babble[0] > babble[1]
    for condition in ("clean", "white0"):
        assert (
            rows[("silero", condition, "600")]["found"]
            == rows[("silero (no babble gate)", condition, "600")]["found"]
        )
    # Deterministic counts, so the quick run can hold the detectors to what they do:
    # both find every utterance in a clean room, only Silero in white noise at 0 dB.
    for detector in ("silero", "webrtc2"):
        assert rows[(detector, "clean", "600")]["found"] == 8
    assert rows[("silero", "white0", "600")]["found"] >= 7
    assert rows[("webrtc2", "white0", "600")]["found"] <= 3
    # A longer hangover never ends an utterance sooner; the default's short hangover ends
    # these (1.5 s or longer) sooner than its own 400 ms hangover could, and finds as many.
    for detector in ("silero", "webrtc2"):
        short = rows[(detector, "clean", "300")]["endpoint_delay_ms"]["p50"]
        long = rows[(detector, "clean", "600")]["endpoint_delay_ms"]["p50"]
        assert short < long
        default = rows[(detector, "clean", vad_quality.DEFAULT)]
        assert default["endpoint_delay_ms"]["p50"] < 400
        assert default["found"] == 8
    assert rows[("silero", "white0", vad_quality.DEFAULT)]["found"] >= 7
    f1 = {(r["detector"], r["condition"]): r["f1"] for r in data["frame_f1"]}
    assert f1[("silero", "white0")] > 0.9 > f1[("webrtc2", "white0")]


def test_vad_quality_endpoints_name_the_segmenter_settings() -> None:
    default = vad_quality.endpoint(vad_quality.DEFAULT)
    assert default.apply(SegmenterConfig()) == SegmenterConfig()  # the default is the config's
    assert default.name == vad_quality.DEFAULT
    plain = vad_quality.endpoint("250")
    assert (plain.hangover_ms, plain.short_hangover_ms, plain.name) == (250, 0, "250")
    for bad in ("", "fast", "400/200", "400/x@1500", "400/200@1500@2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected HANGOVER_MS"):
            vad_quality.endpoint(bad)


def test_endpoint_labels(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("endpoint_labels", tmp_path, work_dir)
    assert data["model"] == read_manifest(BUNDLED_MODEL_DIR).version
    rows = {r["endpoint"]: r for r in data["rows"]}
    assert set(rows) == {"250", vad_quality.DEFAULT, "600"}
    assert data["reference_endpoint"] == "600"
    utterances = data["conversations"] * data["utterances_per_conversation"]
    # Shorter hangovers split more and end sooner; the short one sits between.
    assert rows["600"]["splits"] <= rows[vad_quality.DEFAULT]["splits"] <= rows["250"]["splits"]
    delays = [rows[e]["endpoint_delay_ms"]["p50"] for e in (vad_quality.DEFAULT, "600")]
    assert delays[0] < delays[1]
    reference = rows["600"]
    assert reference["right_to_wrong"] == reference["wrong_to_right"] == 0
    for row in rows.values():
        assert 0 < row["segments_classified"] <= row["segments"]
        assert 0.0 <= row["segment_accuracy"] <= 1.0
        assert row["utterances_labelled"] <= utterances
        # The paired counts account for the whole difference from the reference.
        change = (row["wrong_to_right"] - row["right_to_wrong"]) / utterances
        assert row["utterance_accuracy"] == pytest.approx(reference["utterance_accuracy"] + change)


def test_endpoint_labels_scores_each_audio_once() -> None:
    from bench.endpoint_labels import Labeller
    from vad import Segment

    rng = np.random.default_rng(0)
    loud, soft = (rng.uniform(-a, a, 16000).astype(np.float32) for a in (0.5, 0.01))
    labeller = Labeller(BUNDLED_MODEL_DIR)
    first = labeller.scores(Segment(0, 16000, 0, 1000, loud, False))
    # Same bounds, other audio (the same conversation in another condition): new scores.
    other = labeller.scores(Segment(0, 16000, 0, 1000, soft, False))
    again = labeller.scores(Segment(0, 16000, 0, 1000, loud.copy(), False))
    assert labeller.computed == 2
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(first, again)


def test_telephone_band(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("telephone_band", tmp_path, work_dir)
    assert [row["set"] for row in data["rows"]] == ["held_out", "independent"]
    for row in data["rows"]:
        assert row["clips"] == 6
        for condition in ("wideband", "phone_mulaw", "phone_alaw"):
            assert 0.0 <= row[condition] <= 1.0
        assert row["drop_points_mulaw"] == pytest.approx(
            100 * (row["wideband"] - row["phone_mulaw"]), abs=0.06
        )


def test_telephone_band_channel_keeps_the_band_and_drops_the_rest() -> None:
    from training.synthetic.telephone import RATE_HZ
    from training.synthetic.telephone import channel as phone_channel

    t = np.arange(RATE_HZ) / RATE_HZ
    for law in ("mulaw", "alaw"):
        channel = phone_channel(law)
        inside = channel((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
        outside = channel((0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32))
        low = channel((0.3 * np.sin(2 * np.pi * 100 * t)).astype(np.float32))
        assert len(inside) == RATE_HZ
        rms = [float(np.sqrt(np.mean(x[2000:-2000] ** 2))) for x in (inside, outside, low)]
        assert rms[0] == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
        assert rms[1] < 0.01 and rms[2] < 0.05


SCRIPTS = sorted(
    path.stem
    for path in (REPO / "bench").glob("*.py")
    if 'if __name__ == "__main__"' in path.read_text()
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_explains_its_options(script: str) -> None:
    # argparse formats help strings with %: a literal "%" in one crashed bench.soak's --help.
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_batching(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("batching", tmp_path, work_dir)
    assert [m["model"] for m in data["models"]] == ["base-int8", "bundled"]
    assert data["machine_kind"] == data["machine"]["cpu_kind"]
    for model in data["models"]:
        assert model["batch_axis"] is True
        cases = {(r["layout"], r["segments"], r["intra_op_threads"]) for r in model["rows"]}
        for b in (1, 2, 4, 8):
            assert {("separate calls", b, 1), ("separate calls", b, 2)} <= cases
        for b in (2, 4, 8):
            assert {("one call", b, 1), ("one call", b, 2)} <= cases
            assert ("2 workers x 1 thread, separate calls", b, 1) in cases
        assert all(r["segments_per_s"]["median"] > 0 for r in model["rows"])
        assert {r["layout"] for r in model["vs_pool_layout"]} == {
            "one call on 2 threads",
            "2 workers x 1 thread, a batch each",
        }
        assert model["batched_vs_alone"]["segments"] == 8
        assert 0 <= model["batched_vs_alone"]["max_abs_logit_diff"] < 0.5


def test_equal_lengths(tmp_path: Path, work_dir: Path) -> None:
    data = run_quick("equal_lengths", tmp_path, work_dir)
    assert [(r["conversation"], r["k"]) for r in data["rows"]] == [("dense", 2), ("dense", 4)]
    for row in data["rows"]:
        assert row["segments"] >= row["distinct_lengths"] >= 1
        for w in data["windows_s"]:
            other = row["with_equal_partner_other_conversation"][str(w)]
            assert 0 <= other <= row["with_equal_partner"][str(w)] <= row["segments"]
