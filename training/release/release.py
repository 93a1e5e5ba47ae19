"""A Transformers checkpoint → a served model directory: export, verify, quantise, measure.

Used by ``emostream export`` (our own fine-tuned checkpoints) and ``emostream import``
(checkpoints fine-tuned by others, whose label names are mapped to ours where obvious).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from transformers import PreTrainedModel

from classifier.model import CANONICAL_LABELS, Calibration, GraphSpec, Manifest, sha256_file
from training.corpus.data import Split, load_audio, read_split, select, zero_mean_unit_var
from training.models import calibration as cal
from training.models.evaluate import (
    Evaluation,
    OnnxPredictor,
    TorchPredictor,
    add_noise,
    collect_logits,
    evaluate,
    plot_confusion,
    render_report,
)
from training.models.export import export_for, export_fp32, package_graph, probe_audio
from training.models.finetune import (
    ARGS_FILE,
    METRICS_FILE,
    TrainingError,
    load_checkpoint,
    load_feature_extractor,
    model_labels,
)
from training.models.quantization import (
    DEFAULT_QUANTIZATION,
    FALLBACK_QUANTIZATION,
    MAX_CALIBRATION_CLIPS,
    MIN_INT8_AGREEMENT,
    QUANTIZATIONS,
    first_conv_name,
    quantize_int8,
)
from training.models.scoring import agreement

log = logging.getLogger(__name__)

# fp32 ONNX must reproduce PyTorch's logits to this absolute tolerance (float32 rounding only).
FP32_TOLERANCE = 1e-3
# int8 agreement is measured on clean clips and on clips with white noise at this SNR.
NOISY_SNR_DB = 10.0

LABEL_ALIASES: dict[str, str] = {
    **{label: label for label in CANONICAL_LABELS},
    "ang": "angry",
    "anger": "angry",
    "hap": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neu": "neutral",
    "sadness": "sad",
    "fea": "fearful",
    "fear": "fearful",
    "dis": "disgust",
    "disgusted": "disgust",
}


class ReleaseError(ValueError):
    """A checkpoint that cannot become a served model; the message says why."""


@dataclass
class ReleaseOptions:
    precision: str = "int8"
    quantization: str = DEFAULT_QUANTIZATION
    eval_data: Path | None = None
    eval_split: Split = "test"
    name: str | None = None
    force: bool = False
    seed: int = 0
    progress: bool = False
    min_int8_agreement: float = MIN_INT8_AGREEMENT
    calibrate: Split | None = None  # the split of eval_data to fit the temperature on
    # int8 recipes whose graphs are written beside the served one, for the server to
    # choose from on its CPU (EMOSTREAM_GRAPH); those below min_int8_agreement are left out.
    alternatives: tuple[str, ...] = ()

    def check(self) -> None:
        unknown = sorted(set(self.alternatives) - set(QUANTIZATIONS))
        if unknown:
            raise ReleaseError(
                f"unknown alternative recipe(s) {unknown}; expected some of {sorted(QUANTIZATIONS)}"
            )
        if self.alternatives and self.precision != "int8":
            raise ReleaseError("alternatives are int8 graphs: they need precision int8")
        if self.calibrate is not None and self.eval_data is None:
            raise ReleaseError(
                f"calibrate={self.calibrate!r} needs eval data (--eval): the split manifest "
                "whose split the temperature is fitted on"
            )
        if self.calibrate is not None and self.calibrate == self.eval_split:
            raise ReleaseError(
                f"calibrate={self.calibrate!r} is the evaluated split (eval_split): fit the "
                "temperature on another split, normally val"
            )
        if self.precision not in ("int8", "fp32"):
            raise ReleaseError(f"precision must be int8 or fp32, got {self.precision!r}")
        if not 0.0 <= self.min_int8_agreement <= 1.0:
            raise ReleaseError(
                f"min_int8_agreement must be between 0 and 1, got {self.min_int8_agreement}"
            )
        if self.quantization not in QUANTIZATIONS:
            raise ReleaseError(
                f"unknown quantisation {self.quantization!r}; "
                f"expected one of {sorted(QUANTIZATIONS)}"
            )


@dataclass
class Released:
    out_dir: Path
    manifest: Manifest
    evaluation: Evaluation | None


def canonical_labels(labels: Sequence[str]) -> list[str]:
    """Map label names to the canonical ones where obvious; keep the rest (and any collision)."""
    mapped = [LABEL_ALIASES.get(label.strip().lower(), label) for label in labels]
    if len(set(mapped)) != len(mapped):
        log.warning(
            "label names %s collide after mapping to %s; keeping them as they are", labels, mapped
        )
        return list(labels)
    return mapped


def release(
    source: str | Path,
    out_dir: Path,
    options: ReleaseOptions | None = None,
    *,
    map_labels: bool = False,
    extra_provenance: dict[str, Any] | None = None,
) -> Released:
    """Export ``source`` into ``out_dir`` with a new version, evaluating it if asked."""
    options = options or ReleaseOptions()
    options.check()
    _check_out_dir(out_dir, options.force)
    try:
        model = load_checkpoint(source)
    except TrainingError as exc:
        raise ReleaseError(str(exc)) from exc
    extractor = load_feature_extractor(source)
    labels = list(model_labels(model))
    if map_labels:
        labels = canonical_labels(labels)
    examples = _eval_examples(options, labels)
    sample_rate = int(extractor.sampling_rate)
    normalize = bool(extractor.do_normalize)
    name = options.name or Path(str(source).rstrip("/")).name
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)

        def package(graph: Path, where: Path, precision: str, **extra: Any) -> Manifest:
            return package_graph(
                graph,
                where,
                name=name,
                labels=labels,
                precision=precision,
                sample_rate=sample_rate,
                normalize=normalize,
                **extra,
            )

        fp32_graph = export_fp32(model, tmp / "fp32.onnx", sample_rate)
        package(fp32_graph, tmp / "fp32", "fp32")
        fp32 = OnnxPredictor(tmp / "fp32")
        reference = TorchPredictor(model, labels, sample_rate, normalize)
        metrics: dict[str, Any] = {"fp32_vs_pytorch": check_fp32(reference, fp32)}
        staged = tmp / "final"
        graph, quant, evaluation = fp32_graph, None, None
        described: dict[str, Any] = {}
        if options.precision == "int8":
            static_clips = _CalibrationClips(options, examples, sample_rate, normalize)
            chosen = _choose_int8(model, fp32, examples, options, tmp, package, static_clips)
            graph, quant, evaluation = chosen.graph, chosen.record, chosen.evaluation
            metrics["int8_vs_fp32"] = chosen.agreement
            if options.alternatives:
                # The served graph is named too: the server reports and chooses by name.
                described = {
                    "variant": chosen.record["name"],
                    "agreement": _worst(chosen.agreement),
                }
                staged.mkdir(parents=True)
                alternatives, left_out = _write_alternatives(
                    model,
                    fp32,
                    examples,
                    options,
                    tmp,
                    package,
                    staged,
                    chosen.record["name"],
                    static_clips,
                )
                described["alternatives"] = alternatives
                quant = {**chosen.record, "alternatives_left_out": left_out}
            if static_clips.source is not None and quant is not None:
                quant = {**quant, "static_calibration_inputs": static_clips.source}
        package(graph, staged, options.precision, **described)
        served = OnnxPredictor(staged)
        if examples and evaluation is None:
            evaluation = evaluate(served, examples, seed=options.seed, progress=options.progress)
        calibration = _fit_calibration(served, options, labels)
        if evaluation is not None:
            metrics.update(evaluation.brief())
            metrics["eval_data"] = base_name(str(options.eval_data))
            metrics["eval_split"] = options.eval_split
            metrics["calibration"] = cal.metrics(
                _calibration_conditions(evaluation),
                cal.label_indices([ex.label for ex in examples], labels),
                None if calibration is None else calibration.temperature,
            )
        provenance = _provenance(source, options, quant, extra_provenance)
        manifest = package(
            graph,
            staged,
            options.precision,
            metrics=metrics,
            provenance=provenance,
            calibration=calibration,
            **described,
        )
        if evaluation is not None:
            _write_card(staged, manifest, evaluation, examples)
        _install(staged, out_dir)
    return Released(out_dir, manifest, evaluation)


def _fit_calibration(
    served: OnnxPredictor, options: ReleaseOptions, labels: Sequence[str]
) -> Calibration | None:
    """The temperature fitted on ``options.calibrate`` of the eval data, or None."""
    if options.calibrate is None or options.eval_data is None:
        return None
    examples = select(read_split(options.eval_data), options.calibrate)
    if not examples:
        raise ReleaseError(
            f"{str(options.eval_data)!r} has no rows with split={options.calibrate} to calibrate on"
        )
    try:
        y = cal.label_indices([ex.label for ex in examples], labels)
    except ValueError as exc:
        raise ReleaseError(f"calibration data: {exc}") from exc
    logits = collect_logits(served, examples, None, options.seed, options.progress)
    temperature = cal.fit_temperature(logits, y)
    log.info("temperature %.3f fitted on %d clips", temperature, len(examples))
    where = f"{options.calibrate} split of {options.eval_data} ({len(examples)} clips)"
    return Calibration(temperature=round(temperature, 4), fitted_on=where)


def _calibration_conditions(evaluation: Evaluation) -> dict[str, np.ndarray]:
    """The evaluated clips' logits, clean and with white noise at NOISY_SNR_DB if measured."""
    conditions = {"clean": evaluation.clean_logits}
    noisy = evaluation.logits_by_snr.get(f"{NOISY_SNR_DB:g}")
    if noisy is not None:
        conditions[f"{NOISY_SNR_DB:g} dB"] = noisy
    return conditions


