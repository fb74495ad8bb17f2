"""Selection aimed at a task (`selection.target`): the pool samples most like the task's examples, by round robin
over the examples (RDS, Ivison et al., 2025), within the budget, the vetoes and the fault limits.

The representation is the one scoring keeps already: each sample's mean router logits over its tokens, every layer
(the clustering's features), as L2-normalised rows. It costs no second pass and no storage, and it is what the MoE
itself decided about the text: which experts, layer by layer, a sample needs. The target's examples are run through
the same warmed-up model, encoded as the pool was (the warmup run's chat encoding), so both sides are alike.

A target is an lm-eval task (its validation and few-shot items, never its test split: a task without a validation
split is an error) or a file of examples in any pool format; a file that holds an evaluation task's test item
(`mygo.data.decontamination`'s rule) is an error naming the example.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from mygo.analysis.clustering.core import feature_blocks
from mygo.analysis.coverage import unit_rows
from mygo.config import config_dir, load_config
from mygo.data.decontamination import DecontaminationSettings, find_contamination, item_parts, task_docs
from mygo.data.pool import load_records_file
from mygo.tracking.handoffs import convert_run_of, model_dir_of, router_weights_of

logger = logging.getLogger(__name__)

TARGET_SPLITS = ("validation", "fewshot")


def target_examples(target: str, task_dir: str, test_tasks: list[str]) -> list[list[dict]]:
    """The target's examples as conversations: an lm-eval task's validation and few-shot items, or the records of
    a pool-format file (checked against the test items of `test_tasks`)."""
    path = Path(target)
    if path.suffix in (".jsonl", ".json", ".parquet") or path.is_file():
        conversations = list(load_records_file(path).records["messages"])
        check_not_test(conversations, path, test_tasks, task_dir)
        return conversations
    docs = task_docs(target, task_dir, "selection.target")
    splits = {split for _, split, _, _ in docs}
    if "validation" not in splits:
        raise ValueError(
            f"selection.target={target!r}: the task has no validation split (its splits: {sorted(splits)}); a target "
            "is never built from a test split"
        )
    conversations = []
    for _, split, task, doc in docs:
        if split in TARGET_SPLITS:
            prompt, answer = item_parts(task, doc)
            conversations.append(
                [{"role": "user", "content": prompt.strip()}, {"role": "assistant", "content": answer}]
            )
    return conversations


def check_not_test(conversations: list[list[dict]], path: Path, tasks: list[str], task_dir: str) -> None:
    """A target file holding an evaluation task's test item is an error naming the example."""
    from mygo.data.decontamination import cached_eval_items

    items, _ = cached_eval_items(tasks, task_dir, None)
    tests = [item for item in items if item.split == "test"]
    texts = [" ".join(message["content"] for message in messages) for messages in conversations]
    matches, _ = find_contamination(texts, tests, DecontaminationSettings(tasks=tuple(tasks)))
    if matches:
        first = matches[0]
        raise ValueError(
            f"selection.target={path}: example {first.row + 1} holds a test item of {first.task} "
            f"({first.share:.0%} of its 8-grams, e.g. {first.ngram!r}); a target is built from validation or "
            "few-shot examples only"
        )


def examples_digest(conversations: list[list[dict]]) -> str:
    return hashlib.sha256(json.dumps(conversations, sort_keys=True).encode()).hexdigest()


def encode_examples(conversations: list[list[dict]], score_run) -> np.ndarray:
    """[examples, layers, experts] mean router logits of the examples, by the score run's warmed-up model, encoded
    as the pool was."""
    import torch
    from transformers import AutoTokenizer

    from mygo.data.chat import encode_messages, encoding_from_config, ensure_chat_template
    from mygo.models import load_select_moe
    from mygo.models.router_weights import load_router_weights
    from mygo.models.scoring import score_rows
    from mygo.stages.score import pool_settings

    warmup, convert = convert_run_of(score_run)
    batching = load_config("score").score  # batch sizes decide speed only
    dataset = pool_settings(warmup, "")
    model_dir = model_dir_of(convert)
    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    options = encoding_from_config(dataset)
    encoded = [encode_messages(tokenizer, messages, options) for messages in conversations]
    order = np.argsort([-len(row["input_ids"]) for row in encoded], kind="stable")  # length-sorted, as scoring
    model = load_select_moe(model_dir).eval()
    load_router_weights(model, router_weights_of(warmup))
    with torch.no_grad():
        _, features, _ = score_rows(
            model,
            [encoded[i]["input_ids"] for i in order],
            [encoded[i]["labels"] for i in order],
            tokenizer.pad_token_id,
            int(batching.max_batch_tokens),
            int(batching.max_batch_size),
            False,
            torch.float32,
        )
    out = np.empty_like(features)
    out[order] = features
    return out


