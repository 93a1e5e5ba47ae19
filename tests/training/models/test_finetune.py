from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForAudioClassification

from training.corpus.data import DataError, Example, read_split, write_split
from training.models.finetune import (
    CHECKPOINT_DIR,
    Trainer,
    TrainingError,
    TrainOptions,
    class_weights,
    collate,
    resume,
    train,
)

pytestmark = pytest.mark.slow


def _options(data: Path, out: Path, config: Path, **overrides: Any) -> TrainOptions:
    base: dict[str, Any] = {
        "data": data,
        "out_dir": out,
        "base": None,
        "from_config": config,
        "epochs": 3,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "freeze_feature_encoder": False,
        "progress": False,
        "patience": 10,
        "log_every_steps": 1,
    }
    base.update(overrides)
    return TrainOptions(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_loss_drops_and_the_easy_task_is_learned(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    out = tmp_path / "run"
    result = train(_options(tone_split, out, tiny_config_file, epochs=4))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.05
    assert result.best_val["accuracy"] >= 0.9
    assert result.labels == ("happy", "sad")
    model = AutoModelForAudioClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "happy", 1: "sad"}
    assert (out / "preprocessor_config.json").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best_epoch"] == result.best_epoch
    assert saved["val"]["n"] == 12
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["event"] == "epoch"] == [1, 2, 3, 4]
    assert any(r["event"] == "step" for r in log)
    args = json.loads((out / "training_args.json").read_text())
    assert args["labels"] == ["happy", "sad"]
    assert args["n_train"] == 36