def check_fp32(reference: TorchPredictor, fp32: OnnxPredictor) -> dict[str, float]:
    """PyTorch and the fp32 graph on the same inputs; refuse the export if they differ."""
    clips = probe_audio(fp32.sample_rate_hz)
    expected = np.stack([reference.logits(c) for c in clips])
    exported = np.stack([fp32.logits(c) for c in clips])
    result = agreement(expected, exported)
    if result["max_abs_logit_error"] > FP32_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise ReleaseError(
            f"fp32 ONNX logits differ from PyTorch by {result['max_abs_logit_error']:.3g}; "
            "the export is wrong"
        )
    return {"max_abs_logit_error": result["max_abs_logit_error"], "n": result["n"]}


class _CalibrationClips:
    """The clips a static recipe is calibrated on, as the graph takes them (normalised like
    the server does), read once when first needed: the ``--calibrate`` split of the eval
    data if given (clips the evaluation does not score), else the evaluated clips, else
    the probe clips. ``source`` says which, for the provenance."""

    def __init__(
        self, options: ReleaseOptions, examples: list[Any], sample_rate: int, normalize: bool
    ) -> None:
        self._options = options
        self._examples = examples
        self._sample_rate = sample_rate
        self._normalize = normalize
        self._clips: list[np.ndarray] | None = None
        self.source: str | None = None

    def clips_for(self, recipe: str) -> list[np.ndarray]:
        if not QUANTIZATIONS[recipe].static:
            return []
        if self._clips is None:
            self._clips = self._read()
        return self._clips

    def _read(self) -> list[np.ndarray]:
        options = self._options
        examples = self._examples
        self.source = f"{options.eval_split} split (the evaluated clips)"
        if options.calibrate is not None and options.eval_data is not None:
            examples = select(read_split(options.eval_data), options.calibrate)
            self.source = f"{options.calibrate} split"
        if examples:
            audio = [
                load_audio(e.path, self._sample_rate) for e in examples[:MAX_CALIBRATION_CLIPS]
            ]
        else:
            audio = probe_audio(self._sample_rate)
            self.source = "synthetic probe clips (no --eval data)"
        clips = [np.pad(a, (0, max(0, 400 - a.size))) for a in audio]
        return [zero_mean_unit_var(c) if self._normalize else c for c in clips]


