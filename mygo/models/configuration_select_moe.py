"""Select-MoE configuration: an OLMoE config plus the quality gate, trash expert and quality-loss knobs."""

from huggingface_hub.dataclasses import strict
from transformers import OlmoeConfig

from mygo.models.choices import BUILTIN_QUALITY_LOSSES
from mygo.registry import check_choice

BUILTIN_TRASH_MODES = ("zero", "noise")


@strict
class SelectMoeConfig(OlmoeConfig):
    r"""
    OLMoE configuration extended for Select-MoE.

    quality_gate_init_mean / quality_gate_init_std: the quality gate weight is drawn from N(mean, std).
    quality_loss_weight: weight of L_quality in the total loss.
    quality_loss_type: "sigmoid" | "mse" | "beta_moment_matching" | "mean_variance_regularization" | "custom:<name>".
    trash_expert_mode: "zero" | "noise" | "custom:<name>".
    enable_load_balancing: add OLMoE's load-balancing loss (times router_aux_loss_coef).
    beta_target_mean / beta_target_var / w_mean / w_var: beta_moment_matching targets and weights.
    lambda_var: variance reward of mean_variance_regularization.
    sample_wise_averaging: average the quality loss per sample first (else over all real tokens).
    quality_loss_debug: log quality-loss statistics through `logging`.
    quality_gate_bypass: good_ratio is exactly 1, so the model computes what the source OLMoE computes.
    """

    model_type = "select_moe"

    quality_gate_init_mean: float = 0.0
    quality_gate_init_std: float = 0.02
    quality_loss_weight: float = 0.01
    quality_loss_type: str = "sigmoid"
    trash_expert_mode: str = "zero"
    enable_load_balancing: bool = True
    beta_target_mean: float = 0.5
    beta_target_var: float = 0.05
    w_mean: float = 1.0
    w_var: float = 1.0
    lambda_var: float = 0.1
    sample_wise_averaging: bool = False
    quality_loss_debug: bool = False
    quality_gate_bypass: bool = False

    def validate_select_moe(self) -> None:
        # Names only; whether a custom name is registered is checked when the model is built,
        # because a saved config may be loaded before its custom functions are registered.
        check_choice("trash_expert_mode", self.trash_expert_mode, BUILTIN_TRASH_MODES)
        check_choice("quality_loss_type", self.quality_loss_type, BUILTIN_QUALITY_LOSSES)
        if self.quality_gate_init_std < 0:
            raise ValueError(f"quality_gate_init_std must be >= 0, got {self.quality_gate_init_std}")


def select_moe_settings(settings) -> dict:
    """Config values for SelectMoeConfig (a mapping or DictConfig), an int given for a float field as that float:
    the strict dataclass refuses `quality_loss_weight=20`, which Hydra parses as an int. A plain mapping needs no
    OmegaConf installed (benchmarks/gpu.py reads the configs with PyYAML)."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:
        DictConfig = OmegaConf = None
    if DictConfig is not None and isinstance(settings, DictConfig):
        values = OmegaConf.to_container(settings, resolve=True)
    else:
        values = dict(settings)
    floats = {name for name, kind in SelectMoeConfig.__annotations__.items() if kind in (float, "float")}
    return {
        key: float(value) if key in floats and isinstance(value, int) and not isinstance(value, bool) else value
        for key, value in values.items()
    }


__all__ = ["SelectMoeConfig", "select_moe_settings"]
