"""Router training pieces on a tiny real Select-MoE: what trains, what is frozen, pooling, router weights."""

import pytest
import torch
from omegaconf import OmegaConf
from transformers import OlmoeConfig, OlmoeForCausalLM

from mygo.analysis.sample_summaries import per_sample_quality, per_sample_router_logits, token_good_ratio_moments
from mygo.models import convert_olmoe_to_select_moe
from mygo.models.router_weights import load_router_weights, router_state_dict, save_router_weights
from mygo.training.router_trainer import merged_model, prepare_router_training
from tests.conftest import TINY_ARCH


def training_cfg(**changes):
    base = {
        "peft_mode": "full_rank",
        "train_router_gates": True,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_parameters": ["mlp.gate.weight"], "target_modules": []},
    }
    return OmegaConf.create(base | changes)


@pytest.fixture
def select_moe(olmoe_model):
    return convert_olmoe_to_select_moe(olmoe_model, enable_load_balancing=False)


def backward(model, batch):
    model.train()
    model(**batch, labels=batch["input_ids"], output_router_logits=True).loss.backward()


@pytest.mark.parametrize("train_router_gates", [True, False])
def test_full_rank_trains_only_the_router_and_stores_no_other_gradient(select_moe, padded_batch, train_router_gates):
    model = prepare_router_training(select_moe, training_cfg(train_router_gates=train_router_gates))
    backward(model, padded_batch)
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    expected = {f"model.layers.{i}.mlp.quality_gate.weight" for i in range(2)}
    if train_router_gates:
        expected |= {f"model.layers.{i}.mlp.gate.weight" for i in range(2)}
    assert trained == expected
    assert all(model.get_parameter(name).grad.abs().sum() > 0 for name in trained)


def test_lora_trains_adapters_and_quality_gates_then_merges_into_router_weights(select_moe, padded_batch):
    before = {name: tensor.clone() for name, tensor in select_moe.state_dict().items()}
    model = prepare_router_training(select_moe, training_cfg(peft_mode="lora"))
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert all("lora_" in name or "quality_gate" in name for name in trainable)
    assert any("mlp.gate.lora_A" in name for name in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    for _ in range(2):  # LoRA's B starts at zero: the second step makes the adapter non-trivial
        backward(model, padded_batch)
        optimizer.step()
        optimizer.zero_grad()
    merged = merged_model(model)
    after = merged.state_dict()
    assert set(after) == set(before)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {f"model.layers.{i}.mlp.{gate}.weight" for i in range(2) for gate in ("gate", "quality_gate")}


def test_unknown_peft_mode_is_named(select_moe):
    with pytest.raises(ValueError, match="training.peft_mode='qlora'.*full_rank"):
        prepare_router_training(select_moe, training_cfg(peft_mode="qlora"))


def test_router_weights_round_trip_and_mismatches_are_named(select_moe, tmp_path, olmoe_model):
    with torch.no_grad():
        for tensor in router_state_dict(select_moe).values():
            tensor.add_(torch.randn_like(tensor))
    path = save_router_weights(select_moe, tmp_path / "router" / "weights.safetensors")
    fresh = convert_olmoe_to_select_moe(olmoe_model)
    load_router_weights(fresh, path)
    for name, tensor in router_state_dict(select_moe).items():
        assert torch.equal(router_state_dict(fresh)[name], tensor)
    assert not list(path.parent.glob("*.tmp"))

    wider = convert_olmoe_to_select_moe(OlmoeForCausalLM(OlmoeConfig(**TINY_ARCH | {"hidden_size": 48})))
    with pytest.raises(
        ValueError, match=r"shape mismatch: model\.layers\.0\.mlp\.gate\.weight: saved \(8, 32\), model \(8, 48\)"
    ):
        load_router_weights(wider, path)
    deeper = convert_olmoe_to_select_moe(OlmoeForCausalLM(OlmoeConfig(**TINY_ARCH | {"num_hidden_layers": 3})))
    with pytest.raises(ValueError, match=r"missing from the file: \['model\.layers\.2"):
        load_router_weights(deeper, path)


def test_per_sample_pooling_counts_real_tokens_only(select_moe, padded_batch):
    select_moe.eval()
    with torch.no_grad():
        outputs = select_moe(**padded_batch, output_router_logits=True)
        quality = per_sample_quality(outputs.router_logits, padded_batch["attention_mask"])
        features = per_sample_router_logits(outputs.router_logits, padded_batch["attention_mask"])
        for row, length in ((1, 8), (2, 5)):
            alone = select_moe(input_ids=padded_batch["input_ids"][row : row + 1, :length], output_router_logits=True)
            torch.testing.assert_close(
                quality[row], per_sample_quality(alone.router_logits, None)[0], atol=1e-5, rtol=0
            )
            expected = per_sample_router_logits(alone.router_logits, None)[0]
            torch.testing.assert_close(features[row], expected, atol=1e-5, rtol=0)
    assert quality.shape == (3, 2) and features.shape == (3, 2, 8)
    total, squares, count = token_good_ratio_moments(outputs.router_logits, padded_batch["attention_mask"])
    assert count.tolist() == [12 + 8 + 5] * 2 and torch.all(squares <= total)
