"""OLMoE -> Select-MoE conversion: parity with the source, and clear errors for wrong sources."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from mygo.models import (
    SelectMoeForCausalLM,
    check_conversion_parity,
    convert_olmoe_to_select_moe,
    load_olmoe,
    parameter_counts,
)
from tests.conftest import TINY_ARCH


@pytest.mark.parametrize("trash_expert_mode", ["zero", "noise"])
def test_parity_figures(olmoe_model, trash_expert_mode):
    converted = convert_olmoe_to_select_moe(olmoe_model, trash_expert_mode=trash_expert_mode).eval()
    parity = check_conversion_parity(olmoe_model, converted)
    assert parity["shared_weights_bit_identical"] == 1.0
    assert parity["shared_weight_tensors"] == len(olmoe_model.state_dict())
    assert parity["bypass_logits_max_abs_diff"] <= 1e-5
    assert parity["roundtrip_logits_max_abs_diff"] == 0.0


def test_shared_weights_bit_identical_and_only_gates_new(olmoe_model):
    converted = convert_olmoe_to_select_moe(olmoe_model, quality_gate_init_std=0.1)
    source_state, converted_state = olmoe_model.state_dict(), converted.state_dict()
    for name, tensor in source_state.items():
        assert torch.equal(tensor, converted_state[name]), name
    new = set(converted_state) - set(source_state)
    assert new == {f"model.layers.{i}.mlp.quality_gate.weight" for i in range(TINY_ARCH["num_hidden_layers"])}
    counts = parameter_counts(converted)
    assert counts["quality_gate"] == TINY_ARCH["num_hidden_layers"] * TINY_ARCH["hidden_size"]
    assert counts["total"] == sum(p.numel() for p in olmoe_model.parameters()) + counts["quality_gate"]


def test_bypass_logits_equal_source_on_padded_batch(olmoe_model, padded_batch):
    converted = convert_olmoe_to_select_moe(olmoe_model, quality_gate_bypass=True).eval()
    with torch.no_grad():
        source = olmoe_model(**padded_batch).logits
        ours = converted(**padded_batch).logits
    real = padded_batch["attention_mask"].bool()
    assert (source[real] - ours[real]).abs().max().item() <= 1e-5
    # with the gates on, the model differs: the gate is really in the path
    converted.config.quality_gate_bypass = False
    with torch.no_grad():
        gated = converted(**padded_batch).logits
    assert (source[real] - gated[real]).abs().max().item() > 1e-3


def test_roundtrip_through_save_pretrained(olmoe_model, padded_batch, tmp_path):
    converted = convert_olmoe_to_select_moe(olmoe_model, quality_gate_init_std=0.3).eval()
    converted.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, SelectMoeForCausalLM)
    with torch.no_grad():
        assert torch.equal(converted(**padded_batch).logits, reloaded(**padded_batch).logits)


def test_load_olmoe_from_local_directory(olmoe_model, tmp_path):
    olmoe_model.save_pretrained(tmp_path)
    loaded = load_olmoe(str(tmp_path))
    for name, tensor in olmoe_model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


def test_not_olmoe_names_the_model_type_found(tmp_path):
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    with pytest.raises(ValueError, match="found model_type 'llama'"):
        convert_olmoe_to_select_moe(llama)
    llama.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"{tmp_path}.*found model_type 'llama'"):
        load_olmoe(str(tmp_path))


def test_missing_source_directory_is_named(tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_olmoe(str(missing))


def test_bfloat16_conversion_keeps_weights_and_dtype(olmoe_model):
    source = olmoe_model.to(torch.bfloat16)
    converted = convert_olmoe_to_select_moe(source).eval()
    assert {p.dtype for p in converted.parameters()} == {torch.bfloat16}
    parity = check_conversion_parity(source, converted)
    assert parity["shared_weights_bit_identical"] == 1.0
    assert parity["bypass_logits_max_abs_diff"] <= 5e-2
    assert parity["roundtrip_logits_max_abs_diff"] == 0.0