@dataclass
class _Int8:
    graph: Path
    record: dict[str, Any]
    agreement: dict[str, Any]
    evaluation: Evaluation | None


def _choose_int8(
    model: PreTrainedModel,
    fp32: OnnxPredictor,
    examples: list[Any],
    options: ReleaseOptions,
    tmp: Path,
    package: Any,
    calibration: _CalibrationClips,
) -> _Int8:
    """The asked-for recipe if it is accurate enough, else the fallback (recorded, with why)."""
    candidates = [options.quantization]
    if options.quantization != FALLBACK_QUANTIZATION:
        candidates.append(FALLBACK_QUANTIZATION)
    rejected: list[dict[str, str]] = []
    for name in candidates:
        last = name == candidates[-1]
        try:
            source = export_for(model, tmp / f"fp32-{name}.onnx", name, fp32.sample_rate_hz)
        except ValueError as exc:
            if last:
                raise ReleaseError(f"cannot quantise with {name!r}: {exc}") from exc
            rejected.append({"recipe": name, "reason": str(exc)})
            continue
        rewrite_error = None
        if QUANTIZATIONS[name].conv_as_matmul:
            rewrite_error = _check_rewrite(fp32, source, tmp / f"fp32-{name}", package)
        graph = quantize_int8(source, tmp / f"{name}.onnx", name, calibration.clips_for(name))
        package(graph, tmp / name, "int8")
        served = OnnxPredictor(tmp / name)
        evaluation = None
        if examples:
            evaluation = evaluate(served, examples, seed=options.seed, progress=options.progress)
        result = _int8_agreement(fp32, served, examples, evaluation, options)
        worst = _worst(result)
        if worst >= options.min_int8_agreement or last:
            record = {**_quant_record(name, source), "rejected": rejected}
            if rewrite_error is not None:
                record["rewrite_max_abs_logit_error"] = rewrite_error
            return _Int8(graph, record, result, evaluation)
        rejected.append(
            {
                "recipe": name,
                "reason": f"int8 agrees with fp32 on {worst:.4f} of clips "
                f"(clean or {NOISY_SNR_DB:g} dB), below {options.min_int8_agreement}",
            }
        )
    raise AssertionError("unreachable: the last candidate always returns")


