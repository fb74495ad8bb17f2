"""OLMoE -> Select-MoE conversion and the parity checks that prove it changed nothing but the gates."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.initialization import no_init_weights

from mygo.models.configuration_select_moe import SelectMoeConfig
from mygo.models.modeling_select_moe import QualityGate, SelectMoeForCausalLM, register_select_moe

# Config entries that describe the source file rather than the architecture.
_NOT_CARRIED = {"model_type", "architectures", "transformers_version", "auto_map", "dtype", "torch_dtype"}


def check_is_olmoe(config, where: str) -> None:
    if config.model_type != "olmoe":
        raise ValueError(
            f"{where}: expected an OLMoE checkpoint (model_type 'olmoe'), found model_type {config.model_type!r}"
        )


def load_olmoe(source: str, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load an OLMoE causal LM from a hub id or a local directory, with clear errors for wrong input."""
    looks_local = source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
    if looks_local and not Path(source).expanduser().is_dir():
        raise FileNotFoundError(f"OLMoE source directory not found: {source}")
    config = AutoConfig.from_pretrained(source)
    check_is_olmoe(config, source)
    return AutoModelForCausalLM.from_pretrained(source, dtype=dtype)


def convert_olmoe_to_select_moe(olmoe_model: PreTrainedModel, **select_config) -> SelectMoeForCausalLM:
    """A Select-MoE model whose every OLMoE weight is a bit-identical copy of `olmoe_model`'s.

    `select_config` sets the Select-MoE fields (trash_expert_mode, quality_gate_init_std, ...).
    Only the quality gates are new; they are drawn from N(quality_gate_init_mean, quality_gate_init_std).
    """
    check_is_olmoe(olmoe_model.config, type(olmoe_model).__name__)
    register_select_moe()
    source = olmoe_model.config.to_dict()
    base = {k: v for k, v in source.items() if k not in _NOT_CARRIED}
    config = SelectMoeConfig(**{**base, **select_config})
    config.architectures = ["SelectMoeForCausalLM"]
    dtype = next(olmoe_model.parameters()).dtype

    # Skip random init of the copied weights (minutes for 7B params); only the gates need drawing.
    # Built in the source's dtype rather than cast afterwards: a cast would also turn fp32 buffers
    # (rotary frequencies) into bf16, which from_pretrained does not do, and the round trip would drift.
    with no_init_weights():
        model = SelectMoeForCausalLM._from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(olmoe_model.state_dict(), strict=False)
    gate_keys = {name for name, _ in _quality_gate_parameters(model)}
    if unexpected or set(missing) != gate_keys:
        raise RuntimeError(
            f"conversion did not map the OLMoE weights one to one: unexpected={unexpected}, "
            f"missing={sorted(set(missing) - gate_keys)}"
        )
    init_quality_gates(model)
    return model


def _quality_gate_parameters(model: torch.nn.Module):
    for module_name, module in model.named_modules():
        if isinstance(module, QualityGate):
            yield f"{module_name}.weight", module.weight


def init_quality_gates(model: SelectMoeForCausalLM, seed: int = 0) -> None:
    """Draw every quality gate from N(quality_gate_init_mean, quality_gate_init_std), from a generator of its own:
    the same checkpoint converts to the same weights whatever ran before (a convert run can be reproduced)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, weight in _quality_gate_parameters(model):
            drawn = torch.empty(weight.shape, dtype=torch.float32)
            drawn.normal_(model.config.quality_gate_init_mean, model.config.quality_gate_init_std, generator=generator)
            weight.copy_(drawn)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    gate = sum(weight.numel() for _, weight in _quality_gate_parameters(model))
    return {"total": sum(p.numel() for p in model.parameters()), "quality_gate": gate}


def _shared_weights_identical(source: PreTrainedModel, converted: PreTrainedModel) -> tuple[bool, int]:
    converted_state = converted.state_dict()
    source_state = source.state_dict()
    identical = all(torch.equal(tensor, converted_state[name]) for name, tensor in source_state.items())
    return identical, len(source_state)


@torch.inference_mode()
def _logits(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    # A fixed seed makes the noise trash expert draw the same noise in both models being compared.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor, attention_mask: torch.Tensor) -> float:
    real = attention_mask.bool()
    return (a[real] - b[real]).abs().max().item()


def parity_batch(vocab_size: int, seed: int = 0, batch: int = 3, length: int = 24) -> dict[str, torch.Tensor]:
    """A right-padded batch of random token ids: rows of different lengths exercise the masks."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch):
        attention_mask[row, length - row * (length // (2 * batch)) - 1 :] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def check_conversion_parity(
    source: PreTrainedModel, converted: SelectMoeForCausalLM, seed: int = 0
) -> dict[str, float]:
    """The parity figures: shared weights bit-identical, bypass logits = source logits, save/load round trip.

    Runs in the models' dtype; the 1e-5 logits bound applies to fp32.
    """
    identical, num_shared = _shared_weights_identical(source, converted)
    batch = parity_batch(source.config.vocab_size, seed)
    source_logits = _logits(source, **batch)

    bypass_before = converted.config.quality_gate_bypass
    converted.config.quality_gate_bypass = True
    try:
        bypass_logits = _logits(converted, **batch)
    finally:
        converted.config.quality_gate_bypass = bypass_before

    gated_logits = _logits(converted, **batch)
    with tempfile.TemporaryDirectory() as tmp:
        converted.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=next(converted.parameters()).dtype)
        reloaded_logits = _logits(reloaded, **batch)

    return {
        "shared_weights_bit_identical": float(identical),
        "shared_weight_tensors": float(num_shared),
        "bypass_logits_max_abs_diff": _max_abs_diff(source_logits, bypass_logits, batch["attention_mask"]),
        "roundtrip_logits_max_abs_diff": _max_abs_diff(gated_logits, reloaded_logits, batch["attention_mask"]),
    }


def load_select_moe(
    model_dir: str | Path, dtype: torch.dtype = torch.float32, **config_overrides
) -> SelectMoeForCausalLM:
    """A converted Select-MoE checkpoint, with Select-MoE fields (loss type, trash mode, ...) overridden."""
    register_select_moe()
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "select_moe":
        raise ValueError(f"{model_dir}: expected a converted Select-MoE model, found model_type {config.model_type!r}")
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **config_overrides)
