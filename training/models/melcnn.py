"""A small log-mel CNN emotion classifier whose ONNX graph reads the raw waveform.

The front end is part of the network, with fixed weights: a strided ``Conv1d`` whose kernels
are Hann-windowed cosines and sines (a short-time DFT), the power spectrum, a mel filterbank
matrix and a logarithm. So the exported graph has the same contract as the wav2vec2 models
(``float32[batch, samples]`` at 16 kHz, normalised to zero mean and unit variance by the
server; ``float32[batch, 6]`` logits) and the server loads its directory unchanged.

After the front end: four convolution blocks (3x3 conv, batch norm, ReLU, max-pool), then
mean and standard deviation over time of every channel and band (statistics pooling: the
spread of the spectrum over time carries pitch range, loudness variation and rate), and a
two-layer head. Training is in ``train_melcnn``; ``export_onnx`` writes the graph.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from pcm.format import PIPELINE_RATE_HZ
from training.corpus.data import Example, load_audio, zero_mean_unit_var
from training.models.scoring import classification_metrics

SAMPLE_RATE_HZ = PIPELINE_RATE_HZ


@dataclass(frozen=True)
class MelCnnConfig:
    n_fft: int = 512  # 32 ms window: harmonics of low voices are resolved
    hop: int = 320  # 20 ms frames
    n_mels: int = 64
    f_min_hz: float = 50.0
    f_max_hz: float = 8000.0
    # Added to every band's power before the log: about 33 dB below the loudest tenth of the
    # bands of a unit-variance speech segment (near their median), like a constant noise floor,
    # so digital silence (pauses, padding) reads as quiet, not as extreme outliers that
    # dominate the pooled statistics.
    floor: float = 1e-2
    channels: int = 64
    embedding: int = 96
    hidden: int = 96
    dropout: float = 0.3
    labels: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust")

    @property
    def min_samples(self) -> int:
        """Shortest input (zero-padded by the server): five frames."""
        return self.n_fft + 4 * self.hop


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(config: MelCnnConfig) -> npt.NDArray[np.float32]:
    """Triangular filters on the HTK mel scale, ``[n_fft // 2 + 1, n_mels]``, area-normalised."""
    bins = config.n_fft // 2 + 1
    freqs = np.linspace(0.0, SAMPLE_RATE_HZ / 2, bins)
    edges = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.array(config.f_min_hz)),
            _hz_to_mel(np.array(config.f_max_hz)),
            config.n_mels + 2,
        )
    )
    bank = np.zeros((bins, config.n_mels))
    for m in range(config.n_mels):
        low, centre, high = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - low) / (centre - low)
        falling = (high - freqs) / (high - centre)
        bank[:, m] = np.clip(np.minimum(rising, falling), 0.0, None) * 2.0 / (high - low)
    return bank.astype(np.float32)


class LogMel(nn.Module):
    """Waveform ``[B, N]`` → log-mel ``[B, n_mels, frames]``, with fixed (buffer) weights."""

    dft: torch.Tensor
    mel: torch.Tensor

    def __init__(self, config: MelCnnConfig) -> None:
        super().__init__()
        n = np.arange(config.n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.n_fft)
        k = np.arange(config.n_fft // 2 + 1)[:, None]
        angle = 2 * np.pi * k * n[None, :] / config.n_fft
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
        self.register_buffer("dft", torch.from_numpy(kernels.astype(np.float32))[:, None, :])
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(config)))
        self.hop = config.hop
        self.bins = config.n_fft // 2 + 1
        self.floor = config.floor

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(wave[:, None, :], self.dft, stride=self.hop)  # [B, 2F, T]
        real, imag = spec[:, : self.bins], spec[:, self.bins :]
        power = real * real + imag * imag  # [B, F, T]
        mel = torch.matmul(power.transpose(1, 2), self.mel)  # [B, T, M]
        return torch.log(mel + self.floor).transpose(1, 2)  # [B, M, T]


