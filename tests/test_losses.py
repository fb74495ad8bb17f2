"""Quality losses: values, padding, averaging, and gradients reaching the gate for every loss type."""

import pytest
import torch

from mygo.models import SelectMoeConfig, SelectMoeForCausalLM
from mygo.models.losses import layer_quality_loss, quality_loss, register_quality_loss
from tests.conftest import TINY_ARCH

LOSS_TYPES = ["sigmoid", "mse", "beta_moment_matching", "mean_variance_regularization", "custom:abs_centre"]


@register_quality_loss("abs_centre")
def abs_centre(good_ratio, mask):
    return (good_ratio - 0.5).abs()


def config(**fields) -> SelectMoeConfig:
    return SelectMoeConfig(**TINY_ARCH, **fields)


def test_per_token_losses_by_hand():
    good = torch.tensor([[0.2, 0.4, 0.9], [0.6, 0.8, 0.1]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    token_mean = (0.2 + 0.4 + 0.6 + 0.8 + 0.1) / 5
    sample_mean = ((0.2 + 0.4) / 2 + (0.6 + 0.8 + 0.1) / 3) / 2
    assert layer_quality_loss(good, mask, config()).item() == pytest.approx(token_mean)
    assert layer_quality_loss(good, mask, config(sample_wise_averaging=True)).item() == pytest.approx(sample_mean)
    mse = (0.04 + 0.16 + 0.36 + 0.64 + 0.01) / 5
    assert layer_quality_loss(good, mask, config(quality_loss_type="mse")).item() == pytest.approx(mse)


def test_distribution_losses_by_hand():
    good = torch.tensor([[0.2, 0.4, 0.6, 0.8]])
    mask = torch.ones_like(good)
    mean, var = 0.5, 0.05  # population variance of 0.2, 0.4, 0.6, 0.8
    beta = config(quality_loss_type="beta_moment_matching", beta_target_mean=0.3, beta_target_var=0.01, w_var=2.0)
    assert layer_quality_loss(good, mask, beta).item() == pytest.approx((mean - 0.3) ** 2 + 2.0 * (var - 0.01) ** 2)
    mvr = config(quality_loss_type="mean_variance_regularization", lambda_var=0.5)
    assert layer_quality_loss(good, mask, mvr).item() == pytest.approx((mean - 0.5) ** 2 - 0.5 * var)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("sample_wise", [False, True])
def test_padding_never_counts(loss_type, sample_wise):
    cfg = config(quality_loss_type=loss_type, sample_wise_averaging=sample_wise)
    scores = torch.randn(3, 6, 1, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 6)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    changed = scores.clone()
    changed[mask == 0] = 50.0  # whatever the gate says about padding
    torch.testing.assert_close(quality_loss([scores], mask, cfg), quality_loss([changed], mask, cfg))


def test_averaged_over_layers():
    cfg = config(quality_loss_type="mse")
    a, b = torch.zeros(2, 3, 1), torch.full((2, 3, 1), 2.0)
    mask = torch.ones(2, 3)
    expected = (
        layer_quality_loss(torch.sigmoid(a[..., 0]), mask, cfg)
        + layer_quality_loss(torch.sigmoid(b[..., 0]), mask, cfg)
    ) / 2
    torch.testing.assert_close(quality_loss([a, b], mask, cfg), expected)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_each_loss_alone_gives_the_gates_a_gradient(loss_type, padded_batch):
    torch.manual_seed(0)
    model = SelectMoeForCausalLM(config(quality_loss_type=loss_type, quality_gate_init_std=0.5))
    out = model(**padded_batch, output_router_logits=True)
    out.quality_loss.backward()
    for layer in model.model.layers:
        grad = layer.mlp.quality_gate.weight.grad
        assert grad is not None and grad.abs().sum() > 0, loss_type


def test_unregistered_custom_loss_is_an_error():
    with pytest.raises(ValueError, match="no custom function 'nope' is registered; registered: .*abs_centre"):
        SelectMoeForCausalLM(config(quality_loss_type="custom:nope"))


def test_debug_statistics_go_to_logging(caplog):
    cfg = config(quality_loss_debug=True)
    with caplog.at_level("INFO", logger="mygo.models.losses"):
        quality_loss([torch.zeros(1, 4, 1)], torch.ones(1, 4), cfg)
    assert "good_ratio mean=0.5000" in caplog.text
