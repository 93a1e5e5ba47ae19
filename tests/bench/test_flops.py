"""The analytic FLOP count agrees with PyTorch's counter and refuses too-short input."""

from __future__ import annotations

import pytest

from bench import flops
from bench.models import model_config


@pytest.mark.parametrize("samples", [1600, 16000, 24321])
def test_analytic_count_matches_torch_counter(samples: int) -> None:
    from training.models.tiny import tiny_model

    counted = flops.count(model_config("tiny"), samples)
    measured = flops.torch_flops(tiny_model(), samples)
    assert counted.total == pytest.approx(measured, rel=0.05)


def test_base_model_split_between_encoder_and_transformer() -> None:
    one_second = flops.count(model_config("base"), 16000)
    assert one_second.frames == 49
    assert 0.3 < one_second.feature_encoder / one_second.total < 0.4
    assert one_second.total == pytest.approx(13.8e9, rel=0.01)


def test_too_short_input_is_refused() -> None:
    with pytest.raises(ValueError, match="399 samples are too short"):
        flops.count(model_config("base"), 399)
