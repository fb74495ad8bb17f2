"""The scoring core: a Select-MoE model over token rows -> gate quality, router features and likelihood signals.

What the score stage (`mygo.stages.score`), the servable selector (`mygo.stages.selector`) and the benchmarks run,
apart from MLflow and the configs: plain arguments in, arrays out, so it imports without MLflow, Hydra or
OmegaConf. Only the decoder runs (no LM head but at answer positions), in inference mode, on batches of similar
length: rows come sorted by length and are cut by a token budget (`length_batches`).
"""

from __future__ import annotations

import numpy as np
import torch

from mygo.analysis.sample_summaries import per_sample_quality, per_sample_router_logits
from mygo.labels import IGNORE_INDEX


def length_batches(lengths: np.ndarray, max_batch_tokens: int, max_batch_size: int) -> list[slice]:
    """Consecutive slices of length-sorted rows whose padded size stays within the token budget."""
    batches, start = [], 0
    while start < len(lengths):
        longest = int(lengths[start])
        size = max(1, min(max_batch_size, max_batch_tokens // max(longest, 1)))
        batches.append(slice(start, min(start + size, len(lengths))))
        start += size
    return batches


def _padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids.to(device), attention_mask.to(device)


def answer_nll(model, hidden: torch.Tensor, input_ids: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Per row, the mean NLL of the tokens marked in `scored` [rows, seq], each predicted from the position
    before it (NaN for a row with none). The LM head runs at those positions only, not over the whole sequence."""
    predicts = torch.zeros_like(scored)
    predicts[:, :-1] = scored[:, 1:]  # position t predicts token t + 1
    rows, positions = predicts.nonzero(as_tuple=True)
    logits = model.lm_head(hidden[rows, positions]).float()
    nll = torch.nn.functional.cross_entropy(logits, input_ids[rows, positions + 1], reduction="none")
    total = torch.zeros(len(input_ids), device=nll.device).index_add_(0, rows, nll)
    count = torch.zeros(len(input_ids), device=nll.device).index_add_(0, rows, torch.ones_like(nll))
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def prompt_answer_relevance(
    embeddings: torch.nn.Embedding, input_ids: torch.Tensor, attention_mask: torch.Tensor, answer: torch.Tensor
) -> torch.Tensor:
    """Per row, the cosine between the mean input embedding of the prompt tokens and that of the answer tokens
    (NaN for a row with no prompt or no answer token). Embeddings are centred on the vocabulary's mean first, so
    that what every text shares (frequent tokens, the chat markers) does not make every pair look alike.

    A fluent answer to another question passes every likelihood test; what it lacks is any relation to its
    instruction. IFD asks the model whether the instruction helps it predict the answer, which a model too small
    to condition on instructions cannot say; the embedding table can still tell what the two are about."""
    vectors = embeddings(input_ids).float() - embeddings.weight.float().mean(0)
    answer = answer.bool() & attention_mask.bool()
    prompt = attention_mask.bool() & ~answer

    def mean_of(mask: torch.Tensor) -> torch.Tensor:
        return (vectors * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    cosine = torch.nn.functional.cosine_similarity(mean_of(prompt), mean_of(answer), dim=-1)
    return torch.where(prompt.any(1) & answer.any(1), cosine, torch.nan)


def answers_alone(sequence: list[int], labels: list[int]) -> list[int]:
    """The answer tokens without the instruction, after the one token that opens the first answer (IFD)."""
    answer = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    if not answer:
        return sequence[:1]
    return [sequence[max(answer[0] - 1, 0)]] + [sequence[i] for i in answer]


@torch.inference_mode()
def score_rows(
    model,
    sequences: list[list[int]],
    labels: list[list[int]],
    pad_id: int,
    max_batch_tokens: int,
    max_batch_size: int,
    ifd: bool,
    feature_dtype: torch.dtype,
    progress=None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Quality [rows, layers], features [rows, layers, experts] and signals {name: [rows]} of length-sorted rows.

    Quality averages the gates over the answer tokens (over all tokens for a row without answer tokens):
    the gate judges the answer, and every prompt token would pull clean and noisy samples together.
    `ifd` adds the IFD signal (one more decoder pass over the answers alone); `progress` (a tqdm bar, or
    None) is advanced by the rows of each batch.
    """
    device = next(model.parameters()).device
    lengths = np.array([len(s) for s in sequences])
    qualities, features, nlls, relevances, ifds = [], [], [], [], []
    for batch in length_batches(lengths, max_batch_tokens, max_batch_size):
        input_ids, attention_mask = _padded(sequences[batch], pad_id, device)
        answer = torch.zeros_like(attention_mask)
        for i, row in enumerate(labels[batch]):
            answer[i, : len(row)] = torch.tensor([label != IGNORE_INDEX for label in row])
        # The decoder, then the LM head only where an answer token is predicted.
        outputs = model.model(input_ids=input_ids, attention_mask=attention_mask, output_router_logits=True)
        gate_mask = torch.where(answer.sum(1, keepdim=True) > 0, answer, attention_mask)
        qualities.append(per_sample_quality(outputs.router_logits, gate_mask).float().cpu())
        pooled = per_sample_router_logits(outputs.router_logits, attention_mask)
        features.append(pooled.to(feature_dtype).cpu())
        nll = answer_nll(model, outputs.last_hidden_state, input_ids, answer.bool())
        nlls.append(nll.float().cpu())
        relevance = prompt_answer_relevance(model.get_input_embeddings(), input_ids, attention_mask, answer)
        relevances.append(relevance.cpu())
        if ifd:
            alone = [answers_alone(seq, lab) for seq, lab in zip(sequences[batch], labels[batch], strict=True)]
            alone_ids, alone_mask = _padded(alone, pad_id, device)
            hidden = model.model(input_ids=alone_ids, attention_mask=alone_mask).last_hidden_state
            scored = alone_mask.bool().clone()
            scored[:, 0] = False  # the opening token is context, not answer
            ifds.append((nll / answer_nll(model, hidden, alone_ids, scored).clamp(min=1e-6)).float().cpu())
        if progress is not None:
            progress.update(input_ids.shape[0])
    signals = {"nll": torch.cat(nlls).numpy(), "relevance": torch.cat(relevances).numpy()}
    if ifds:
        signals["ifd"] = torch.cat(ifds).numpy()
    return torch.cat(qualities).numpy(), torch.cat(features).numpy(), signals
