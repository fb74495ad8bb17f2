"""Select-MoE: the model, its config, and OLMoE conversion."""

from mygo.models.configuration_select_moe import SelectMoeConfig
from mygo.models.conversion import (
    check_conversion_parity,
    convert_olmoe_to_select_moe,
    load_olmoe,
    load_select_moe,
    parameter_counts,
)
from mygo.models.modeling_select_moe import (
    SelectMoeForCausalLM,
    SelectMoeModel,
    register_select_moe,
    register_trash_expert,
)

__all__ = [
    "SelectMoeConfig",
    "SelectMoeForCausalLM",
    "SelectMoeModel",
    "check_conversion_parity",
    "convert_olmoe_to_select_moe",
    "load_olmoe",
    "load_select_moe",
    "parameter_counts",
    "register_select_moe",
    "register_trash_expert",
]
