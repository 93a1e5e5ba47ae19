"""Fine-tune a Transformers audio classifier on a split manifest (plain PyTorch loop).

Output directory layout:
    config.json, model.safetensors, preprocessor_config.json   the best model (by val macro-F1)
    training_args.json                                        the options, data checksum, labels
    training_log.jsonl                                        one JSON object per log step / epoch
    metrics.json                                              the best epoch's validation metrics
    checkpoint/                                               last epoch's state, for --resume
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm import tqdm
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    get_linear_schedule_with_warmup,
)

from classifier.model import CANONICAL_LABELS, sha256_file
from training.corpus.augment import Augmenter, AugmentOptions, build_augmenter
from training.corpus.data import Audio, DataError, Example, label_set, load_audio, read_split, select
from training.corpus.data import zero_mean_unit_var as _normalize
from training.models.scoring import classification_metrics

log = logging.getLogger(__name__)

DEFAULT_BASE = "facebook/wav2vec2-base"
CHECKPOINT_DIR = "checkpoint"
ARGS_FILE = "training_args.json"
LOG_FILE = "training_log.jsonl"
METRICS_FILE = "metrics.json"
MIN_SAMPLES = 400  # one wav2vec2 frame; the server pads shorter segments to this


class TrainingError(ValueError):
    """Options or inputs that cannot be trained on; the message names the bad value."""


@dataclass
class TrainOptions:
    data: Path
    out_dir: Path
    base: str | None = DEFAULT_BASE
    from_config: Path | None = None
    init: Path | None = None
    epochs: int = 10
    batch_size: int = 8
    grad_accum_steps: int = 1
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_seconds: float = 6.0
    max_eval_seconds: float = 30.0
    freeze_feature_encoder: bool = True
    balance: Literal["loss", "sampler", "none"] = "loss"
    augment: bool = True
    augment_options: AugmentOptions = field(default_factory=AugmentOptions)
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every_steps: int = 20
    progress: bool = True

    def check(self) -> None:
        sources = [s for s in (self.from_config, self.init) if s is not None]
        if len(sources) > 1:
            raise TrainingError("give at most one of --from-config and --init")
        for name in ("epochs", "batch_size", "grad_accum_steps", "patience", "log_every_steps"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainingError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise TrainingError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_seconds * 16000 < MIN_SAMPLES:
            raise TrainingError(f"max_seconds is too short: {self.max_seconds}")
        if self.balance not in ("loss", "sampler", "none"):
            raise TrainingError(f"balance must be loss, sampler or none, got {self.balance!r}")

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        return encoded

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainOptions:
        raw = dict(raw)
        aug = raw.pop("augment_options", {})
        for key in ("noise_dir", "reverb_dir"):
            aug[key] = Path(aug[key]) if aug.get(key) else None
        for key in ("data", "out_dir"):
            raw[key] = Path(raw[key])
        for key in ("from_config", "init"):
            raw[key] = Path(raw[key]) if raw.get(key) else None
        return cls(**raw, augment_options=AugmentOptions(**aug))


@dataclass
class TrainResult:
    out_dir: Path
    labels: tuple[str, ...]
    best_epoch: int
    best_val: dict[str, Any]
    history: list[dict[str, Any]]


EpochCallback = Callable[[int, dict[str, Any]], None]


class ClipDataset(Dataset[tuple[Audio, int]]):
    """Clips as normalised float32 audio, randomly cropped and augmented when training."""

    def __init__(
        self,
        examples: Sequence[Example],
        label_ids: dict[str, int],
        sample_rate_hz: int,
        max_samples: int,
        normalize: bool,
        augmenter: Augmenter | None = None,
        random_crop: bool = False,
    ) -> None:
        self.examples = list(examples)
        self.label_ids = label_ids
        self.sample_rate_hz = sample_rate_hz
        self.max_samples = max_samples
        self.normalize = normalize
        self.augmenter = augmenter
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[Audio, int]:
        ex = self.examples[index]
        audio = self._crop(load_audio(ex.path, self.sample_rate_hz))
        if self.augmenter is not None:
            audio = self.augmenter(audio, self.sample_rate_hz)
        if self.normalize:
            audio = _normalize(audio)
        return audio, self.label_ids[ex.label]

    def _crop(self, audio: Audio) -> Audio:
        excess = audio.size - self.max_samples
        if excess <= 0:
            return audio
        start = int(np.random.randint(0, excess + 1)) if self.random_crop else excess // 2
        return audio[start : start + self.max_samples]


def collate(batch: Sequence[tuple[Audio, int]]) -> dict[str, torch.Tensor]:
    """Zero-pad to the longest clip (at least one wav2vec2 frame) with an attention mask."""
    length = max(MIN_SAMPLES, *(audio.size for audio, _ in batch))
    values = torch.zeros(len(batch), length)
    mask = torch.zeros(len(batch), length, dtype=torch.long)
    for row, (audio, _) in enumerate(batch):
        values[row, : audio.size] = torch.from_numpy(audio)
        mask[row, : max(audio.size, MIN_SAMPLES)] = 1
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return {"input_values": values, "attention_mask": mask, "labels": labels}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise TrainingError(f"unknown device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return device


def default_feature_extractor(sample_rate_hz: int = 16000) -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=1,
        sampling_rate=sample_rate_hz,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def load_feature_extractor(source: str | Path) -> Wav2Vec2FeatureExtractor:
    """The source's raw-waveform feature extractor, or wav2vec2's defaults if it has none."""
    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(source))
    except OSError:
        log.warning(
            "%s has no feature extractor config; using wav2vec2 defaults (16 kHz, normalised)",
            source,
        )
        return default_feature_extractor()
    if not isinstance(extractor, Wav2Vec2FeatureExtractor) or extractor.feature_size != 1:
        raise TrainingError(
            f"{source} uses {type(extractor).__name__}; only raw-waveform models "
            "(wav2vec2, HuBERT, WavLM, data2vec-audio …) can be trained and served"
        )
    return extractor


def _label_kwargs(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def load_checkpoint(source: str | Path) -> PreTrainedModel:
    try:
        model = AutoModelForAudioClassification.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"cannot load an audio-classification model from {str(source)!r}: {exc}"
        ) from exc
    return model.eval()  # type: ignore[no-any-return]


def model_labels(model: PreTrainedModel) -> tuple[str, ...]:
    id2label = cast(dict[int, str], model.config.id2label)
    return tuple(str(id2label[i]) for i in range(len(id2label)))


def build_model(
    options: TrainOptions, data_labels: tuple[str, ...]
) -> tuple[PreTrainedModel, Wav2Vec2FeatureExtractor, tuple[str, ...]]:
    """The model to fine-tune, its feature extractor and its label order."""
    if options.from_config is not None:
        return _from_config(options.from_config, data_labels)
    if options.init is not None:
        model = _pretrained(options.init)
        labels = model_labels(model)
        unknown = sorted(set(data_labels) - set(labels))
        if unknown:
            raise TrainingError(
                f"--init checkpoint {str(options.init)!r} has labels {list(labels)}; "
                f"the data has label(s) {unknown} it does not know"
            )
        return model, load_feature_extractor(options.init), labels
    if options.base is None:
        raise TrainingError("give a --base model, --from-config or --init")
    model = _pretrained(options.base, ignore_mismatched_sizes=True, **_label_kwargs(data_labels))
    return model, load_feature_extractor(options.base), data_labels


def _from_config(
    path: Path, labels: tuple[str, ...]
) -> tuple[PreTrainedModel, Wav2Vec2FeatureExtractor, tuple[str, ...]]:
    try:
        config = AutoConfig.from_pretrained(str(path), **_label_kwargs(labels))
        model = AutoModelForAudioClassification.from_config(config)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot build an audio classifier from {str(path)!r}: {exc}") from exc
    fe_dir = path if path.is_dir() else path.parent
    extractor = (
        load_feature_extractor(fe_dir)
        if (fe_dir / "preprocessor_config.json").is_file()
        else default_feature_extractor()
    )
    return model, extractor, labels


def _pretrained(source: str | Path, **kwargs: Any) -> PreTrainedModel:
    try:
        model: PreTrainedModel = AutoModelForAudioClassification.from_pretrained(
            str(source), **kwargs
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"cannot load an audio-classification model from {str(source)!r}: {exc}"
        ) from exc
    return model


def class_weights(examples: Sequence[Example], labels: Sequence[str]) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes present; 0 for absent classes."""
    counts = Counter(ex.label for ex in examples)
    present = [label for label in labels if counts[label] > 0]
    total = sum(counts.values())
    return torch.tensor(
        [total / (len(present) * counts[label]) if counts[label] else 0.0 for label in labels],
        dtype=torch.float32,
    )