def _worst(result: dict[str, Any]) -> float:
    """The lower top-1 agreement with fp32 of the clean and the noisy clips."""
    return float(min(result["top1_agreement"], result["noisy"]["top1_agreement"]))


def _write_alternatives(
    model: PreTrainedModel,
    fp32: OnnxPredictor,
    examples: list[Any],
    options: ReleaseOptions,
    tmp: Path,
    package: Any,
    staged: Path,
    served: str,
    calibration: _CalibrationClips,
) -> tuple[tuple[GraphSpec, ...], list[dict[str, Any]]]:
    """Each recipe of ``options.alternatives`` (but the served one), as ``model-<recipe>.onnx``
    in ``staged`` with its measured agreement; those below ``min_int8_agreement`` or that
    cannot be made are left out, and returned with why for the provenance."""
    written: list[GraphSpec] = []
    left_out: list[dict[str, Any]] = []
    for name in dict.fromkeys(options.alternatives):
        if name == served:
            continue
        try:
            source = export_for(model, tmp / f"fp32-alt-{name}.onnx", name, fp32.sample_rate_hz)
        except ValueError as exc:
            left_out.append({"recipe": name, "reason": str(exc)})
            continue
        graph = quantize_int8(source, tmp / f"alt-{name}.onnx", name, calibration.clips_for(name))
        package(graph, tmp / f"alt-{name}", "int8")
        predictor = OnnxPredictor(tmp / f"alt-{name}")
        evaluation = None
        if examples:
            evaluation = evaluate(predictor, examples, seed=options.seed, progress=options.progress)
        worst = _worst(_int8_agreement(fp32, predictor, examples, evaluation, options))
        if worst < options.min_int8_agreement:
            left_out.append(
                {
                    "recipe": name,
                    "agreement": worst,
                    "reason": f"int8 agrees with fp32 on {worst:.4f} of clips "
                    f"(clean or {NOISY_SNR_DB:g} dB), below {options.min_int8_agreement}",
                }
            )
            log.info("alternative %s left out: agreement %.4f", name, worst)
            continue
        target = staged / f"model-{name}.onnx"
        shutil.copyfile(graph, target)
        written.append(
            GraphSpec(
                file=target.name,
                sha256=sha256_file(target),
                precision="int8",
                variant=name,
                agreement=worst,
            )
        )
        log.info("alternative %s written: agreement %.4f", name, worst)
    return tuple(written), left_out


