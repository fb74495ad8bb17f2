"""Chat encoding: a conversation -> input_ids and labels, Tulu style, through the tokenizer's chat template.

The conversation is rendered once with the chat template and tokenized once with offsets; which
tokens carry labels is decided by character spans of the rendered text:
- assistant-only (default): the content of assistant turns and what the template appends to them
  (the EOS), not the `<|assistant|>\n` prompt that opens them;
- `full_sequence_prediction`: every user and assistant turn (system turns never);
- `train_on_tool_turns`: tool turns (a tool's result, `mygo.data.formats`) too; off by default, since the
  model cannot know what a tool returns: it reads them as context only. An assistant turn that calls a
  tool carries its call as text and is labelled like any assistant turn;
- `mask_special_tokens`: no loss on role markers (a turn's header before its content) nor on
  special tokens other than EOS, which the model must learn in order to stop.

Spans come from rendering growing prefixes of the conversation, which works for any template whose
renderings of prefixes are prefixes of the full rendering (Tulu's and OLMoE's are).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from mygo.config import config_dir
from mygo.data.decontamination import DecontaminationReport, DecontaminationSettings, decontaminate
from mygo.data.dedup import DedupSettings, deduplicate_cached
from mygo.data.pool import Pool, load_configured_pool
from mygo.labels import IGNORE_INDEX

# The chat format of OLMoE's tokenizer (and of the built-in one, `mygo.builtin.tokenizer`), Tulu style:
# "<|user|>\n...\n<|assistant|>\n...<eos>\n"; the generation prompt opens an assistant turn.
TULU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
ENCODING_VERSION = 2  # bump when the encoding below changes: cached tokenized pools are keyed by it


@dataclass(frozen=True)
class ChatEncoding:
    max_sequence_length: int = 2048
    full_sequence_prediction: bool = False
    mask_special_tokens: bool = True
    train_on_tool_turns: bool = False


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Use the tokenizer's own template where it has one; base checkpoints get the Tulu template."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = TULU_CHAT_TEMPLATE
    return tokenizer


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def labelled_spans(tokenizer: PreTrainedTokenizerBase, messages: list[dict], options: ChatEncoding):
    """The rendered text and the [start, end) character spans whose tokens carry labels."""
    text = _render(tokenizer, messages)
    spans, previous_end = [], 0
    for index, message in enumerate(messages):
        prefix = _render(tokenizer, messages[: index + 1])
        if not text.startswith(prefix):
            raise ValueError("the chat template does not render a conversation's prefixes as prefixes of it")
        end = len(prefix)
        start = previous_end
        role = message["role"]
        if role == "assistant" and not options.full_sequence_prediction:
            # Skip the generation prompt that opens the turn, when the template has one.
            prompt = _render(tokenizer, messages[:index], generation_prompt=True) if index else ""
            if text.startswith(prompt) and len(prompt) > start:
                start = len(prompt)
        labelled = role == "assistant" or (role == "user" and options.full_sequence_prediction)
        if labelled or (role == "tool" and options.train_on_tool_turns):
            if options.mask_special_tokens:
                content_at = text.find(message["content"], start, end)
                start = content_at if content_at >= 0 else start
            spans.append((start, end))
        previous_end = end
    return text, spans


def encode_messages(tokenizer: PreTrainedTokenizerBase, messages: list[dict], options: ChatEncoding) -> dict:
    """input_ids and labels (IGNORE_INDEX where no loss), truncated to max_sequence_length."""
    text, spans = labelled_spans(tokenizer, messages, options)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    masked_ids = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id} if options.mask_special_tokens else set()
    input_ids, labels = encoded["input_ids"], []
    for token, (start, _) in zip(input_ids, encoded["offset_mapping"], strict=True):
        labelled = any(low <= start < high for low, high in spans) and token not in masked_ids
        labels.append(token if labelled else IGNORE_INDEX)
    truncated = len(input_ids) > options.max_sequence_length
    input_ids = input_ids[: options.max_sequence_length]
    labels = labels[: options.max_sequence_length]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "length": len(input_ids),
        "truncated": truncated,
        "num_label_tokens": sum(label != IGNORE_INDEX for label in labels),
    }


def _encode_record(record: dict, tokenizer: PreTrainedTokenizerBase, options: ChatEncoding) -> dict:
    return encode_messages(tokenizer, record["messages"], options)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A digest of everything that decides token ids: vocabulary, merges, specials, template."""
    state = tokenizer.backend_tokenizer.to_str() + str(tokenizer.chat_template) + str(tokenizer.all_special_tokens)
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def tokenize_pool(
    pool: Pool,
    tokenizer: PreTrainedTokenizerBase,
    options: ChatEncoding,
    cache_dir: str | Path,
    num_proc: int | None = None,
) -> Dataset:
    """Encode every record, in parallel, cached on disk: the same pool, tokenizer and options load instantly."""
    ensure_chat_template(tokenizer)
    key = f"{pool.digest}|{tokenizer_fingerprint(tokenizer)}|{sorted(asdict(options).items())}|{ENCODING_VERSION}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:24]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return pool.records.map(
        _encode_record,
        fn_kwargs={"tokenizer": tokenizer, "options": options},
        remove_columns=["messages"],
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        cache_file_name=str(cache_dir / f"tokenized-{fingerprint}.arrow"),
        new_fingerprint=fingerprint,
        desc="tokenize pool",
    )


