"""The target model that finetune adapts and evaluate measures: where its weights are, and its tokenizer."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from mygo.data.chat import ensure_chat_template
from mygo.tracking.builds import BUILTIN_SOURCE, builtin_model_dir


def target_location(target_cfg: DictConfig, build_dir: Path) -> str:
    """The target's weights: a hub name or local directory, or the built-in tiny Llama (reused or built)."""
    if target_cfg.source == BUILTIN_SOURCE:
        return str(builtin_model_dir("target", target_cfg.build, build_dir))
    return str(target_cfg.source)


def load_target_tokenizer(location: str) -> PreTrainedTokenizerBase:
    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(location))
    if tokenizer.pad_token is None:  # Llama-2 has none; padding carries neither attention nor labels
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
