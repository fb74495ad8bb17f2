"""Select-MoE: OLMoE with a quality gate beside every sparse MoE block.

Each decoder layer computes, on the normalised hidden state h,

    quality_score = quality_gate(h)            # Linear(hidden, 1, bias=False)
    good_ratio    = sigmoid(quality_score)     # exactly 1 when config.quality_gate_bypass
    y             = good_ratio * moe(h) + (1 - good_ratio) * trash(h)

The MoE router (`mlp.gate`) and experts (`mlp.experts`) are OLMoE's own modules under the same
parameter names, so an OLMoE state dict loads unchanged and the quality gate is the only new weight.
Router outputs are recorded by transformers' output-capturing hooks: one dict per layer with
"quality_score" [batch, seq, 1] and "moe_logits" [batch*seq, num_experts].
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.olmoe.modeling_olmoe import (
    OlmoeAttention,
    OlmoeDecoderLayer,
    OlmoeExperts,
    OlmoeModel,
    OlmoePreTrainedModel,
    OlmoeRMSNorm,
    OlmoeRotaryEmbedding,
    OlmoeTopKRouter,
    load_balancing_loss_func,
)
from transformers.utils.output_capturing import OutputRecorder

from mygo.models.choices import TARGETED_LOSSES
from mygo.models.configuration_select_moe import BUILTIN_TRASH_MODES, SelectMoeConfig
from mygo.models.losses import QUALITY_LOSSES, quality_loss
from mygo.registry import Registry

# A custom trash expert maps the MoE input [batch, seq, hidden] to an output of the same shape.
TrashFunction = Callable[[torch.Tensor], torch.Tensor]
TRASH_EXPERTS: Registry[TrashFunction] = Registry("trash_expert_mode", BUILTIN_TRASH_MODES)
register_trash_expert = TRASH_EXPERTS.register


def zero_trash(hidden_states: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(hidden_states)


def noise_trash(hidden_states: torch.Tensor) -> torch.Tensor:
    # Noise with each token's own mean and std: as loud as the input, but carrying nothing.
    # The statistics are detached so the trash path teaches the network nothing.
    stats = hidden_states.detach().float()
    mean = stats.mean(-1, keepdim=True)
    std = stats.std(-1, keepdim=True)
    return (torch.randn_like(stats) * std + mean).to(hidden_states.dtype)


def resolve_trash_expert(mode: str) -> TrashFunction:
    """The trash function for a mode; an unknown mode or name lists the valid ones."""
    builtin = {"zero": zero_trash, "noise": noise_trash}
    return builtin[mode] if mode in builtin else TRASH_EXPERTS.custom(mode)


class QualityGate(nn.Linear):
    """Linear(hidden, 1, bias=False) whose raw output is the token's quality score."""

    def __init__(self, hidden_size: int):
        super().__init__(hidden_size, 1, bias=False)


class SelectMoeSparseBlock(nn.Module):
    """OLMoE's router and experts, unchanged, mixed with a trash expert by the quality gate."""

    def __init__(self, config: SelectMoeConfig):
        super().__init__()
        self.config = config
        self.gate = OlmoeTopKRouter(config)
        self.experts = OlmoeExperts(config)
        self.quality_gate = QualityGate(config.hidden_size)
        self.trash_expert = resolve_trash_expert(config.trash_expert_mode)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch_size, sequence_length, hidden_dim = hidden_states.shape
        flat = hidden_states.view(-1, hidden_dim)
        moe_logits, top_k_weights, top_k_index = self.gate(flat)
        moe_output = self.experts(flat, top_k_index, top_k_weights).reshape(batch_size, sequence_length, hidden_dim)
        quality_score = self.quality_gate(hidden_states)
        if self.config.quality_gate_bypass:
            output = moe_output
        else:
            good_ratio = torch.sigmoid(quality_score)
            output = good_ratio * moe_output + (1.0 - good_ratio) * self.trash_expert(hidden_states)
        return output, {"quality_score": quality_score, "moe_logits": moe_logits}


