"""The conv-as-MatMul rewrite computes exactly what the convolution did, at every length."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from training.models.convmm import ConvAsMatMul, rewrite_feature_encoder


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2), (1, 1), (4, 3)])
@pytest.mark.parametrize("length", [7, 8, 31, 100])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_conv1d(kernel: int, stride: int, length: int, bias: bool) -> None:
    torch.manual_seed(kernel * 100 + length)
    conv = torch.nn.Conv1d(5, 6, kernel, stride=stride, bias=bias)
    x = torch.randn(2, 5, length)
    rewritten = ConvAsMatMul(conv, torch.nn.GELU())
    with torch.no_grad():
        expected = torch.nn.functional.gelu(conv(x))
        assert torch.allclose(rewritten(x), expected, atol=1e-5)


def test_refuses_padded_or_grouped_convolutions() -> None:
    with pytest.raises(ValueError, match="only plain unpadded"):
        ConvAsMatMul(torch.nn.Conv1d(4, 4, 3, padding=1), torch.nn.GELU())
    with pytest.raises(ValueError, match="only plain unpadded"):
        ConvAsMatMul(torch.nn.Conv1d(4, 4, 3, groups=2), torch.nn.GELU())


def test_rewritten_model_gives_the_same_logits() -> None:
    from training.models.tiny import tiny_model

    model = tiny_model(seed=3)
    audio = torch.randn(1, 5003)
    with torch.no_grad():
        before = model(input_values=audio).logits
        rewritten = rewrite_feature_encoder(model)
        after = rewritten(input_values=audio).logits
        assert torch.equal(model(input_values=audio).logits, before)  # the original is untouched
    assert not any(
        isinstance(layer, ConvAsMatMul) for layer in model.wav2vec2.feature_extractor.conv_layers
    )
    layers = rewritten.wav2vec2.feature_extractor.conv_layers
    assert not isinstance(layers[0], ConvAsMatMul)
    assert all(isinstance(layer, ConvAsMatMul) for layer in layers[1:])
    assert torch.allclose(before, after, atol=1e-5)


def test_layer_norm_encoders_are_rewritten_exactly() -> None:
    from transformers import Wav2Vec2ForSequenceClassification

    from training.models.tiny import tiny_config

    config = tiny_config()
    config.feat_extract_norm = "layer"
    config.do_stable_layer_norm = True
    torch.manual_seed(4)
    model = Wav2Vec2ForSequenceClassification(config).eval()
    audio = torch.randn(2, 7001)
    with torch.no_grad():
        expected = model(input_values=audio).logits
        rewritten = rewrite_feature_encoder(model)
        layers = rewritten.wav2vec2.feature_extractor.conv_layers
        assert all(layer.norm is not None for layer in layers[1:])
        assert torch.allclose(rewritten(input_values=audio).logits, expected, atol=1e-5)


def test_a_model_without_a_conv_encoder_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Linear has no wav2vec2-style convolutional"):
        rewrite_feature_encoder(torch.nn.Linear(2, 2))


def test_write_model_dir_falls_back_for_a_model_it_cannot_rewrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from classifier.inference import OnnxClassifier
    from training.models.export import write_model_dir

    class Waveform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(1, 2)

        def forward(self, input_values: torch.Tensor) -> Any:
            logits = self.proj(input_values.mean(dim=1, keepdim=True))
            return type("Out", (), {"logits": logits})()

    write_model_dir(Waveform().eval(), tmp_path / "m", name="w", labels=["happy", "sad"])
    assert "quantising with 'matmul' instead" in caplog.text
    scores = OnnxClassifier(tmp_path / "m").predict(np.zeros(16000, dtype=np.float32))
    assert scores.shape == (2,)
