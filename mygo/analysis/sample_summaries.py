"""Per-sample summaries of Select-MoE router outputs, over real tokens only.

`outputs.router_logits` holds one dict per layer: `quality_score` [batch, seq, 1] and `moe_logits`
[batch*seq, experts]. Warmup statistics, the noise probe and the score stage all reduce them here,
so padding is excluded the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def good_ratios(router_logits: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """sigmoid(quality_score) of every token: [layers, batch, seq], float32."""
    return torch.stack([torch.sigmoid(layer["quality_score"].squeeze(-1).float()) for layer in router_logits])


def _token_mask(attention_mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(shape, device=device)
    return attention_mask.to(device=device, dtype=torch.float32)


def per_sample_quality(
    router_logits: Sequence[dict[str, torch.Tensor]], attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Each sample's mean good_ratio over its real tokens, per layer: [batch, layers]."""
    ratios = good_ratios(router_logits)
    mask = _token_mask(attention_mask, ratios.shape[1:], ratios.device)
    return ((ratios * mask).sum(-1) / mask.sum(-1).clamp(min=1)).T


def per_sample_router_logits(
    router_logits: Sequence[dict[str, torch.Tensor]], attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """Each sample's mean MoE router logits over its real tokens: [batch, layers, experts]."""
    batch, seq = router_logits[0]["quality_score"].shape[:2]
    logits = torch.stack([layer["moe_logits"].float().view(batch, seq, -1) for layer in router_logits], dim=1)
    mask = _token_mask(attention_mask, (batch, seq), logits.device)[:, None, :, None]
    return (logits * mask).sum(2) / mask.sum(2).clamp(min=1)


def token_good_ratio_moments(
    router_logits: Sequence[dict[str, torch.Tensor]], attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per layer: sum and sum of squares of good_ratio over real tokens, and the token count ([layers] each).

    Sums rather than means, so that statistics over a logging window (and over processes) add up exactly.
    """
    ratios = good_ratios(router_logits)
    mask = _token_mask(attention_mask, ratios.shape[1:], ratios.device)
    total = (ratios * mask).sum((1, 2))
    squares = (ratios.pow(2) * mask).sum((1, 2))
    count = mask.sum().expand(len(ratios))
    return total, squares, count