def similarity_order(features, examples: np.ndarray, allowed: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows in the order round robin over the examples takes them (each example in turn its most similar row
    not taken yet; rows outside `allowed` never), at least `count` of them where `allowed` has as many; and each
    row's highest cosine to an example ([n]). The pool's features are read a block at a time; each example keeps
    its `4 count / examples + 64` best rows, and rows past those come by their highest cosine."""
    targets = unit_rows(examples.reshape(len(examples), -1))
    keep = min(int(allowed.sum()), 4 * math.ceil(count / len(targets)) + 64)
    best_rows = np.zeros((len(targets), 0), dtype=np.int64)
    best_sims = np.zeros((len(targets), 0), dtype=np.float32)
    highest = np.full(len(allowed), -np.inf, dtype=np.float32)
    for rows, block in feature_blocks(features):
        sims = (unit_rows(block) @ targets.T).T  # [examples, block]
        highest[rows] = sims.max(axis=0)
        sims[:, ~allowed[rows]] = -np.inf
        best_rows = np.concatenate([best_rows, np.broadcast_to(rows, sims.shape)], axis=1)
        best_sims = np.concatenate([best_sims, sims], axis=1)
        if best_sims.shape[1] > keep:
            top = np.argpartition(-best_sims, keep - 1, axis=1)[:, :keep]
            best_rows, best_sims = np.take_along_axis(best_rows, top, 1), np.take_along_axis(best_sims, top, 1)
    ranked = np.argsort(-best_sims, axis=1, kind="stable")
    best_rows, best_sims = np.take_along_axis(best_rows, ranked, 1), np.take_along_axis(best_sims, ranked, 1)
    taken = np.zeros(len(allowed), dtype=bool)
    order = []
    for rank in range(best_rows.shape[1]):
        for example in range(len(targets)):
            row = int(best_rows[example, rank])
            if np.isfinite(best_sims[example, rank]) and not taken[row]:
                taken[row] = True
                order.append(row)
    rest = np.flatnonzero(allowed & ~taken)
    rest = rest[np.argsort(-highest[rest], kind="stable")]  # past every example's best: by nearness
    return np.concatenate([np.asarray(order, dtype=np.int64), rest]), highest


def log_target(target: str, conversations: list[list[dict]], highest: np.ndarray, selected: np.ndarray) -> None:
    """The target, its examples' digest and the similarity of the selection beside the pool's."""
    from mygo.tracking import plots

    mlflow.log_params({"target/name": target, "target/digest": examples_digest(conversations)[:16]})
    mlflow.log_metrics(
        {
            "target/examples": float(len(conversations)),
            "target/similarity_mean_all": float(highest.mean()),
            "target/similarity_mean_selected": float(highest[selected].mean()),
            "target/similarity_median_selected": float(np.median(highest[selected])),
        }
    )
    plots.log_figure(plots.quality_selected_vs_all(highest, selected), "plots/target_similarity.png")


def target_of(cfg: DictConfig, score_run) -> tuple[str, list[list[dict]]] | None:
    """The configured target and its examples (None without one); a file is checked against the test items of the
    evaluation tasks the pool was decontaminated against."""
    target = cfg.selection.get("target")
    if not target:
        return None
    from mygo.stages.score import pool_settings

    warmup, _ = convert_run_of(score_run)
    tasks = list((pool_settings(warmup, "").get("decontamination") or {}).get("tasks") or [])
    return str(target), target_examples(str(target), str(config_dir() / "eval_tasks"), tasks)
