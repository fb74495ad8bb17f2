"""What the parts measure with: synthetic samples of instruction data's long-tailed lengths, their random token
rows and labels, padded batches on the device, the micro-batches of a training step, and the FLOP count and the
GPU's bf16 peak that MFU is figured from.
"""

from __future__ import annotations

import numpy as np

from gpu_bench.harness import Sizes

# Dense bf16 tensor peak, FLOP/s, by a substring of torch.cuda.get_device_name(); the first match wins, so the more
# specific names come first ("H100 PCIe" before "H100", "A100" before "A10"). NVIDIA's figures without sparsity.
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", None),  # not the A10's figure: unknown here
    ("L4", 121e12),
    ("A10", 125e12),
)


def sample_lengths(sizes: Sizes, n: int, seed: int) -> np.ndarray:
    """Lengths with the long tail of instruction data: log-normal around the median (sigma 0.9), clipped."""
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(np.log(sizes.median_length), 0.9, n)
    return np.clip(lengths, sizes.min_length, sizes.max_length).astype(np.int64)


def token_rows(lengths: np.ndarray, vocab_size: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Random token rows and their labels: the first third a prompt (no label), the rest the answer."""
    from mygo.labels import IGNORE_INDEX

    rng = np.random.default_rng(seed)
    flat = rng.integers(2, vocab_size, int(lengths.sum()))
    rows = [row.tolist() for row in np.split(flat, np.cumsum(lengths)[:-1])]
    labels = [[IGNORE_INDEX] * (len(row) // 3) + row[len(row) // 3 :] for row in rows]
    return rows, labels


def padded(rows: list[list[int]], pad_id: int, device: str, labels: list[list[int]] | None = None) -> dict:
    """A right-padded batch on the device (labels padded with IGNORE_INDEX, as mygo's collator pads them)."""
    import torch

    from mygo.labels import IGNORE_INDEX

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if labels is not None:
        batch["labels"] = torch.full_like(input_ids, IGNORE_INDEX)
        for i, row in enumerate(labels):
            batch["labels"][i, : len(row)] = torch.tensor(row)
    return {name: tensor.to(device) for name, tensor in batch.items()}


def peak_bf16(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16 if key in device_name), None)


def active_parameters(model) -> int:
    """Decoder parameters a token passes through: the embedding lookup left out (no FLOPs), experts at
    top_k / num_experts of theirs, everything else (attention, norms, router and quality gates) whole."""
    share = model.config.num_experts_per_tok / model.config.num_experts
    active = 0.0
    for name, parameter in model.model.named_parameters():
        if "embed_tokens" not in name:
            active += parameter.numel() * (share if ".experts." in name else 1.0)
    return int(active)


def decoder_flops(model, lengths: list[int]) -> float:
    """Forward FLOPs of the decoder over rows of these real lengths: 2 x active parameters a token, plus attention
    (QK^T and AV, 4 x hidden a layer for each of the s^2 pairs of a row, the full square as in PaLM's MFU)."""
    config = model.config
    tokens = sum(lengths)
    squares = sum(length * length for length in lengths)
    return 2.0 * active_parameters(model) * tokens + 4.0 * config.num_hidden_layers * config.hidden_size * squares


def micro_batches(sizes: Sizes, count: int, micro: int, vocab: int, max_length: int, seed: int) -> list:
    """`count` micro-batches of `micro` rows, grouped by length as the Trainer's group_by_length does (the
    longest first, so the first step meets the peak memory), then the others in a seeded order."""
    lengths = np.minimum(sample_lengths(sizes, count * micro, seed), max_length)
    lengths = np.sort(lengths)[::-1]
    rows, labels = token_rows(lengths, vocab, seed)
    groups = [(rows[i : i + micro], labels[i : i + micro]) for i in range(0, len(rows), micro)]
    order = [0, *np.random.default_rng(seed).permutation(np.arange(1, len(groups))).tolist()]
    return [groups[i] for i in order]
