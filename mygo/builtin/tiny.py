"""The embedded default's models: a tiny OLMoE base and a tiny Llama target, pretrained briefly offline.

No hub and no GPU: the text is the Python standard library's own documentation, the tokenizer a
byte-level BPE trained on it (deterministic, so base and target share it), and a few CPU minutes of
language modelling make the router's logits, and the target's answers, mean something (a random
model's would not). Built once; later runs reuse them from the store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_cosine_schedule_with_warmup,
)

from mygo.atomic import atomic_directory
from mygo.builtin.tokenizer import train_bpe_tokenizer
from mygo.data.stdlib_corpus import Document, stdlib_documents

logger = logging.getLogger(__name__)


@dataclass
class TinyBuildReport:
    """What the brief pretraining reached, for MLflow."""

    metrics: dict[str, float]
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


def is_heldout(document: Document, heldout_percent: int) -> bool:
    """A stable split by content hash, so the held-out set is the same on every machine."""
    digest = hashlib.sha256(f"{document.source}:{document.title}".encode()).digest()
    return digest[0] * 100 // 256 < heldout_percent


def pack_blocks(tokenizer: PreTrainedTokenizerBase, texts: list[str], block_size: int, max_tokens: int):
    """Concatenate documents separated by EOS and cut them into [num_blocks, block_size] token blocks."""
    ids: list[int] = []
    for encoded in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
        if len(ids) >= max_tokens:
            break
    usable = min(len(ids), max_tokens) // block_size * block_size
    if usable == 0:
        raise ValueError(f"corpus too small: {len(ids)} tokens for blocks of {block_size}")
    return torch.tensor(ids[:usable]).view(-1, block_size)


@torch.no_grad()
def perplexity(model: PreTrainedModel, blocks: torch.Tensor, batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        tokens = batch.numel() - len(batch)  # the first token of each block has no prediction
        total += loss.item() * tokens
        count += tokens
    return math.exp(total / count)


def tiny_olmoe_config(model_cfg, tokenizer: PreTrainedTokenizerBase) -> OlmoeConfig:
    arch = model_cfg.architecture
    return OlmoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_experts=arch.num_experts,
        num_experts_per_tok=arch.num_experts_per_tok,
        max_position_embeddings=arch.max_position_embeddings,
        router_aux_loss_coef=arch.router_aux_loss_coef,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def tiny_llama_config(target_cfg, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    arch = target_cfg.architecture
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        max_position_embeddings=arch.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def pretrain(model: PreTrainedModel, blocks: torch.Tensor, train_cfg, seed: int, desc: str) -> list[tuple[int, float]]:
    """Plain next-token training; an MoE also gets its load-balancing loss, so all experts get used."""
    extra = {"output_router_logits": True} if isinstance(model, OlmoeForCausalLM) else {}
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.learning_rate, weight_decay=0.1)
    schedule = get_cosine_schedule_with_warmup(optimizer, train_cfg.warmup_steps, train_cfg.steps)
    curve = []
    model.train()
    progress = tqdm(range(1, train_cfg.steps + 1), desc=desc, mininterval=2)
    for step in progress:
        index = torch.randint(len(blocks), (train_cfg.batch_size,), generator=generator)
        batch = blocks[index]
        loss = model(input_ids=batch, labels=batch, **extra).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % train_cfg.log_every == 0 or step == train_cfg.steps:
            curve.append((step, loss.item()))
            progress.set_postfix(loss=f"{loss.item():.3f}")
    return curve


def build_tiny_model(
    model_cfg,
    make_model: Callable[[PreTrainedTokenizerBase], PreTrainedModel],
    output_dir: Path,
    prefix: str,
) -> TinyBuildReport:
    """Train the tokenizer and a tiny model on the stdlib docs; save both to `output_dir` as a local checkpoint.

    `model_cfg` gives seed, vocab_size, heldout_percent and `training` (the pretraining settings);
    metrics are named `<prefix>/...`.
    """
    started = time.perf_counter()
    torch.manual_seed(model_cfg.seed)
    documents = stdlib_documents()
    train_texts = [d.text for d in documents if not is_heldout(d, model_cfg.heldout_percent)]
    heldout_texts = [d.text for d in documents if is_heldout(d, model_cfg.heldout_percent)]
    tokenizer = train_bpe_tokenizer(train_texts, vocab_size=model_cfg.vocab_size)
    block_size = model_cfg.training.block_size
    train_blocks = pack_blocks(tokenizer, train_texts, block_size, model_cfg.training.max_train_tokens)
    heldout_blocks = pack_blocks(tokenizer, heldout_texts, block_size, model_cfg.training.max_heldout_tokens)

    model = make_model(tokenizer)
    eval_batch = model_cfg.training.batch_size
    untrained = perplexity(model, heldout_blocks, eval_batch)
    curve = pretrain(model, train_blocks, model_cfg.training, model_cfg.seed, desc=f"pretrain tiny {prefix}")
    trained = perplexity(model, heldout_blocks, eval_batch)

    with atomic_directory(output_dir) as saving:
        model.save_pretrained(saving)
        tokenizer.save_pretrained(saving)
    metrics = {
        f"{prefix}/heldout_perplexity": trained,
        f"{prefix}/heldout_perplexity_untrained": untrained,
        f"{prefix}/train_loss": curve[-1][1],
        f"{prefix}/train_tokens": float(train_blocks.numel()),
        f"{prefix}/heldout_tokens": float(heldout_blocks.numel()),
        f"{prefix}/corpus_documents": float(len(documents)),
        f"{prefix}/build_seconds": time.perf_counter() - started,
    }
    logger.info("tiny %s: held-out perplexity %.1f (untrained %.1f)", prefix, trained, untrained)
    return TinyBuildReport(metrics=metrics, loss_curve=curve)


def build_tiny_base(model_cfg, output_dir: Path) -> TinyBuildReport:
    """The embedded default base: a tiny OLMoE."""
    return build_tiny_model(
        model_cfg, lambda tokenizer: OlmoeForCausalLM(tiny_olmoe_config(model_cfg, tokenizer)), output_dir, "base"
    )


def build_tiny_target(target_cfg, output_dir: Path) -> TinyBuildReport:
    """The embedded default target: a tiny Llama with the same tokenizer as the tiny base."""
    return build_tiny_model(
        target_cfg, lambda tokenizer: LlamaForCausalLM(tiny_llama_config(target_cfg, tokenizer)), output_dir, "target"
    )