def _check_rewrite(fp32: OnnxPredictor, source: Path, where: Path, package: Any) -> float:
    """The rewritten float graph computes what the plain one does (float rounding only)."""
    package(source, where, "fp32")
    rewritten = OnnxPredictor(where)
    clips = probe_audio(fp32.sample_rate_hz)
    expected = np.stack([fp32.logits(c) for c in clips])
    result = agreement(expected, np.stack([rewritten.logits(c) for c in clips]))
    if result["max_abs_logit_error"] > FP32_TOLERANCE * max(1.0, float(np.abs(expected).max())):
        raise ReleaseError(
            f"the convolutions rewritten as MatMul change the fp32 logits by "
            f"{result['max_abs_logit_error']:.3g}; the rewrite is wrong"
        )
    return result["max_abs_logit_error"]


def _int8_agreement(
    fp32: OnnxPredictor,
    served: OnnxPredictor,
    examples: list[Any],
    evaluation: Evaluation | None,
    options: ReleaseOptions,
) -> dict[str, Any]:
    """int8 against fp32 on the same clips, clean and with white noise at NOISY_SNR_DB."""
    if evaluation is not None:
        clean = collect_logits(fp32, examples, None, options.seed)
        noisy_fp32 = collect_logits(fp32, examples, NOISY_SNR_DB, options.seed)
        noisy_int8 = evaluation.logits_by_snr[f"{NOISY_SNR_DB:g}"]
        return {
            **agreement(clean, evaluation.clean_logits),
            "noisy": {**agreement(noisy_fp32, noisy_int8), "snr_db": NOISY_SNR_DB},
            "inputs": "eval set",
        }
    clips = probe_audio(fp32.sample_rate_hz)
    rng = np.random.default_rng(options.seed)
    noisy_clips = [add_noise(c, NOISY_SNR_DB, rng) for c in clips]

    def logits(predictor: OnnxPredictor, audio: list[np.ndarray]) -> np.ndarray:
        return np.stack([predictor.logits(c) for c in audio])

    return {
        **agreement(logits(fp32, clips), logits(served, clips)),
        "noisy": {
            **agreement(logits(fp32, noisy_clips), logits(served, noisy_clips)),
            "snr_db": NOISY_SNR_DB,
        },
        "inputs": "synthetic probe clips (no --eval data)",
    }


