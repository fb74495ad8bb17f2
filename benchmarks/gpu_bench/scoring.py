"""The scoring part: the scoring core end to end (`score_rows`, the overlap signal, shards written as the score
stage writes them) on a synthetic pool, planned as the score stage plans it; samples/s, tokens/s and the wall time
projected for the 270k LESS pool.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_bench.harness import LESS_POOL, BoxSpent, Context, TimeBox, read_config
from gpu_bench.workload import sample_lengths, token_rows


def word_conversations(rows, labels) -> list[list[dict]]:
    """Each random-id row as a conversation of words ("w<id>"): the user turn its unlabelled tokens, the assistant
    turn its labelled ones, for the overlap signal, which the score stage computes from the records' texts."""
    from mygo.labels import IGNORE_INDEX

    conversations = []
    for row, row_labels in zip(rows, labels, strict=True):
        prompt = " ".join(f"w{t}" for t, label in zip(row, row_labels, strict=True) if label == IGNORE_INDEX)
        answer = " ".join(f"w{t}" for t, label in zip(row, row_labels, strict=True) if label != IGNORE_INDEX)
        conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return conversations


def part_scoring(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    import torch

    from mygo.analysis.score_shards import plan_shards, write_shard
    from mygo.analysis.text_overlap import NgramWeights, answer_overlap, message_texts
    from mygo.models.scoring import score_rows

    _, model = ctx.models(metrics)
    score = read_config("score.yaml")["score"] | ctx.sizes.score
    feature_dtype = getattr(torch, score["feature_dtype"])
    lengths = sample_lengths(ctx.sizes, ctx.sizes.pool, seed=2)
    rows, labels = token_rows(lengths, model.config.vocab_size, seed=2)
    plan = plan_shards(lengths, score["shard_size"])  # the score stage's plan: longest first
    started = time.perf_counter()  # the score stage counts the pool's 4-grams once, before the shards
    conversations = word_conversations(rows, labels)
    weights = NgramWeights.fit(message_texts(conversations))
    metrics["overlap_weights_s"] = time.perf_counter() - started
    pad = model.config.pad_token_id

    class BoxProgress:
        """score_rows' progress bar, which ends a shard mid-way once the box is spent and a shard is done: a shard
        of the full pool takes tens of seconds, and a box checked between shards only would overrun by that."""

        def update(self, rows: int) -> None:
            if samples and box.left() <= 0:
                raise BoxSpent

    def run(indices, progress=None):
        sequences, answer_labels = [rows[i] for i in indices], [labels[i] for i in indices]
        return score_rows(
            model,
            sequences,
            answer_labels,
            pad,
            score["max_batch_tokens"],
            score["max_batch_size"],
            bool(score["ifd"]),
            feature_dtype,
            progress,
        )

    started = time.perf_counter()  # warm-up, as a real run pays it once: the longest and the shortest rows
    run(plan[0][: score["max_batch_size"]])
    run(plan[-1][-8:])
    metrics["warmup_s"] = time.perf_counter() - started
    samples = tokens = 0
    seconds = {"model": 0.0, "overlap": 0.0, "write": 0.0}
    with tempfile.TemporaryDirectory() as work_dir:
        for shard, indices in enumerate(plan):
            if samples and box.left() <= 0:  # the first shard always: a projection needs one
                notes.append(f"time box: {shard} of {len(plan)} shards scored (the longest rows first)")
                break
            started = time.perf_counter()
            try:
                quality, features, signals = run(indices, BoxProgress())
            except BoxSpent:
                notes.append(f"time box: {shard} of {len(plan)} shards scored (the longest rows first)")
                break
            scored = time.perf_counter()
            signals["overlap"] = answer_overlap([conversations[i] for i in indices], weights)
            overlapped = time.perf_counter()
            write_shard(Path(work_dir), shard, indices, quality, features, signals)
            written = time.perf_counter()
            seconds["model"] += scored - started
            seconds["overlap"] += overlapped - scored
            seconds["write"] += written - overlapped
            samples += len(indices)
            tokens += int(lengths[indices].sum())
    if not samples:
        raise RuntimeError(f"the time box ({box.seconds:.0f} s) ended before one shard was scored")
    total = sum(seconds.values())
    metrics.update(
        pool_samples=len(rows),
        pool_mean_length=float(lengths.mean()),
        pool_median_length=float(np.median(lengths)),
        scored_samples=samples,
        complete=samples == len(rows),
        seconds=total,
        model_s=seconds["model"],
        overlap_s=seconds["overlap"],
        write_s=seconds["write"],
        samples_per_s=samples / total,
        tokens_per_s=tokens / total,
        model_tokens_per_s=tokens / seconds["model"],
        projected_270k_minutes=LESS_POOL / (samples / total) / 60,
        settings={key: score[key] for key in ("max_batch_tokens", "max_batch_size", "shard_size", "ifd")},
    )
    notes.append(f"projected at this pool's spread (mean {lengths.mean():.0f} tokens a sample) for {LESS_POOL:,}")