def _block(inputs: int, outputs: int, kernel: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(
            inputs, outputs, kernel, dilation=dilation, padding=dilation * (kernel // 2), bias=False
        ),
        nn.BatchNorm1d(outputs),
        nn.ReLU(),
    )


class MelCnn(nn.Module):
    """Log-mel front end, a time-delay (dilated 1-D convolution) stack over the mel bands,
    mean and standard-deviation pooling over time, and a two-layer head."""

    def __init__(self, config: MelCnnConfig) -> None:
        super().__init__()
        self.config = config
        self.front = LogMel(config)
        self.input_norm = nn.BatchNorm1d(config.n_mels)
        width = config.channels
        self.body = nn.Sequential(
            _block(config.n_mels, width, 5, 1),
            _block(width, width, 3, 2),
            _block(width, width, 3, 3),
            _block(width, config.embedding, 1, 1),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(2 * config.embedding, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.labels)),
        )

    def classify(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.body(self.input_norm(logmel))  # [B, C, T]
        mean = x.mean(dim=2)
        std = torch.sqrt(((x - mean[:, :, None]) ** 2).mean(dim=2) + 1e-5)
        return self.head(torch.cat([mean, std], dim=1))  # type: ignore[no-any-return]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.classify(self.front(wave))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    crop_frames: tuple[int, int] = (50, 120)  # 1-2.4 s, never longer than the batch's clips
    noise_probability: float = 0.4  # on top of the corpus's own noisy training clips
    snr_range_db: tuple[float, float] = (0.0, 30.0)
    freq_mask_bands: int = 8
    time_mask_frames: int = 15
    seed: int = 0
    threads: int = 2


def log_mel_numpy(clip: npt.NDArray[np.float32], config: MelCnnConfig) -> npt.NDArray[np.float32]:
    """The front end (``LogMel``) computed with an FFT: the same numbers, much faster on a CPU
    than the graph's DFT convolution. ``[n_mels, frames]``."""
    if clip.size < config.n_fft:
        clip = np.pad(clip, (0, config.n_fft - clip.size))
    frames = 1 + (clip.size - config.n_fft) // config.hop
    index = np.arange(config.n_fft)[None, :] + config.hop * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)
    spectrum = np.fft.rfft(clip.astype(np.float64)[index] * window, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ mel_filterbank(config).astype(np.float64)
    return np.log(mel + config.floor).T.astype(np.float32)


def log_mels(
    clips: Sequence[npt.NDArray[np.float32]], config: MelCnnConfig, desc: str, progress: bool
) -> list[torch.Tensor]:
    """The front end applied once to each normalised clip (it has no trainable weights)."""
    return [
        torch.from_numpy(log_mel_numpy(clip, config))
        for clip in tqdm(clips, desc=f"log-mel {desc}", leave=False, disable=not progress)
    ]


def load_clips(
    examples: Sequence[Example], desc: str, progress: bool = True
) -> list[npt.NDArray[np.float32]]:
    """Each clip normalised to zero mean and unit variance, as the server does."""
    return [
        zero_mean_unit_var(load_audio(ex.path, SAMPLE_RATE_HZ))
        for ex in tqdm(examples, desc=f"load {desc}", leave=False, disable=not progress)
    ]


def _coloured_noise(
    samples: int, slope: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Unit-variance noise whose power falls by ``slope`` x 6 dB per octave (0 white, 1 brown)."""
    spectrum = rng.standard_normal(samples // 2 + 1) + 1j * rng.standard_normal(samples // 2 + 1)
    freqs = np.maximum(np.fft.rfftfreq(samples), 1.0 / samples)
    noise = np.fft.irfft(spectrum / freqs**slope, n=samples)
    out: npt.NDArray[np.float32] = (noise / (noise.std() + 1e-12)).astype(np.float32)
    return out


def noise_bank(
    config: MelCnnConfig, rng: np.random.Generator, seconds: float = 20.0
) -> list[torch.Tensor]:
    """Mel power frames ``[M, T]`` of unit-variance white, pink and brown noise."""
    samples = int(seconds * SAMPLE_RATE_HZ)
    return [
        torch.from_numpy(np.exp(log_mel_numpy(_coloured_noise(samples, slope, rng), config)))
        for slope in (0.0, 0.5, 1.0)
    ]


def training_batch(
    feats: Sequence[torch.Tensor],
    indices: Sequence[int],
    config: TrainConfig,
    noise: Sequence[torch.Tensor],
    rng: np.random.Generator,
) -> torch.Tensor:
    """Random crops of one length (no padding), noise mixed in the mel power domain, masks.

    Noise of power ``p`` relative to the unit-variance clip adds ``p`` times a noise
    recording's mel power; the server's renormalisation of the noisy clip divides by
    ``1 + p``. Cross terms between speech and noise average out over a mel band.
    """
    shortest = min(int(feats[i].shape[1]) for i in indices)
    length = min(int(rng.integers(config.crop_frames[0], config.crop_frames[1] + 1)), shortest)
    rows = []
    for index in indices:
        feat = feats[index]
        start = int(rng.integers(feat.shape[1] - length + 1))
        crop = feat[:, start : start + length]
        if rng.random() < config.noise_probability:
            power = 10.0 ** (-rng.uniform(*config.snr_range_db) / 10.0)
            bank = noise[int(rng.integers(len(noise)))]
            at = int(rng.integers(bank.shape[1] - length + 1))
            mixed = torch.exp(crop) + power * bank[:, at : at + length]
            crop = torch.log(mixed) - math.log(1.0 + power)
        crop = crop.clone()
        width = int(rng.integers(config.freq_mask_bands + 1))
        band = int(rng.integers(crop.shape[0] - width + 1))
        crop[band : band + width] = crop.mean()
        width = int(rng.integers(min(config.time_mask_frames, length // 4) + 1))
        frame = int(rng.integers(length - width + 1))
        crop[:, frame : frame + width] = crop.mean()
        rows.append(crop)
    return torch.stack(rows)


@torch.no_grad()
def predict_logits(model: MelCnn, feats: Sequence[torch.Tensor]) -> npt.NDArray[np.float32]:
    model.eval()
    return np.stack([model.classify(f[None])[0].numpy() for f in feats]).astype(np.float32)


@dataclass
class TrainResult:
    model: MelCnn
    best_epoch: int
    best_val: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float


def train_melcnn(
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    model_config: MelCnnConfig,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train from random initialisation; keep the epoch with the best validation macro-F1."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    labels = model_config.labels
    ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted({ex.label for ex in [*train_examples, *val_examples]} - set(labels))
    if unknown:
        raise ValueError(f"label(s) {unknown} are not among the model's {list(labels)}")
    if not train_examples or not val_examples:
        raise ValueError("training needs train and val examples")
    model = MelCnn(model_config)
    started = time.monotonic()
    train_feats = log_mels(
        load_clips(train_examples, "train", progress), model_config, "train", progress
    )
    val_feats = log_mels(load_clips(val_examples, "val", progress), model_config, "val", progress)
    noise = noise_bank(model_config, np.random.default_rng([config.seed, 99]))
    y_train = torch.tensor([ids[ex.label] for ex in train_examples])
    y_val = [ids[ex.label] for ex in val_examples]
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_feats) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    best: tuple[float, int, dict[str, Any], dict[str, torch.Tensor]] | None = None
    history = []
    for epoch in range(1, config.epochs + 1):
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(train_feats))
        model.train()
        total = 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch}/{config.epochs}",
            leave=False,
            disable=not progress,
        )
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size].tolist()
            logits = model.classify(training_batch(train_feats, idx, config, noise, rng))
            loss = loss_fn(logits, y_train[idx])
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
        predicted = predict_logits(model, val_feats).argmax(axis=1).tolist()
        val = classification_metrics(y_val, predicted, labels)
        row = {
            "epoch": epoch,
            "loss": total / steps_per_epoch,
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "seconds": time.monotonic() - started,
        }
        history.append(row)
        log(
            f"epoch {epoch}: loss {row['loss']:.3f}, val accuracy {val['accuracy']:.3f}, "
            f"macro-F1 {val['macro_f1']:.3f} ({row['seconds'] / 60:.1f} min)"
        )
        if best is None or val["macro_f1"] > best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (val["macro_f1"], epoch, val, state)
    assert best is not None
    model.load_state_dict(best[3])
    model.eval()
    return TrainResult(model, best[1], best[2], history, time.monotonic() - started)


# ---- export ---------------------------------------------------------------------------------


def export_onnx(model: MelCnn, path: Path) -> Path:
    """fp32 ONNX with dynamic batch and length axes (opset 17), front end included."""
    model = model.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter (as for wav2vec2 in training/models/export.py) warns it is legacy.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, SAMPLE_RATE_HZ),),
            str(path),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def front_end_nodes(graph: Path) -> list[str]:
    """Names of the front end's nodes (everything up to the log): never quantised, since the
    power spectrum's dynamic range is far beyond int8."""
    import onnx

    model = onnx.load(str(graph))
    names = []
    for node in model.graph.node:
        names.append(node.name)
        if node.op_type == "Log":
            return names
    raise ValueError(f"{str(graph)!r} has no Log node: not a MelCnn graph")


def config_dict(config: MelCnnConfig | TrainConfig) -> dict[str, Any]:
    return asdict(config)