def encoding_from_config(dataset_cfg) -> ChatEncoding:
    return ChatEncoding(
        max_sequence_length=dataset_cfg.max_sequence_length,
        full_sequence_prediction=dataset_cfg.full_sequence_prediction,
        mask_special_tokens=dataset_cfg.mask_special_tokens,
        train_on_tool_turns=dataset_cfg.get("train_on_tool_turns", False),  # absent from older configs
    )


def tokenizing_processes(setting: int | str, pool_size: int) -> int:
    """`auto`: one process per core for pools large enough to repay starting them."""
    if setting != "auto":
        return int(setting)
    return min(os.cpu_count() or 1, 8) if pool_size >= 20_000 else 1


def load_and_tokenize(dataset_cfg, tokenizer: PreTrainedTokenizerBase) -> tuple[Pool, Dataset]:
    """The configured pool (all its records; `pool.dedup` says which `dataset.dedup` kept) and the kept records
    tokenized (cached under `dataset.cache_dir/tokenized`): what warmup trains on and score scores."""
    pool = load_configured_pool(dataset_cfg)
    processes = tokenizing_processes(dataset_cfg.num_proc, len(pool.records))
    cache = Path(dataset_cfg.cache_dir) / "tokenized"
    tokenized = tokenize_pool(pool, tokenizer, encoding_from_config(dataset_cfg), cache, processes)
    # Tokenized whole, then subset: the tokenized cache stays keyed by the pool's files, whatever dedup keeps.
    settings = DedupSettings.from_config(dataset_cfg)
    pool.dedup = deduplicate_cached(pool.records, pool.digest, settings, Path(dataset_cfg.cache_dir) / "dedup")
    pool.decontamination = decontaminate_pool(pool, dataset_cfg)
    if len(pool.kept) < len(tokenized):
        tokenized = tokenized.select(pool.kept)
    return pool, tokenized


def decontaminate_pool(pool: Pool, dataset_cfg) -> DecontaminationReport | None:
    """`dataset.decontamination` on the records dedup kept (None when off); the report's rows are the pool's."""
    settings = DecontaminationSettings.from_config(dataset_cfg, config_dir() / "eval_tasks")
    if not settings.enabled:
        return None
    kept = pool.dedup.kept
    records = pool.records.select(kept).select_columns(["messages"])
    texts = (
        " ".join(message["content"] for message in messages)
        for batch in records.iter(batch_size=10_000)
        for messages in batch["messages"]
    )
    report = decontaminate(texts, len(kept), settings, Path(dataset_cfg.cache_dir) / "decontamination")
    report.matches = [replace(match, row=int(kept[match.row])) for match in report.matches]
    return report