class Trainer:
    """One training run: owns the model, optimiser, data loaders and output directory."""

    def __init__(self, options: TrainOptions, resume: bool = False) -> None:
        options.check()
        self.options = options
        self.out_dir = options.out_dir
        self.device = pick_device(options.device)
        examples = read_split(options.data)
        self.train_examples = select(examples, "train")
        self.val_examples = select(examples, "val")
        if not self.train_examples:
            raise TrainingError(f"{str(options.data)!r} has no rows with split=train")
        if not self.val_examples:
            raise TrainingError(
                f"{str(options.data)!r} has no rows with split=val (needed for early stopping)"
            )
        data_labels = label_set(examples, CANONICAL_LABELS)
        if len(data_labels) < 2:
            raise TrainingError(f"need at least two labels to train, found {list(data_labels)}")
        seed_everything(options.seed)
        # Randomly initialised layers produce denormal floats that slow CPU training ~10x.
        torch.set_flush_denormal(True)
        source = options.out_dir / CHECKPOINT_DIR if resume else None
        self.model, self.extractor, self.labels = self._model(data_labels, source)
        self.label_ids = {label: i for i, label in enumerate(self.labels)}
        self.model.to(self.device)  # type: ignore[arg-type]
        if options.freeze_feature_encoder:
            if options.from_config is not None:
                log.warning(
                    "the feature encoder of a model built from a config is random; freezing it "
                    "keeps it random (pass --unfreeze-feature-encoder to train it)"
                )
            self._freeze_feature_encoder()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=options.learning_rate,
            weight_decay=options.weight_decay,
        )
        batches = math.ceil(len(self.train_examples) / options.batch_size)
        self.steps_per_epoch = math.ceil(batches / options.grad_accum_steps)
        total = self.steps_per_epoch * options.epochs
        self.scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            self.optimizer, math.ceil(options.warmup_ratio * total), total
        )
        weights = class_weights(self.train_examples, self.labels)
        self.loss_fn = torch.nn.CrossEntropyLoss(
            weight=weights.to(self.device) if options.balance == "loss" else None
        )
        self.state: dict[str, Any] = {"epoch": 0, "best_f1": -1.0, "bad_epochs": 0, "history": []}
        if resume:
            self._load_checkpoint()

    def _model(
        self, data_labels: tuple[str, ...], checkpoint: Path | None
    ) -> tuple[PreTrainedModel, Wav2Vec2FeatureExtractor, tuple[str, ...]]:
        if checkpoint is None:
            return build_model(self.options, data_labels)
        model = AutoModelForAudioClassification.from_pretrained(str(checkpoint))
        return model, load_feature_extractor(checkpoint), model_labels(model)

    def _freeze_feature_encoder(self) -> None:
        freeze = getattr(self.model, "freeze_feature_encoder", None)
        if freeze is None:
            raise TrainingError(
                f"{type(self.model).__name__} has no convolutional feature encoder to freeze; "
                "pass --unfreeze-feature-encoder"
            )
        freeze()

    @property
    def normalize(self) -> bool:
        return bool(self.extractor.do_normalize)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.extractor.sampling_rate)

    def _train_loader(self, epoch: int) -> DataLoader[tuple[Audio, int]]:
        opts = self.options
        dataset = ClipDataset(
            self.train_examples,
            self.label_ids,
            self.sample_rate_hz,
            round(opts.max_seconds * self.sample_rate_hz),
            self.normalize,
            build_augmenter(opts.augment_options) if opts.augment else None,
            random_crop=True,
        )
        generator = torch.Generator().manual_seed(opts.seed * 1000 + epoch)
        sampler = None
        if opts.balance == "sampler":
            weights = class_weights(self.train_examples, self.labels)
            per_example = [float(weights[self.label_ids[ex.label]]) for ex in self.train_examples]
            sampler = WeightedRandomSampler(per_example, len(per_example), generator=generator)
        return DataLoader(
            dataset,
            batch_size=opts.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            collate_fn=collate,
            num_workers=opts.num_workers,
            worker_init_fn=_seed_worker,
        )

    def _eval_loader(self, examples: Sequence[Example]) -> DataLoader[tuple[Audio, int]]:
        dataset = ClipDataset(
            examples,
            self.label_ids,
            self.sample_rate_hz,
            round(self.options.max_eval_seconds * self.sample_rate_hz),
            self.normalize,
        )
        return DataLoader(
            dataset,
            batch_size=self.options.batch_size,
            collate_fn=collate,
            num_workers=self.options.num_workers,
        )

    def run(self, on_epoch_end: EpochCallback | None = None) -> TrainResult:
        opts = self.options
        if self.state["epoch"] == 0:
            self._prepare_out_dir()
        for epoch in range(self.state["epoch"], opts.epochs):
            if self.state["bad_epochs"] >= opts.patience:
                break
            seed_everything(opts.seed * 1000 + epoch)
            train_loss = self._train_epoch(epoch)
            val = self.validate(self.val_examples)
            record = {"event": "epoch", "epoch": epoch + 1, "train_loss": train_loss, **_brief(val)}
            self._log(record)
            self.state["history"].append(record)
            if val["macro_f1"] > self.state["best_f1"]:
                self.state.update(best_f1=val["macro_f1"], bad_epochs=0, best_epoch=epoch + 1)
                self._save_best(val)
            else:
                self.state["bad_epochs"] += 1
            self.state["epoch"] = epoch + 1
            self._save_checkpoint()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
        return self._result()

    def _train_epoch(self, epoch: int) -> float:
        self.model.train()
        losses: list[float] = []
        loader = self._train_loader(epoch)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.options.epochs}",
            disable=not self.options.progress,
        )
        accumulate = self.options.grad_accum_steps
        for index, batch in enumerate(bar):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = self.model(
                input_values=batch["input_values"], attention_mask=batch["attention_mask"]
            ).logits
            loss = self.loss_fn(logits, batch["labels"])
            (loss / accumulate).backward()
            if (index + 1) % accumulate == 0 or index + 1 == len(loader):
                self._step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if len(losses) % self.options.log_every_steps == 0:
                self._log(
                    {
                        "event": "step",
                        "epoch": epoch + 1,
                        "step": len(losses),
                        "loss": losses[-1],
                        "lr": self.scheduler.get_last_lr()[0],
                    }
                )
        return float(np.mean(losses))

    def _step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def validate(self, examples: Sequence[Example]) -> dict[str, Any]:
        self.model.eval()  # type: ignore[no-untyped-call]
        y_true: list[int] = []
        y_pred: list[int] = []
        losses: list[float] = []
        for batch in self._eval_loader(examples):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = self.model(
                input_values=batch["input_values"], attention_mask=batch["attention_mask"]
            ).logits
            losses.append(float(torch.nn.functional.cross_entropy(logits, batch["labels"])))
            y_true.extend(batch["labels"].tolist())
            y_pred.extend(logits.argmax(dim=-1).tolist())
        metrics = classification_metrics(y_true, y_pred, self.labels)
        metrics["loss"] = float(np.mean(losses))
        return metrics

    def _prepare_out_dir(self) -> None:
        if (self.out_dir / CHECKPOINT_DIR).exists():
            raise TrainingError(
                f"{str(self.out_dir)!r} already holds a training run; "
                "resume it or choose another --out"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        args = {
            "options": self.options.to_json(),
            "labels": list(self.labels),
            "data_sha256": sha256_file(self.options.data),
            "n_train": len(self.train_examples),
            "n_val": len(self.val_examples),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
        }
        (self.out_dir / ARGS_FILE).write_text(json.dumps(args, indent=2) + "\n", encoding="utf-8")

    def _save_best(self, val: dict[str, Any]) -> None:
        self.model.save_pretrained(self.out_dir)
        self.extractor.save_pretrained(self.out_dir)
        summary = {"best_epoch": self.state["best_epoch"], "labels": list(self.labels), "val": val}
        (self.out_dir / METRICS_FILE).write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )

    def _save_checkpoint(self) -> None:
        final = self.out_dir / CHECKPOINT_DIR
        tmp = self.out_dir / (CHECKPOINT_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        self.extractor.save_pretrained(tmp)
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
            tmp / "trainer_state.pt",
        )
        (tmp / "state.json").write_text(json.dumps(self.state, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    def _load_checkpoint(self) -> None:
        checkpoint = self.out_dir / CHECKPOINT_DIR
        saved = torch.load(
            checkpoint / "trainer_state.pt", map_location=self.device, weights_only=True
        )
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))

    def _log(self, record: dict[str, Any]) -> None:
        log.info("%s", record)
        with (self.out_dir / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _result(self) -> TrainResult:
        summary = json.loads((self.out_dir / METRICS_FILE).read_text(encoding="utf-8"))
        return TrainResult(
            out_dir=self.out_dir,
            labels=self.labels,
            best_epoch=int(summary["best_epoch"]),
            best_val=summary["val"],
            history=list(self.state["history"]),
        )


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {f"val_{k}": metrics[k] for k in ("loss", "accuracy", "macro_f1")}


def train(options: TrainOptions, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Train from ``options.base`` / ``from_config`` / ``init`` into ``options.out_dir``."""
    return Trainer(options).run(on_epoch_end)


def resume(out_dir: Path, on_epoch_end: EpochCallback | None = None) -> TrainResult:
    """Continue an interrupted run from its last epoch checkpoint, with its saved options."""
    args_path = out_dir / ARGS_FILE
    if not (out_dir / CHECKPOINT_DIR / "state.json").is_file() or not args_path.is_file():
        raise TrainingError(f"{str(out_dir)!r} holds no training checkpoint to resume")
    try:
        saved = json.loads(args_path.read_text(encoding="utf-8"))
        options = TrainOptions.from_json(saved["options"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TrainingError(f"{str(args_path)!r} is not a valid training_args file: {exc}") from exc
    if not options.data.is_file():
        raise DataError(f"{str(options.data)!r}, the run's split manifest, is gone; cannot resume")
    if sha256_file(options.data) != saved.get("data_sha256"):
        raise DataError(f"{str(options.data)!r} changed since the run started; cannot resume")
    options.out_dir = out_dir
    return Trainer(options, resume=True).run(on_epoch_end)
