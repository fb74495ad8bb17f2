"""The Select-MoE model: gate maths, router outputs, trash experts, config, Auto* loading."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from mygo.models import (
    SelectMoeConfig,
    SelectMoeForCausalLM,
    convert_olmoe_to_select_moe,
    register_select_moe,
    register_trash_expert,
)
from mygo.models.modeling_select_moe import noise_trash
from tests.conftest import TINY_ARCH


def make_model(**select) -> SelectMoeForCausalLM:
    torch.manual_seed(0)
    return SelectMoeForCausalLM(SelectMoeConfig(**TINY_ARCH, **select)).eval()


def test_router_logits_one_dict_per_layer(padded_batch):
    model = make_model()
    out = model(**padded_batch, output_router_logits=True)
    batch, seq = padded_batch["input_ids"].shape
    assert isinstance(out.router_logits, list) and len(out.router_logits) == TINY_ARCH["num_hidden_layers"]
    for layer in out.router_logits:
        assert set(layer) == {"quality_score", "moe_logits"}
        assert layer["quality_score"].shape == (batch, seq, 1)
        assert layer["moe_logits"].shape == (batch * seq, TINY_ARCH["num_experts"])
    assert model(**padded_batch).router_logits is None


def test_quality_gate_shape_and_init():
    model = make_model(quality_gate_init_mean=0.3, quality_gate_init_std=0.05)
    weights = torch.cat([layer.mlp.quality_gate.weight.flatten() for layer in model.model.layers])
    gate = model.model.layers[0].mlp.quality_gate
    assert gate.weight.shape == (1, TINY_ARCH["hidden_size"]) and gate.bias is None
    assert weights.mean().item() == pytest.approx(0.3, abs=0.03)
    assert weights.std().item() == pytest.approx(0.05, rel=0.3)


def test_output_mixes_moe_and_trash_by_good_ratio():
    model = make_model(quality_gate_init_std=1.0)
    block = model.model.layers[0].mlp
    hidden = torch.randn(2, 5, TINY_ARCH["hidden_size"])
    mixed, router = block(hidden)
    model.config.quality_gate_bypass = True
    moe_only, _ = block(hidden)
    good_ratio = torch.sigmoid(router["quality_score"])
    assert not torch.allclose(good_ratio, torch.ones_like(good_ratio))
    # zero trash: y = good_ratio * moe(h)
    torch.testing.assert_close(mixed, good_ratio * moe_only)


def test_bypass_makes_good_ratio_exactly_one(olmoe_model, padded_batch):
    """Bypassed, every layer outputs the MoE alone (good_ratio exactly 1): the source OLMoE's logits."""
    model = convert_olmoe_to_select_moe(olmoe_model, quality_gate_init_mean=-5.0, quality_gate_init_std=0.0).eval()
    with torch.no_grad():
        source = olmoe_model(**padded_batch).logits
        gated = model(**padded_batch).logits
        model.config.quality_gate_bypass = True
        bypassed = model(**padded_batch).logits
    torch.testing.assert_close(bypassed, source, rtol=0, atol=1e-6)
    assert (gated - source).abs().max() > 1e-3  # and without it the gate (good_ratio ~ 0.007) does change them


def test_noise_trash_matches_per_token_statistics():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4096) * torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1) + 3.0
    noise = noise_trash(hidden)
    assert noise.shape == hidden.shape
    torch.testing.assert_close(noise.mean(-1), hidden.mean(-1), atol=0.2, rtol=0)
    torch.testing.assert_close(noise.std(-1), hidden.std(-1), atol=0.0, rtol=0.05)
    assert not torch.allclose(noise, hidden)


def test_custom_trash_expert_is_used():
    @register_trash_expert("negate")
    def negate(hidden):
        return -hidden

    model = make_model(trash_expert_mode="custom:negate", quality_gate_init_std=0.0)
    block = model.model.layers[0].mlp
    hidden = torch.randn(1, 4, TINY_ARCH["hidden_size"])
    mixed, _ = block(hidden)
    model.config.quality_gate_bypass = True
    moe_only, _ = block(hidden)
    torch.testing.assert_close(mixed, 0.5 * moe_only - 0.5 * hidden)  # gate weights 0 -> good_ratio 0.5


def test_unknown_trash_mode_lists_valid_ones():
    with pytest.raises(Exception, match=r"trash_expert_mode='bogus'.*'zero', 'noise'"):
        SelectMoeConfig(**TINY_ARCH, trash_expert_mode="bogus")
    with pytest.raises(ValueError, match=r"no custom function 'missing' is registered"):
        make_model(trash_expert_mode="custom:missing")


def test_unknown_loss_type_lists_valid_ones():
    with pytest.raises(Exception, match=r"quality_loss_type='hinge'.*sigmoid.*mse.*beta_moment_matching"):
        SelectMoeConfig(**TINY_ARCH, quality_loss_type="hinge")


def test_total_loss_is_lm_plus_weighted_router_losses(padded_batch):
    model = make_model(quality_loss_weight=0.5, router_aux_loss_coef=0.2)
    labels = padded_batch["input_ids"].masked_fill(padded_batch["attention_mask"] == 0, -100)
    out = model(**padded_batch, labels=labels, output_router_logits=True)
    lm_only = model(**padded_batch, labels=labels).loss
    expected = lm_only + 0.2 * out.aux_loss + 0.5 * out.quality_loss
    torch.testing.assert_close(out.loss, expected)

    model.config.enable_load_balancing = False
    out = model(**padded_batch, labels=labels, output_router_logits=True)
    assert out.aux_loss is None
    torch.testing.assert_close(out.loss, lm_only + 0.5 * out.quality_loss)


def test_auto_model_loads_saved_select_moe(tmp_path, padded_batch):
    model = make_model(trash_expert_mode="noise", quality_gate_init_std=0.3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    register_select_moe()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SelectMoeForCausalLM)
    assert loaded.config.trash_expert_mode == "noise"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_experts_run_grouped_like_olmoe_and_match_the_eager_loop(padded_batch):
    """Select-MoE's experts are OLMoE's, so they take OLMoE's default grouped_mm kernel (not transformers' eager
    loop over experts, its fallback for models it cannot see decorated), with the same logits and gradients."""
    model = make_model(quality_gate_init_std=1.0)
    assert model.config._experts_implementation == "grouped_mm"
    results = {}
    for implementation in ("grouped_mm", "eager"):
        model.set_experts_implementation(implementation)
        model.zero_grad()
        logits = model(**padded_batch).logits
        logits.square().mean().backward()
        experts = model.model.layers[0].mlp.experts
        results[implementation] = (logits.detach(), experts.gate_up_proj.grad.clone(), experts.down_proj.grad.clone())
    for grouped, eager in zip(results["grouped_mm"], results["eager"], strict=True):
        torch.testing.assert_close(grouped, eager, rtol=1e-4, atol=1e-6)
