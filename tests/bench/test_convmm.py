"""The conv-as-MatMul rewrite computes exactly what the convolution did, at every length."""

from __future__ import annotations

import pytest
import torch

from bench.convmm import ConvAsMatMul, rewrite_feature_encoder


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
    from training.tiny import tiny_model

    model = tiny_model(seed=3)
    audio = torch.randn(1, 5003)
    with torch.no_grad():
        before = model(input_values=audio).logits
        rewrite_feature_encoder(model)
        after = model(input_values=audio).logits
    layers = model.wav2vec2.feature_extractor.conv_layers
    assert not isinstance(layers[0], ConvAsMatMul)
    assert all(isinstance(layer, ConvAsMatMul) for layer in layers[1:])
    assert torch.allclose(before, after, atol=1e-5)
