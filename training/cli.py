"""The training subcommands of ``emostream``: prepare, train, evaluate, export, import.

``register`` only builds parsers; torch and transformers are imported inside the command
functions, so ``emostream serve`` never loads them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_prepare(subparsers)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_export(subparsers)
    _add_import(subparsers)


def _corpus_arg(value: str) -> tuple[str, Path]:
    from training.corpus.corpora import LAYOUTS

    layout, sep, directory = value.partition("=")
    if not sep or layout not in LAYOUTS or not directory:
        raise argparse.ArgumentTypeError(
            f"expected LAYOUT=DIR with LAYOUT one of {', '.join(LAYOUTS)}, got {value!r}"
        )
    return layout, Path(directory)


def _add_prepare(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="read emotional-speech corpora and write a train/val/test split manifest (CSV)",
    )
    p.add_argument(
        "--corpus",
        action="append",
        type=_corpus_arg,
        required=True,
        metavar="LAYOUT=DIR",
        help="a corpus directory; LAYOUT is folders, ravdess, cremad, tess or savee (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True, help="split manifest to write (.csv)")
    p.add_argument(
        "--split",
        choices=("speaker", "random"),
        default="speaker",
        help="speaker-independent (default) or random (the prototype's leaky protocol)",
    )
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="RAW=LABEL",
        help="override the label mapping, e.g. calm=drop or surprised=surprised (repeatable)",
    )
    p.add_argument("--no-check-audio", action="store_true", help="skip opening every file")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from training.corpus.corpora import CorpusError, parse_mapping
    from training.corpus.prepare import prepare
    from training.corpus.splits import SplitError

    try:
        prepared = prepare(
            args.corpus,
            args.out,
            mode=args.split,
            test_fraction=args.test_fraction,
            val_fraction=args.val_fraction,
            seed=args.seed,
            mapping=parse_mapping(args.map),
            check_audio=not args.no_check_audio,
        )
    except (CorpusError, SplitError) as exc:
        return _fail(exc)
    summary = prepared.summary
    print(f"wrote {prepared.csv_path} ({len(prepared.examples)} clips, split={args.split})")
    for split, counts in summary["clips"].items():
        speakers = summary["speakers"][split]
        print(f"  {split:5s} {sum(counts.values()):6d} clips, {speakers} speakers: {counts}")
    if summary["dropped"]:
        print(f"  dropped by the label mapping: {summary['dropped']}")
    if summary["no_speaker"]:
        print(f"  {summary['no_speaker']} clips have no speaker id; each was split on its own")
    if prepared.problems:
        print(f"  {len(prepared.problems)} files not used, listed in {prepared.problems_path}:")
        for problem in prepared.problems[:20]:
            print(f"    {problem.path}: {problem.reason}")
        if len(prepared.problems) > 20:
            print(f"    … and {len(prepared.problems) - 20} more")
    return 0


def _add_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("train", help="fine-tune an audio classifier on a split manifest")
    p.add_argument("--data", type=Path, help="split manifest from `emostream prepare`")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--base",
        default="facebook/wav2vec2-base",
        help="hub id or local directory of a pretrained model (default facebook/wav2vec2-base)",
    )
    source.add_argument(
        "--from-config",
        type=Path,
        help="config.json (or its directory) for a randomly initialised model",
    )
    source.add_argument(
        "--init", type=Path, help="a fine-tuned checkpoint to continue from (same labels)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out with its saved options",
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--grad-accum",
        type=int,
        default=1,
        help="batches per optimiser step (effective batch size)",
    )
    p.add_argument("--lr", type=float, default=3e-5, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-seconds", type=float, default=6.0, help="random crop length for training")
    p.add_argument(
        "--patience", type=int, default=3, help="epochs without val macro-F1 gain before stopping"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=int, default=0, help="data loader processes")
    p.add_argument("--balance", choices=("loss", "sampler", "none"), default="loss")
    p.add_argument(
        "--unfreeze-feature-encoder",
        action="store_true",
        help="train the convolutional feature encoder too (needed when training from scratch)",
    )
    p.add_argument("--no-augment", action="store_true", help="no noise/gain augmentation")
    p.add_argument("--min-snr-db", type=float, default=5.0)
    p.add_argument("--max-snr-db", type=float, default=30.0)
    p.add_argument("--noise-dir", type=Path, help="folder of background noise recordings to mix in")
    p.add_argument(
        "--reverb-dir", type=Path, help="folder of room impulse responses to convolve with"
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from training.corpus.augment import AugmentOptions
    from training.corpus.data import DataError
    from training.models.finetune import TrainingError, TrainOptions, resume, train

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        if args.resume:
            result = resume(args.out)
        else:
            if args.data is None:
                raise TrainingError("--data is required (unless --resume)")
            options = TrainOptions(
                data=args.data,
                out_dir=args.out,
                base=None if args.from_config or args.init else args.base,
                from_config=args.from_config,
                init=args.init,
                epochs=args.epochs,
                batch_size=args.batch_size,
                grad_accum_steps=args.grad_accum,
                learning_rate=args.lr,
                weight_decay=args.weight_decay,
                warmup_ratio=args.warmup_ratio,
                max_seconds=args.max_seconds,
                patience=args.patience,
                seed=args.seed,
                device=args.device,
                num_workers=args.num_workers,
                balance=args.balance,
                freeze_feature_encoder=not args.unfreeze_feature_encoder,
                augment=not args.no_augment,
                augment_options=AugmentOptions(
                    min_snr_db=args.min_snr_db,
                    max_snr_db=args.max_snr_db,
                    noise_dir=args.noise_dir,
                    reverb_dir=args.reverb_dir,
                ),
                progress=not args.no_progress,
            )
            result = train(options)
    except (TrainingError, DataError, ValueError, OSError) as exc:
        return _fail(exc)
    val = result.best_val
    print(
        f"best epoch {result.best_epoch}: val accuracy {val['accuracy']:.3f}, "
        f"macro-F1 {val['macro_f1']:.3f}; model in {result.out_dir}"
    )
    return 0


def _add_evaluate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model directory or checkpoint: accuracy, macro-F1, noise robustness",
    )
    p.add_argument("model", type=Path, help="served model directory or Transformers checkpoint")
    p.add_argument("--data", type=Path, required=True, help="split manifest")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--out", type=Path, required=True, help="report directory to write")
    p.add_argument("--no-snr", action="store_true", help="clean audio only (no 20/10/5 dB runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    p.add_argument("--device", default="cpu", help="for checkpoints: cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from classifier.model import ModelError
    from training.corpus.data import DataError, read_split, select
    from training.models.evaluate import (
        SNR_LEVELS_DB,
        EvaluationError,
        evaluate,
        load_predictor,
        write_report,
    )
    from training.models.finetune import TrainingError
    from training.release.release import ReleaseError

    try:
        examples = select(read_split(args.data), args.split)
        predictor = load_predictor(args.model, args.device)
        evaluation = evaluate(
            predictor,
            examples,
            snr_levels_db=(None,) if args.no_snr else SNR_LEVELS_DB,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (DataError, EvaluationError, ModelError, ReleaseError, TrainingError) as exc:
        return _fail(exc)
    extra = {"model": str(args.model), "data": str(args.data), "split": args.split}
    write_report(evaluation, args.out, f"Evaluation of {args.model.name}", extra)
    print(
        f"accuracy {evaluation.clean['accuracy']:.3f}, macro-F1 {evaluation.clean['macro_f1']:.3f}"
    )
    for name, scores in evaluation.snr.items():
        print(f"  {name:>5s}: accuracy {scores['accuracy']:.3f}")
    print(f"report in {args.out}")
    return 0


def _release_arguments(p: argparse.ArgumentParser) -> None:
    from training.models.quantization import (
        ALTERNATIVE_QUANTIZATIONS,
        DEFAULT_QUANTIZATION,
        FALLBACK_QUANTIZATION,
        MIN_INT8_AGREEMENT,
        QUANTIZATIONS,
    )

    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    p.add_argument(
        "--quantize",
        choices=sorted(QUANTIZATIONS),
        default=DEFAULT_QUANTIZATION,
        help=f"int8 recipe (default {DEFAULT_QUANTIZATION}; see docs/training.md)",
    )
    p.add_argument(
        "--min-int8-agreement",
        type=float,
        default=MIN_INT8_AGREEMENT,
        metavar="FRACTION",
        help="below this int8-vs-fp32 top-1 agreement (clean or noisy) the export falls back to "
        f"the {FALLBACK_QUANTIZATION!r} recipe (default {MIN_INT8_AGREEMENT})",
    )
    p.add_argument(
        "--alternatives",
        type=_alternatives,
        default=(),
        metavar="RECIPES",
        help="int8 recipes (comma-separated, or all: "
        f"{','.join(ALTERNATIVE_QUANTIZATIONS)}) whose graphs are written beside the served "
        "one for the server to measure on its CPU (EMOSTREAM_GRAPH); one below "
        "--min-int8-agreement is left out (default: none)",
    )
    p.add_argument(
        "--eval",
        type=Path,
        help="split manifest: evaluate the export and measure int8 vs fp32 on it",
    )
    p.add_argument("--eval-split", choices=("train", "val", "test"), default="test")
    p.add_argument(
        "--calibrate",
        choices=("train", "val", "test"),
        metavar="SPLIT",
        help="fit temperature scaling on this split of the --eval data (normally val; "
        "without it the model is uncalibrated)",
    )
    p.add_argument("--name", help="model name shown to users (default: the source's name)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--no-progress", action="store_true")


def _alternatives(value: str) -> tuple[str, ...]:
    from training.models.quantization import ALTERNATIVE_QUANTIZATIONS, QUANTIZATIONS

    if value.strip() == "all":
        return ALTERNATIVE_QUANTIZATIONS
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = sorted(set(names) - set(QUANTIZATIONS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown recipe(s) {unknown or [value]}; expected all or some of "
            f"{', '.join(sorted(QUANTIZATIONS))}"
        )
    return names


def _add_export(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export", help="turn a fine-tuned checkpoint into a served model directory (ONNX, int8)"
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint directory from `emostream train`")
    _release_arguments(p)
    p.set_defaults(func=cmd_export, map_labels=False)


def _add_import(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "import",
        help="serve an audio-classification model fine-tuned elsewhere (hub id or directory)",
    )
    p.add_argument("checkpoint", help="hub id (e.g. superb/wav2vec2-base-superb-er) or directory")
    p.add_argument(
        "--keep-labels",
        action="store_true",
        help="keep the checkpoint's label names (default: map ang/hap/neu/… to canonical names)",
    )
    _release_arguments(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from classifier.model import ModelError
    from training.corpus.data import DataError
    from training.models.evaluate import EvaluationError
    from training.models.finetune import TrainingError
    from training.release.release import ReleaseError, ReleaseOptions, release

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    options = ReleaseOptions(
        precision=args.precision,
        quantization=args.quantize,
        min_int8_agreement=args.min_int8_agreement,
        alternatives=args.alternatives,
        eval_data=args.eval,
        eval_split=args.eval_split,
        name=args.name,
        force=args.force,
        progress=not args.no_progress,
        calibrate=args.calibrate,
    )
    map_labels = not getattr(args, "keep_labels", True)
    try:
        released = release(args.checkpoint, args.out, options, map_labels=map_labels)
    except (ReleaseError, DataError, EvaluationError, ModelError, TrainingError) as exc:
        return _fail(exc)
    manifest = released.manifest
    precision = manifest.graph.precision
    print(f"wrote {released.out_dir}: {manifest.name} version {manifest.version} ({precision})")
    print(f"  labels: {', '.join(manifest.labels)}")
    for graph in manifest.alternatives:
        print(f"  alternative {graph.variant}: agreement with fp32 {graph.agreement:.4f}")
    _print_json({k: v for k, v in manifest.metrics.items() if k not in ("eval_data",)})
    return 0


def _fail(exc: BaseException) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2))
