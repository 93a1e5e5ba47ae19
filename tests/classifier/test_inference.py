"""ONNX Runtime classifier (classifier/inference.py) on real tiny graphs, including each refusal."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from classifier.inference import (
    ORT_ERRORS,
    OnnxClassifier,
    ThreadOptions,
    calibrated_softmax,
    normalize,
    predict_many,
    session_options,
    softmax,
)
from classifier.model import MANIFEST_FILE, ModelError, read_manifest, sha256_file
from server.settings import BUNDLED_MODEL_DIR
from tests.speech import espeak, tone


@pytest.fixture(scope="module")
def classifier(tiny_model_dir: Path) -> OnnxClassifier:
    return OnnxClassifier(tiny_model_dir)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def edit_manifest(model_dir: Path, **changes: Any) -> None:
    path = model_dir / MANIFEST_FILE
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value
    path.write_text(json.dumps(data))


def replace_graph(model_dir: Path, content: bytes) -> None:
    graph = model_dir / "model.onnx"
    graph.write_bytes(content)
    edit_manifest(model_dir, graph__sha256=sha256_file(graph))


def test_predict_returns_probabilities(classifier: OnnxClassifier) -> None:
    scores = classifier.predict(tone(1.0, 440.0))
    assert scores.dtype == np.float32
    assert scores.shape == (len(classifier.manifest.labels),) == (6,)
    assert np.all(scores >= 0.0)
    assert float(scores.sum()) == pytest.approx(1.0, abs=1e-5)


def test_predict_depends_on_the_audio(classifier: OnnxClassifier) -> None:
    speech = classifier.predict(espeak("hello there, how are you"))
    low = classifier.predict(tone(1.0, 220.0))
    assert not np.allclose(speech, low, atol=1e-6)
    np.testing.assert_array_equal(classifier.predict(tone(1.0, 220.0)), low)


def test_predict_is_softmax_of_logits(classifier: OnnxClassifier) -> None:
    audio = tone(0.7, 330.0)
    logits = classifier.logits(audio)
    np.testing.assert_allclose(classifier.predict(audio), softmax(logits), rtol=1e-6)


@pytest.mark.parametrize("samples", [1, 10, 399])
def test_short_audio_is_zero_padded(classifier: OnnxClassifier, samples: int) -> None:
    audio = tone(0.025, 500.0)[:samples]
    padded = np.pad(audio, (0, classifier.manifest.input.min_samples - samples))
    scores = classifier.predict(audio)
    assert float(scores.sum()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(scores, classifier.predict(padded))


def test_float64_audio_is_accepted(classifier: OnnxClassifier) -> None:
    audio = tone(0.5, 300.0)
    np.testing.assert_allclose(
        classifier.predict(audio.astype(np.float64)),  # type: ignore[arg-type]
        classifier.predict(audio),
        rtol=1e-6,
    )


@pytest.mark.parametrize("shape", [(0,), (2, 8000), (1, 1, 400)])
def test_bad_audio_shape_is_refused(classifier: OnnxClassifier, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected non-empty mono audio") as info:
        classifier.predict(np.zeros(shape, dtype=np.float32))
    assert str(shape) in str(info.value)


def test_normalisation_makes_scale_irrelevant(classifier: OnnxClassifier) -> None:
    audio = tone(1.0, 250.0) + tone(1.0, 900.0, level=0.1)
    np.testing.assert_allclose(
        classifier.logits(audio), classifier.logits(audio * 0.01), rtol=1e-3, atol=1e-5
    )


def test_normalisation_off_feeds_raw_audio(model_copy: Path, classifier: OnnxClassifier) -> None:
    edit_manifest(model_copy, input__normalize="none")
    raw = OnnxClassifier(model_copy)
    assert raw.manifest.input.normalize == "none"
    audio = tone(1.0, 250.0) + tone(1.0, 900.0, level=0.1)
    assert not np.allclose(raw.logits(audio), raw.logits(audio * 0.01), atol=1e-5)
    # With normalisation off, feeding pre-normalised audio equals the normalising model.
    np.testing.assert_allclose(
        raw.logits(normalize(audio, classifier.manifest)),
        classifier.logits(audio),
        rtol=1e-4,
        atol=1e-5,
    )


def test_normalize_zero_mean_unit_variance(classifier: OnnxClassifier) -> None:
    out = normalize(tone(1.0, 123.0, level=0.05) + 0.2, classifier.manifest)
    assert out.dtype == np.float32
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.var()) == pytest.approx(1.0, abs=1e-3)


def test_normalize_silence_stays_finite(classifier: OnnxClassifier) -> None:
    out = normalize(np.full(1600, 0.25, dtype=np.float32), classifier.manifest)
    assert np.all(np.isfinite(out))
    assert np.all(out == 0.0)
    scores = classifier.predict(np.zeros(16000, dtype=np.float32))
    assert np.all(np.isfinite(scores))


def test_softmax_is_stable_for_large_logits() -> None:
    probabilities = softmax(np.array([1000.0, 1000.0, -1000.0], dtype=np.float32))
    np.testing.assert_allclose(probabilities, [0.5, 0.5, 0.0], atol=1e-7)


def test_predict_from_many_threads_matches_serial(classifier: OnnxClassifier) -> None:
    inputs = [tone(0.5, 200.0 + 100.0 * i) for i in range(8)]
    serial = [classifier.predict(a) for a in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(classifier.predict, inputs))
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(one, other)


def test_fp32_model_loads_with_its_own_manifest(tiny_model_dir_b: Path) -> None:
    clf = OnnxClassifier(tiny_model_dir_b, ThreadOptions(intra_op_threads=2))
    assert clf.manifest.name == "tiny-test-b"
    assert clf.manifest.graph.precision == "fp32"
    assert float(clf.predict(tone(1.0)).sum()) == pytest.approx(1.0, abs=1e-5)


# Thread options


def test_session_options_are_explicit() -> None:
    options = session_options(ThreadOptions(intra_op_threads=3, inter_op_threads=2))
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_memory_pattern_is_off_in_the_served_session(classifier: OnnxClassifier) -> None:
    # ONNX Runtime caches one memory pattern per distinct input shape and never evicts it:
    # with segments of every length the server's RSS grew for as long as it ran
    # (BENCHMARKS.md section 5b). The session actually built must have it off.
    assert session_options(ThreadOptions()).enable_mem_pattern is False
    assert classifier._session.get_session_options().enable_mem_pattern is False


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"intra_op_threads": 0}, "intra_op_threads"),
        ({"intra_op_threads": -1}, "intra_op_threads"),
        ({"inter_op_threads": 0}, "inter_op_threads"),
        ({"inter_op_threads": 10_000}, "inter_op_threads"),
        ({"intra_op_threads": 1.5}, "intra_op_threads"),
        ({"intra_op_threads": True}, "intra_op_threads"),
        ({"graph_optimization": "max"}, "graph_optimization"),
    ],
)
def test_thread_options_are_validated(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named) as info:
        ThreadOptions(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_optimisation_level_loads(tiny_model_dir: Path, level: str) -> None:
    clf = OnnxClassifier(tiny_model_dir, ThreadOptions(graph_optimization=level))
    assert clf.predict(tone(0.5)).shape == (6,)


# Refusals


def test_loader_refuses_what_read_manifest_refuses(model_copy: Path) -> None:
    (model_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ModelError, match="is missing"):
        OnnxClassifier(model_copy)


def test_checksum_mismatch_is_refused_before_onnx_runtime(model_copy: Path) -> None:
    graph = model_copy / "model.onnx"
    content = bytearray(graph.read_bytes())
    content[100] ^= 0xFF
    graph.write_bytes(bytes(content))
    with pytest.raises(ModelError, match="checksum mismatch"):
        OnnxClassifier(model_copy)


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"this is not an onnx graph\n" * 50, ort_state.InvalidProtobuf),
        (b"", ort_state.InvalidArgument),
    ],
)
def test_garbage_graph_is_refused(model_copy: Path, content: bytes, cause: type[Exception]) -> None:
    replace_graph(model_copy, content)
    with pytest.raises(ModelError, match="ONNX Runtime cannot load") as info:
        OnnxClassifier(model_copy)
    assert "model.onnx" in str(info.value)
    assert isinstance(info.value.__cause__, cause)
    assert isinstance(info.value.__cause__, ORT_ERRORS)


def test_truncated_graph_is_refused(model_copy: Path) -> None:
    content = (model_copy / "model.onnx").read_bytes()
    replace_graph(model_copy, content[: len(content) // 2])
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        OnnxClassifier(model_copy)


def test_unknown_input_name(model_copy: Path) -> None:
    edit_manifest(model_copy, input__name="audio")
    expected = r"graph has no input 'audio' \(it has \['input_values'\]\)"
    with pytest.raises(ModelError, match=expected):
        OnnxClassifier(model_copy)


def test_unknown_output_name(model_copy: Path) -> None:
    edit_manifest(model_copy, output__name="probabilities")
    expected = r"graph has no output 'probabilities' \(it has \['logits'\]\)"
    with pytest.raises(ModelError, match=expected):
        OnnxClassifier(model_copy)


@pytest.mark.parametrize("labels", [["a", "b", "c", "d"], [f"l{i}" for i in range(7)]])
def test_label_count_must_match_the_graph(model_copy: Path, labels: list[str]) -> None:
    edit_manifest(model_copy, labels=labels)
    with pytest.raises(ModelError, match="has 6 classes") as info:
        OnnxClassifier(model_copy)
    assert f"lists {len(labels)} labels" in str(info.value)


def _graph_bytes(input_shape: list[int | str], output_dims: int) -> bytes:
    """A graph that takes ``input_shape`` and returns the first ``output_dims`` values."""
    inp = helper.make_tensor_value_info("input_values", TensorProto.FLOAT, input_shape)
    out_shape: list[int | str] = [f"d{i}" for i in range(len(input_shape))]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [output_dims])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    node = helper.make_node("Slice", ["input_values", "starts", "ends", "axes"], ["logits"])
    graph = helper.make_graph([node], "g", [inp], [out], initializer=[starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_minimal_foreign_graph_is_served(model_copy: Path) -> None:
    replace_graph(model_copy, _graph_bytes(["batch", "samples"], 6))
    edit_manifest(model_copy, input__normalize="none")
    clf = OnnxClassifier(model_copy)
    logits = np.array([3.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
    audio = np.concatenate([logits, np.zeros(1000, dtype=np.float32)])
    np.testing.assert_allclose(clf.predict(audio), softmax(logits), rtol=1e-6)
    assert read_manifest(model_copy).graph.sha256 == sha256_file(model_copy / "model.onnx")


def test_graph_that_cannot_take_mono_audio_is_refused(model_copy: Path) -> None:
    replace_graph(model_copy, _graph_bytes([1, 2, "samples"], 6))
    with pytest.raises(ModelError, match="cannot run on one second of mono float32 audio") as info:
        OnnxClassifier(model_copy)
    assert isinstance(info.value.__cause__, ORT_ERRORS)


def test_the_verified_bytes_are_the_bytes_loaded(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hash, then load by path, would let a file replaced in between be served unchecked.
    import hashlib

    from classifier import inference

    sources: list[object] = []
    real = inference.ort.InferenceSession

    def spy(source: object, *args: object, **kwargs: object) -> object:
        sources.append(source)
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.ort, "InferenceSession", spy)
    classifier = OnnxClassifier(tiny_model_dir)
    (source,) = sources
    assert isinstance(source, bytes)
    assert hashlib.sha256(source).hexdigest() == classifier.manifest.graph.sha256


def test_a_calibration_divides_the_logits_by_its_temperature(
    model_copy: Path, classifier: OnnxClassifier
) -> None:
    edit_manifest(model_copy, calibration={"temperature": 2.0, "fitted_on": "val"})
    scaled = OnnxClassifier(model_copy)
    audio = espeak("Hello there.")
    logits = classifier.logits(audio)
    np.testing.assert_allclose(scaled.predict(audio), softmax(logits / 2.0), rtol=1e-5)
    np.testing.assert_allclose(classifier.predict(audio), softmax(logits), rtol=1e-5)
    assert int(np.argmax(scaled.predict(audio))) == int(np.argmax(logits))


def _segments(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    """Distinct segments: noise under a tone of its own pitch and level."""
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        voiced = (0.1 + 0.1 * i) * np.sin(2 * np.pi * (150 + 90 * i) * t)
        out.append((voiced + 0.05 * rng.standard_normal(n)).astype(np.float32))
    return out


def _batched_equals_separate(
    clf: OnnxClassifier,
    audios: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    logit_atol: float = 1e-5,
) -> list[int]:
    """Compare ``predict_batch`` with separate ``predict`` calls; the batch sizes of its runs."""
    separate = [clf.logits(a) for a in audios]
    runs: list[int] = []
    real = clf._logits_rows

    def counted(batch: np.ndarray) -> np.ndarray:
        runs.append(batch.shape[0])
        return real(batch)

    monkeypatch.setattr(clf, "_logits_rows", counted)
    batched = clf.predict_batch(audios)
    monkeypatch.undo()
    assert len(batched) == len(audios)
    for got, logits in zip(batched, separate, strict=True):
        assert got.shape == (len(clf.manifest.labels),) and got.dtype == np.float32
        want = calibrated_softmax(logits, clf.manifest)
        # d softmax / d logit <= 1/4 per logit, so the scores move at most half the logits' error
        np.testing.assert_allclose(got, want, atol=max(1e-6, logit_atol / 2))
    np.testing.assert_allclose(
        np.stack(clf.logits_batch(audios)), np.stack(separate), atol=logit_atol
    )
    return sorted(runs)


def test_predict_batch_equals_separate_calls_fp32(
    tiny_model_dir_b: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clf = OnnxClassifier(tiny_model_dir_b)
    assert clf.manifest.graph.precision == "fp32" and clf.batching
    # Three 1.5 s segments share one run; two 0.8 s another; a lone length runs alone.
    audios = _segments([24000, 12800, 24000, 16000, 12800, 24000])
    assert _batched_equals_separate(clf, audios, monkeypatch) == [1, 2, 3]


# Dynamically quantised int8 graphs (DynamicQuantizeLinear) choose one activation scale for
# the whole batch, so a batched segment's logits move by a fraction of the int8 error itself
# (the bundled model: up to 0.036 against its 0.076 max int8-vs-fp32 error on its test set).
INT8_BATCH_LOGIT_ATOL = {"tiny": 1e-3, "bundled": 0.08}


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_predict_batch_of_int8_graphs_within_quantisation_error(
    which: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clf = OnnxClassifier(tiny_model_dir if which == "tiny" else BUNDLED_MODEL_DIR)
    assert clf.manifest.graph.precision == "int8" and clf.batching
    audios = _segments([24000, 12800, 24000, 16000, 12800, 24000])
    atol = INT8_BATCH_LOGIT_ATOL[which]
    assert _batched_equals_separate(clf, audios, monkeypatch, atol) == [1, 2, 3]
    if which == "bundled":  # the tolerance is far below what tells the segments apart
        alone = [clf.logits(a) for a in audios[:3]]
        assert np.abs(alone[0] - alone[2]).max() > 10 * atol
        assert [s.argmax() for s in clf.predict_batch(audios)] == [
            s.argmax() for s in map(clf.predict, audios)
        ]


def test_predict_batch_of_one_and_of_none(classifier: OnnxClassifier) -> None:
    (audio,) = _segments([8000])
    (scores,) = classifier.predict_batch([audio])
    np.testing.assert_array_equal(scores, classifier.predict(audio))
    assert classifier.predict_batch([]) == []


def test_short_segments_padded_alike_share_a_run(
    tiny_model_dir_b: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below min_samples each is padded to min_samples, as predict does: equal lengths then.
    classifier = OnnxClassifier(tiny_model_dir_b)
    short = classifier.manifest.input.min_samples
    assert short > 200
    audios = _segments([short - 100, short - 200])
    assert _batched_equals_separate(classifier, audios, monkeypatch) == [2]


def test_predict_batch_refuses_bad_audio_before_running(classifier: OnnxClassifier) -> None:
    with pytest.raises(ValueError, match="non-empty mono audio"):
        classifier.predict_batch([*_segments([8000]), np.zeros((2, 10), np.float32)])


def test_a_fixed_batch_graph_runs_segments_separately(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replace_graph(model_copy, _graph_bytes([1, "samples"], 6))
    edit_manifest(model_copy, input__normalize="none")
    clf = OnnxClassifier(model_copy)
    assert not clf.batching
    audios = _segments([16000, 16000, 16000])
    assert _batched_equals_separate(clf, audios, monkeypatch) == [1, 1, 1]


def test_predict_many_falls_back_to_predict() -> None:
    class OnlyPredict:
        manifest = read_manifest(BUNDLED_MODEL_DIR)

        def predict(self, audio: np.ndarray) -> np.ndarray:
            return np.full(6, audio.size, np.float32)

    out = predict_many(OnlyPredict(), _segments([3, 5]))
    assert [float(s[0]) for s in out] == [3.0, 5.0]
