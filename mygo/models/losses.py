"""Quality losses for the Select-MoE warmup.

Every loss is differentiable with respect to good_ratio (the upstream Beta and mean-variance losses
were `full_like(x, loss.item())`, which carries no gradient). Padding never counts.

Two kinds of loss:
- per-token losses (`sigmoid`, `mse`, custom) map good_ratio to a loss per token, then average
  over real tokens (token-wise) or per sample first (sample-wise);
- distribution losses (`beta_moment_matching`, `mean_variance_regularization`) match the batch's
  mean and variance of good_ratio, taken over real tokens (token-wise) or over each sample's mean
  good_ratio (sample-wise);
- `corruption_detection` (beyond upstream): binary cross-entropy of the gate's quality score against
  `quality_targets` (1 clean, 0 corrupted, -100 ignored), which the warmup's on-the-fly corruptions
  supply (`mygo.data.corruption`): the gate learns to send corrupted answers to the trash expert;
- `pooled_corruption_detection` (beyond upstream): the same targets, learnt per sample (multiple-instance):
  the BCE of each sample's mean quality score over its answer tokens. Most corruptions show at a few tokens
  only (a substituted word, a repeated span), so a per-token target of 0 on every token of a corrupted answer
  asks each token for what only some can show; pooled, the gate may mark those few, and scoring reads the
  same answer-token mean.
The total is averaged over layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from mygo.models.choices import BUILTIN_QUALITY_LOSSES, TARGETED_LOSSES
from mygo.registry import Registry

if TYPE_CHECKING:
    from mygo.models.configuration_select_moe import SelectMoeConfig

logger = logging.getLogger(__name__)

# A custom loss maps (good_ratio [batch, seq], mask [batch, seq]) to a per-token loss [batch, seq].
PerTokenLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
QUALITY_LOSSES: Registry[PerTokenLoss] = Registry("quality_loss_type", BUILTIN_QUALITY_LOSSES)
register_quality_loss = QUALITY_LOSSES.register


def _averaging_units(values: torch.Tensor, mask: torch.Tensor, sample_wise: bool):
    """What gets averaged, with its weights: real tokens, or each sample's mean over its real tokens."""
    if not sample_wise:
        return values, mask
    counts = mask.sum(-1)
    return (values * mask).sum(-1) / counts.clamp(min=1), (counts > 0).to(values.dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, sample_wise: bool) -> torch.Tensor:
    """Mean of values[b, s] over real tokens; sample-wise averages each sample first."""
    units, weights = _averaging_units(values, mask, sample_wise)
    return (units * weights).sum() / weights.sum().clamp(min=1)


def _batch_moments(good_ratio: torch.Tensor, mask: torch.Tensor, sample_wise: bool):
    """Mean and (population) variance of good_ratio over real tokens or over per-sample means."""
    units, weights = _averaging_units(good_ratio, mask, sample_wise)
    total = weights.sum().clamp(min=1)
    mean = (units * weights).sum() / total
    var = (((units - mean) ** 2) * weights).sum() / total
    return mean, var


def layer_quality_loss(good_ratio: torch.Tensor, mask: torch.Tensor, config: SelectMoeConfig) -> torch.Tensor:
    """Quality loss of one layer: good_ratio and mask are [batch, seq]."""
    loss_type, sample_wise = config.quality_loss_type, config.sample_wise_averaging
    if loss_type == "sigmoid":
        return masked_mean(good_ratio, mask, sample_wise)
    if loss_type == "mse":
        return masked_mean(good_ratio.pow(2), mask, sample_wise)
    if loss_type == "beta_moment_matching":
        mean, var = _batch_moments(good_ratio, mask, sample_wise)
        return (
            config.w_mean * (mean - config.beta_target_mean) ** 2 + config.w_var * (var - config.beta_target_var) ** 2
        )
    if loss_type == "mean_variance_regularization":
        mean, var = _batch_moments(good_ratio, mask, sample_wise)
        return (mean - 0.5) ** 2 - config.lambda_var * var
    custom = QUALITY_LOSSES.custom(loss_type)
    return masked_mean(custom(good_ratio, mask), mask, sample_wise)


def corruption_detection_loss(
    quality_scores: Sequence[torch.Tensor], targets: torch.Tensor, sample_wise: bool
) -> torch.Tensor:
    """BCE of every layer's quality score against the targets (-100: ignored), averaged over layers."""
    mask = (targets != -100).float()
    clean = targets.clamp(min=0).float()
    per_layer = []
    for score in quality_scores:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            score.squeeze(-1).float(), clean.to(score.device), reduction="none"
        )
        per_layer.append(masked_mean(bce, mask.to(score.device), sample_wise))
    return torch.stack(per_layer).mean()


def pooled_corruption_detection_loss(quality_scores: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """BCE of every layer's mean quality score over each sample's target tokens, averaged over samples, layers."""
    mask = (targets != -100).float()
    has_target = mask.sum(1) > 0
    clean = (targets.clamp(min=0).float() * mask).sum(1) / mask.sum(1).clamp(min=1)
    per_layer = []
    for score in quality_scores:
        layer_mask = mask.to(score.device)
        pooled = (score.squeeze(-1).float() * layer_mask).sum(1) / layer_mask.sum(1).clamp(min=1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(pooled, clean.to(score.device), reduction="none")
        per_layer.append(bce[has_target.to(score.device)].mean() if has_target.any() else bce.sum() * 0)
    return torch.stack(per_layer).mean()


def quality_loss(
    quality_scores: Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None,
    config: SelectMoeConfig,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_quality averaged over layers; quality_scores holds one [batch, seq, 1] raw score per layer.

    `targets` [batch, seq]: what a targeted loss (`corruption_detection`) learns from.
    """
    if config.quality_loss_type in TARGETED_LOSSES:
        if targets is None:
            raise ValueError(f"quality_loss_type={config.quality_loss_type!r} needs quality_targets (corruption)")
        if config.quality_loss_type == "pooled_corruption_detection":
            return pooled_corruption_detection_loss(quality_scores, targets)
        return corruption_detection_loss(quality_scores, targets, config.sample_wise_averaging)
    first = quality_scores[0]
    if attention_mask is None:
        mask = torch.ones(first.shape[:2], device=first.device, dtype=torch.float32)
    else:
        mask = attention_mask.to(device=first.device, dtype=torch.float32)
    per_layer = []
    for score in quality_scores:
        good_ratio = torch.sigmoid(score.squeeze(-1).float())
        per_layer.append(layer_quality_loss(good_ratio, mask, config))
    loss = torch.stack(per_layer).mean()
    if config.quality_loss_debug:
        _log_debug_statistics(quality_scores, mask, per_layer, config)
    return loss


def _log_debug_statistics(quality_scores, mask, per_layer, config) -> None:
    with torch.no_grad():
        real = mask.bool()
        for layer, (score, loss) in enumerate(zip(quality_scores, per_layer, strict=True)):
            good = torch.sigmoid(score.squeeze(-1).float())[real]
            logger.info(
                "quality loss %s layer %d: loss=%.6f good_ratio mean=%.4f std=%.4f min=%.4f max=%.4f tokens=%d",
                config.quality_loss_type,
                layer,
                loss.item(),
                good.mean().item(),
                good.std().item() if good.numel() > 1 else 0.0,
                good.min().item(),
                good.max().item(),
                good.numel(),
            )