class SelectMoeDecoderLayer(OlmoeDecoderLayer):
    def __init__(self, config: SelectMoeConfig, layer_idx: int):
        GradientCheckpointingLayer.__init__(self)
        self.hidden_size = config.hidden_size
        self.self_attn = OlmoeAttention(config=config, layer_idx=layer_idx)
        self.mlp = SelectMoeSparseBlock(config)
        self.input_layernorm = OlmoeRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = OlmoeRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
        hidden_states = residual + hidden_states
        residual = hidden_states
        moe_output, _ = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + moe_output


class SelectMoePreTrainedModel(OlmoePreTrainedModel):
    config: SelectMoeConfig
    _no_split_modules = ["SelectMoeDecoderLayer"]
    _can_record_outputs = {
        "router_logits": OutputRecorder(SelectMoeSparseBlock, index=1),
        "hidden_states": SelectMoeDecoderLayer,
        "attentions": OlmoeAttention,
    }

    @classmethod
    def _can_set_experts_implementation(cls) -> bool:
        # transformers decides this by looking for `@use_experts_implementation` in the model's own module source;
        # ours reuses OlmoeExperts, which carries it, so grouped_mm (OLMoE's default) applies here too, not the
        # eager loop over experts.
        return True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, QualityGate):
            init.normal_(module.weight, mean=self.config.quality_gate_init_mean, std=self.config.quality_gate_init_std)


class SelectMoeModel(SelectMoePreTrainedModel, OlmoeModel):
    def __init__(self, config: SelectMoeConfig):
        SelectMoePreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(
            [SelectMoeDecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.norm = OlmoeRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = OlmoeRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()


@dataclass
class SelectMoeCausalLMOutput(MoeCausalLMOutputWithPast):
    """OLMoE's causal-LM output plus the quality loss (before its weight)."""

    quality_loss: torch.FloatTensor | None = None


class SelectMoeForCausalLM(SelectMoePreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: SelectMoeConfig):
        super().__init__(config)
        QUALITY_LOSSES.check(config.quality_loss_type)
        self.model = SelectMoeModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        quality_targets: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_router_logits: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> SelectMoeCausalLMOutput:
        """L = L_lm + router_aux_loss_coef * L_load_balancing + quality_loss_weight * L_quality.

        The router losses need the router outputs, so they count only with output_router_logits.
        `quality_targets` [batch, seq] (1 clean, 0 corrupted, -100 ignored) feed a targeted quality loss
        (`corruption_detection`); without them that loss is not computed (scoring, probes).
        """
        if output_router_logits is None:
            output_router_logits = self.config.output_router_logits
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_router_logits=output_router_logits,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.vocab_size, **kwargs)

        router_logits = list(outputs.router_logits) if output_router_logits else None
        aux_loss = quality = None
        if router_logits:
            if self.config.enable_load_balancing:
                aux_loss = load_balancing_loss_func(
                    tuple(layer["moe_logits"] for layer in router_logits),
                    self.config.num_experts,
                    self.config.num_experts_per_tok,
                    attention_mask,
                )
            if quality_targets is not None or self.config.quality_loss_type not in TARGETED_LOSSES:
                scores = [layer["quality_score"] for layer in router_logits]
                quality = quality_loss(scores, attention_mask, self.config, quality_targets)
            if loss is not None:
                if aux_loss is not None:
                    loss = loss + self.config.router_aux_loss_coef * aux_loss.to(loss.device)
                if quality is not None:
                    loss = loss + self.config.quality_loss_weight * quality.to(loss.device)

        return SelectMoeCausalLMOutput(
            loss=loss,
            aux_loss=aux_loss,
            quality_loss=quality,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_logits=router_logits,
        )


def register_select_moe() -> None:
    """Make `AutoConfig`/`AutoModel`/`AutoModelForCausalLM.from_pretrained` load Select-MoE directories."""
    AutoConfig.register("select_moe", SelectMoeConfig, exist_ok=True)
    AutoModel.register(SelectMoeConfig, SelectMoeModel, exist_ok=True)
    AutoModelForCausalLM.register(SelectMoeConfig, SelectMoeForCausalLM, exist_ok=True)


__all__ = [
    "QualityGate",
    "SelectMoeForCausalLM",
    "SelectMoeModel",
    "SelectMoePreTrainedModel",
    "register_select_moe",
    "register_trash_expert",
]