def test_resume_after_a_crash_matches_an_uninterrupted_run(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    straight = train(_options(tone_split, tmp_path / "a", tiny_config_file))

    def crash(epoch: int, record: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_options(tone_split, tmp_path / "b", tiny_config_file), on_epoch_end=crash)
    assert json.loads((tmp_path / "b" / CHECKPOINT_DIR / "state.json").read_text())["epoch"] == 1
    resumed = resume(tmp_path / "b")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a = _weights(tmp_path / "a" / CHECKPOINT_DIR)
    b = _weights(tmp_path / "b" / CHECKPOINT_DIR)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert straight.history[-1]["train_loss"] == pytest.approx(resumed.history[-1]["train_loss"])


def test_init_continues_from_a_checkpoint_and_checks_labels(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    first = tmp_path / "first"
    train(_options(tone_split, first, tiny_config_file, epochs=2))
    second = train(
        _options(tone_split, tmp_path / "second", None, from_config=None, init=first, epochs=1)
    )
    assert second.labels == ("happy", "sad")
    # The continued model starts where the first left off: its first epoch already scores.
    assert second.history[0]["val_accuracy"] >= 0.9

    examples = read_split(tone_split)
    odd = [
        Example(e.path, "angry" if e.label == "sad" else e.label, e.speaker, e.split)
        for e in examples
    ]
    other = write_split(tmp_path / "other.csv", odd)
    with pytest.raises(TrainingError, match=r"\['angry'\] it does not know"):
        train(_options(other, tmp_path / "third", None, from_config=None, init=first))


def test_frozen_feature_encoder_stays_put_from_a_local_base(
    tmp_path: Path, tone_split: Path
) -> None:
    from training.models.tiny import tiny_model

    base = tmp_path / "base"
    tiny_model(("a", "b", "c"), seed=3).save_pretrained(base)
    out = tmp_path / "run"
    train(
        _options(
            tone_split,
            out,
            None,
            from_config=None,
            base=str(base),
            epochs=1,
            freeze_feature_encoder=True,
        )
    )
    before, after = _weights(base), _weights(out)
    conv = [k for k in before if "feature_extractor.conv_layers" in k]
    assert conv
    for key in conv:
        torch.testing.assert_close(before[key], after[key], msg=key)
    encoder = [k for k in before if ".encoder.layers.0." in k and k.endswith("weight")]
    assert any(not torch.equal(before[k], after[k]) for k in encoder)
    # A new two-class head replaced the base's three-class one.
    assert after["classifier.weight"].shape[0] == 2


def test_sampler_balancing_and_no_augmentation_run(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    result = train(
        _options(
            tone_split,
            tmp_path / "run",
            tiny_config_file,
            epochs=1,
            balance="sampler",
            augment=False,
        )
    )
    assert len(result.history) == 1


@pytest.mark.parametrize(("accumulate", "steps"), [(1, 5), (3, 2)])
def test_gradient_accumulation_steps_the_optimiser_less_often(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path, accumulate: int, steps: int
) -> None:
    # 36 training clips in batches of 8 = 5 batches per epoch.
    trainer = Trainer(
        _options(
            tone_split, tmp_path / "run", tiny_config_file, epochs=1, grad_accum_steps=accumulate
        )
    )
    trainer.run()
    assert trainer.scheduler.last_epoch == steps


def test_early_stopping_stops_after_patience(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    # Learning rate so small nothing improves after the first epoch.
    result = train(
        _options(
            tone_split,
            tmp_path / "run",
            tiny_config_file,
            epochs=6,
            patience=1,
            learning_rate=1e-9,
            warmup_ratio=0.0,
        )
    )
    assert len(result.history) < 6
    assert result.best_epoch == 1


def test_refuses_to_overwrite_a_run_and_bad_options(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    out = tmp_path / "run"
    train(_options(tone_split, out, tiny_config_file, epochs=1))
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(_options(tone_split, out, tiny_config_file, epochs=1))
    with pytest.raises(TrainingError, match="epochs must be at least 1, got 0"):
        train(_options(tone_split, tmp_path / "x", tiny_config_file, epochs=0))
    with pytest.raises(TrainingError, match="balance must be"):
        train(_options(tone_split, tmp_path / "x", tiny_config_file, balance="oversample"))
    with pytest.raises(TrainingError, match="no training checkpoint"):
        resume(tmp_path / "nothing")


def test_refuses_data_without_val_rows_or_with_one_label(tmp_path: Path, tone_split: Path) -> None:
    examples = read_split(tone_split)
    no_val = write_split(tmp_path / "noval.csv", [e for e in examples if e.split != "val"])
    with pytest.raises(TrainingError, match="no rows with split=val"):
        train(_options(no_val, tmp_path / "x", tmp_path / "unused.json"))
    one = write_split(tmp_path / "one.csv", [e for e in examples if e.label == "happy"])
    with pytest.raises(TrainingError, match="at least two labels"):
        train(_options(one, tmp_path / "y", tmp_path / "unused.json"))


def test_resume_refuses_changed_data(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    def crash(epoch: int, record: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_options(tone_split, tmp_path / "run", tiny_config_file), on_epoch_end=crash)
    tone_split.write_text(tone_split.read_text() + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="changed since the run started"):
        resume(tmp_path / "run")


@pytest.mark.parametrize(
    ("config", "message"),
    [("{not json", "not a valid JSON"), ('{"hidden_size": 3}', "model_type")],
)
def test_bad_model_config_is_refused(
    tmp_path: Path, tone_split: Path, config: str, message: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(config)
    with pytest.raises(TrainingError, match=f"cannot build an audio classifier.*{message}"):
        train(_options(tone_split, tmp_path / "run", path))


def test_resume_refuses_a_damaged_args_file(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    def crash(epoch: int, record: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_options(tone_split, tmp_path / "run", tiny_config_file), on_epoch_end=crash)
    (tmp_path / "run" / "training_args.json").write_text('{"options": {"data": 1}}')
    with pytest.raises(TrainingError, match="not a valid training_args file"):
        resume(tmp_path / "run")


def test_corrupt_audio_in_training_data_names_the_file(
    tmp_path: Path, tone_split: Path, tiny_config_file: Path
) -> None:
    victim = read_split(tone_split)[0].path
    victim.write_bytes(b"RIFF....WAVEnonsense")
    with pytest.raises(DataError, match=victim.name):
        train(_options(tone_split, tmp_path / "run", tiny_config_file, epochs=1))


def test_class_weights_and_collate() -> None:
    examples = [Example(Path("x"), label, "", "train") for label in ("a", "a", "a", "b")]
    weights = class_weights(examples, ("a", "b", "c"))
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 4 / 2, 0.0]))
    batch = collate([(torch.ones(500).numpy(), 0), (torch.ones(100).numpy(), 1)])
    assert batch["input_values"].shape == (2, 500)
    assert batch["attention_mask"][1].sum() == 400  # padded to one wav2vec2 frame
    assert batch["labels"].tolist() == [0, 1]