def _quant_record(name: str, fp32_graph: Path) -> dict[str, Any]:
    quant = QUANTIZATIONS[name]
    return {
        "name": quant.name,
        "op_types": list(quant.op_types),
        "nodes_excluded": [first_conv_name(fp32_graph)] if quant.exclude_first_conv else [],
        "per_channel": quant.per_channel,
        "conv_as_matmul": quant.conv_as_matmul,
        "weight_type": quant.weight_type,
        "reduce_range": quant.reduce_range,
        "static": quant.static,
    }


def _eval_examples(options: ReleaseOptions, labels: Sequence[str]) -> list[Any]:
    if options.eval_data is None:
        return []
    examples = select(read_split(options.eval_data), options.eval_split)
    if not examples:
        raise ReleaseError(
            f"{str(options.eval_data)!r} has no rows with split={options.eval_split}"
        )
    unknown = sorted({ex.label for ex in examples} - set(labels))
    if unknown:
        raise ReleaseError(
            f"evaluation data has label(s) {unknown} the model lacks ({list(labels)})"
        )
    return examples


def _provenance(
    source: str | Path,
    options: ReleaseOptions,
    quant: dict[str, Any] | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "source": base_name(str(source)),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [base_name(arg) for arg in sys.argv],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if quant is not None:
        record["quantization"] = quant
    source_dir = Path(str(source))
    training = _read_json(source_dir / ARGS_FILE)
    if training is not None:
        opts = training.get("options", {})
        record["training"] = {
            key: base_name(opts[key]) if isinstance(opts.get(key), str) else opts.get(key)
            for key in (
                "base",
                "from_config",
                "init",
                "data",
                "epochs",
                "learning_rate",
                "seed",
                "freeze_feature_encoder",
                "augment",
                "balance",
            )
        }
        record["training"]["data_sha256"] = training.get("data_sha256")
    val = _read_json(source_dir / METRICS_FILE)
    if val is not None and "val" in val:
        record["validation"] = {
            "best_epoch": val.get("best_epoch"),
            "accuracy": val["val"].get("accuracy"),
            "macro_f1": val["val"].get("macro_f1"),
        }
    return {**record, **(extra or {})}


def base_name(value: str) -> str:
    """A local path as its base name (provenance must not name users' directories); other
    text, such as a Hugging Face model id, as it is."""
    path = Path(value)
    return path.name if path.is_absolute() or path.exists() else value


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("ignoring unreadable %s", path)
        return None
    return data if isinstance(data, dict) else None


def _write_card(
    staged: Path, manifest: Manifest, evaluation: Evaluation, examples: Sequence[Any]
) -> None:
    title = f"{manifest.name} {manifest.version} ({manifest.graph.precision})"
    plot_confusion(
        evaluation.clean["confusion"], evaluation.labels, staged / "confusion.png", title
    )
    extra = {
        "evaluation data": manifest.metrics.get("eval_data"),
        "split": manifest.metrics.get("eval_split"),
    }
    temperature = None if manifest.calibration is None else manifest.calibration.temperature
    cal.plot_for_card(
        _calibration_conditions(evaluation),
        cal.label_indices([ex.label for ex in examples], evaluation.labels),
        temperature,
        staged / "reliability.png",
        f"{manifest.name}: reliability on the {manifest.metrics.get('eval_split')} split",
    )
    fitted_on = "" if manifest.calibration is None else manifest.calibration.fitted_on
    card = render_report(evaluation, title, extra)
    card += "\n".join(cal.card_lines(manifest.metrics.get("calibration"), fitted_on)) + "\n"
    (staged / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ReleaseError(f"{str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ReleaseError(
            f"{str(out_dir)!r} is not empty; export to a new directory "
            "(or pass --force to replace it)"
        )


def _install(staged: Path, out_dir: Path) -> None:
    """Move the finished directory into place; a replaced one is removed only afterwards."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    shutil.copytree(staged, incoming, dirs_exist_ok=True)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{incoming.name}")
        out_dir.rename(old)
    incoming.rename(out_dir)
    if old is not None:
        shutil.rmtree(old)
