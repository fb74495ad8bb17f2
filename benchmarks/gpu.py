"""The GPU paths in one prepared command: `python benchmarks/gpu.py --out gpu.json [--parts ...] [--small]`.

For the few minutes a GPU is at hand (one H100/H200-class GPU, no network, no hub): every part builds what it
measures from random weights of the real shapes, runs mygo's own code on it, stops measuring when its time box is
spent, and writes what it measured; a part that fails is recorded with its error and the others go on.

- forward: OLMoE-1B-7B's shape (16 layers, hidden 2048, 64 experts, top-8; random bf16 weights built on the
  device) converted to Select-MoE (`mygo.models.convert_olmoe_to_select_moe`); decoder forward tokens/s over a
  length-sorted token-budget batch plan like the scorer's (`mygo.models.scoring.length_batches`), the Select-MoE /
  OLMoE time on the same weights and batches, peak memory, MFU, and one profiled forward of each model (attention,
  router, experts, quality gate);
- scoring: the scoring core end to end (`score_rows`, the overlap signal, shards written as the score stage writes
  them) on a synthetic pool of 20,000 samples of a long-tailed length spread: samples/s, tokens/s, and the wall
  time projected for the 270k LESS pool;
- kmeans: the select stage's k-means (elbow over k_range on a sample, then the chosen k on all rows;
  `mygo.analysis.clustering.kmeans`) at 270,000 x 1024 on the GPU backends (torch on CUDA, cuML where installed)
  and on the CPU default (scikit-learn), with each backend's inertia over the CPU default's;
- warmup: optimizer steps of the gates (and router gates) on the converted model with mygo's quality loss, under
  `accelerate` (bf16 autocast on a GPU), the settings of configs/warmup.yaml;
- finetune: LoRA steps (peft) on Qwen2.5-1.5B's shape with configs/target/qwen2_5_1_5b.yaml's recipe.

It imports no MLflow, Hydra, OmegaConf, Optuna nor datasets (configs are read with PyYAML), and each part imports
what it needs when it runs, so a broken package fails that part only. `--small` cuts every size so the whole run
takes seconds on a CPU (tests/test_gpu_benchmark.py runs it so). Exit status: 0 when every chosen part finished
("ok"), 1 when any failed or ran out of its time box, 2 for bad arguments. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
PARTS = ("forward", "scoring", "kmeans", "warmup", "finetune")
# Run order: the Select-MoE built for forward is reused by scoring and warmup (which trains it), then dropped.
RUN_ORDER = ("forward", "scoring", "warmup", "kmeans", "finetune")
TIME_BOXES = {"forward": 75.0, "scoring": 150.0, "warmup": 60.0, "kmeans": 100.0, "finetune": 60.0}
MODEL_PARTS = ("forward", "scoring", "warmup")  # the parts that take the converted Select-MoE
TOTAL_S = 465.0  # the 8 minutes, less start-up (imports, CUDA context) and the JSON
LESS_POOL = 270_000

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

# OLMoE-1B-7B as on the hub (allenai/OLMoE-1B-7B-0125's config.json): no download, random weights.
OLMOE_1B_7B = dict(
    vocab_size=50304,
    hidden_size=2048,
    intermediate_size=1024,  # per expert (transformers' OlmoeConfig default is 2048)
    num_hidden_layers=16,
    num_attention_heads=16,
    num_key_value_heads=16,
    num_experts=64,
    num_experts_per_tok=8,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    norm_topk_prob=False,
    tie_word_embeddings=False,
    pad_token_id=1,
    eos_token_id=50279,
    bos_token_id=None,
)
# Qwen2.5-1.5B as on the hub (configs/target/qwen2_5_1_5b.yaml's source); the RoPE base is left at its default,
# which changes no cost.
QWEN2_5_1_5B = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151643,
)


@dataclass(frozen=True)
class Sizes:
    olmoe: dict
    target: dict
    median_length: int  # samples' lengths are log-normal around this (sigma 0.9), clipped to [min, max]
    min_length: int
    max_length: int
    forward_rows: int
    pool: int
    score: dict = field(default_factory=dict)  # over configs/score.yaml's `score`
    kmeans_rows: int = LESS_POOL
    kmeans_dims: int = 1024
    kmeans_blobs: int = 40
    kmeans: dict = field(default_factory=dict)  # over configs/select.yaml's `clustering.kmeans`
    warmup_steps: int = 6  # optimizer steps; the first is not timed
    finetune_steps: int = 4
    accumulation_cap: int = 8  # micro-batches per optimizer step at most (the configured ones are projected)


FULL = Sizes(
    olmoe=OLMOE_1B_7B, target=QWEN2_5_1_5B, median_length=200, min_length=16, max_length=2048, forward_rows=2048,
    pool=20_000,
)  # fmt: skip
SMALL = Sizes(
    olmoe=OLMOE_1B_7B | dict(vocab_size=512, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, num_experts=8, num_experts_per_tok=2,
                             eos_token_id=2),
    target=QWEN2_5_1_5B | dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, bos_token_id=2, eos_token_id=2),
    median_length=40, min_length=8, max_length=128, forward_rows=48, pool=200,
    score=dict(shard_size=64, max_batch_tokens=1024, max_batch_size=16),
    kmeans_rows=5000, kmeans_dims=64, kmeans_blobs=10, kmeans=dict(k_range=[4, 20], elbow_points=5, elbow_sample=2000),
    warmup_steps=3, finetune_steps=3, accumulation_cap=2,
)  # fmt: skip


class BoxSpent(Exception):
    """A part's time box is spent: it stops measuring (what it measured so far stands)."""


class TimeBoxExceeded(Exception):
    """Raised by the hard limit: a part ran well past its time box."""


@dataclass
class TimeBox:
    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


@contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise TimeBoxExceeded in this (main) thread after `seconds`: the last resort of a part that does not stop by
    itself. A call stuck in C (a kernel that never ends) is interrupted only when it returns; wrap the command in
    `timeout` for that."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeBoxExceeded(f"still running {seconds:.0f} s after it started")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_config(relative: str) -> dict:
    """A project config as plain data (PyYAML, a transformers dependency: no Hydra or OmegaConf here)."""
    import yaml

    return yaml.safe_load((CONFIGS / relative).read_text())


# ------------------------------------------------------------------------------------------------ context


class Context:
    """What the parts share: the device, the sizes, and the Select-MoE built once for forward, scoring, warmup."""

    def __init__(self, device: str, sizes: Sizes, small: bool, fail_part: str | None = None):
        import torch

        self.device, self.sizes, self.small, self.fail_part = device, sizes, small, fail_part
        self.cuda = device == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32  # what score.precision=auto picks
        self.source = None  # the random OLMoE, kept only while forward compares against it
        self.select_moe = None

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], object]) -> float:
        self.sync()
        started = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - started

    def models(self, metrics: dict, keep_source: bool = False):
        """(source OLMoE or None, Select-MoE), built on first use: the build and conversion times go to `metrics`."""
        if self.select_moe is None or (keep_source and self.source is None):
            import torch
            from transformers import OlmoeConfig, OlmoeForCausalLM

            from mygo.models import convert_olmoe_to_select_moe

            self.free()
            torch.manual_seed(0)
            started = time.perf_counter()
            # Built on the device in its dtype: random init of 7B parameters on a CPU would take minutes.
            with torch.device(self.device):
                source = OlmoeForCausalLM._from_config(OlmoeConfig(**self.sizes.olmoe), dtype=self.dtype).eval()
            self.sync()
            metrics["build_s"] = time.perf_counter() - started
            settings = read_config("convert.yaml")["select_moe"]
            started = time.perf_counter()
            # mygo's conversion, as the convert stage runs it (on the CPU), then onto the device as score loads it.
            select_moe = convert_olmoe_to_select_moe(source, **settings).to(self.device).eval()
            self.sync()
            metrics["convert_s"] = time.perf_counter() - started
            self.source = source if keep_source else None
            self.select_moe = select_moe
            del source
        if not keep_source:
            self.drop_source()
        return self.source, self.select_moe

    def drop_source(self) -> None:
        self.source = None
        free_memory()

    def free(self) -> None:
        self.source = self.select_moe = None
        free_memory()


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class PeakMemory:
    """Peak memory of a part: allocated GPU memory on CUDA, the process's RSS high-water mark on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.kind = "gpu_allocated" if cuda else "cpu_rss"
        self.reset_ok = True

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        try:  # Linux: "5" resets VmHWM, so each part's peak is its own
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.reset_ok = False

    def peak_gb(self) -> float | None:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**30
        status = Path("/proc/self/status")
        if not status.exists():
            return None
        line = next((line for line in status.read_text().splitlines() if line.startswith("VmHWM:")), None)
        return int(line.split()[1]) / 2**20 if line else None


# ------------------------------------------------------------------------------------------------ shared


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


# ------------------------------------------------------------------------------------------------ forward


def part_forward(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    import torch

    from mygo.models.scoring import length_batches

    source, select_moe = ctx.models(metrics, keep_source=True)
    config = select_moe.config
    score = read_config("score.yaml")["score"] | ctx.sizes.score
    lengths = np.sort(sample_lengths(ctx.sizes, ctx.sizes.forward_rows, seed=1))[::-1]
    rows, _ = token_rows(lengths, config.vocab_size, seed=1)
    plan = length_batches(lengths, score["max_batch_tokens"], score["max_batch_size"])
    batches = [padded(rows[part], config.pad_token_id, ctx.device) for part in plan]
    metrics["experts_implementation"] = {
        "olmoe": source.config._experts_implementation,
        "select_moe": config._experts_implementation,
    }
    metrics["batch_plan"] = {"rows": len(rows), "batches": len(plan), "max_batch_tokens": score["max_batch_tokens"]}

    # mygo's Select-MoE may not get OLMoE's experts kernel (transformers picks it per model class, see
    # benchmarks/README.md): the same weights with OLMoE's kernel switched in tell how much of the ratio that is.
    own, theirs = config._experts_implementation, source.config._experts_implementation
    variants = {"olmoe": (source, theirs), "select_moe": (select_moe, own)}
    if own != theirs:
        notes.append(f"Select-MoE runs experts_implementation={own!r}, OLMoE {theirs!r}")
        variants["select_moe_same_kernel"] = (select_moe, theirs)

    def forward(variant: str, batch: dict):
        model, kernel = variants[variant]
        previous = model.config._experts_implementation
        model.config._experts_implementation = kernel  # the experts modules read it at every call
        try:
            with torch.inference_mode():  # the decoder with the router outputs, as score_rows runs it
                return model.model(**batch, output_router_logits=True)
        finally:
            model.config._experts_implementation = previous

    for variant in variants:  # kernels chosen and memory pools grown for the longest and shortest shapes
        forward(variant, batches[0])
        forward(variant, batches[-1])
    times = {variant: [math.inf] * len(batches) for variant in variants}
    measured = 0
    reserve = 0.15 * box.seconds  # for the profiles
    for sweep in range(2):  # each batch's best of two, the variants back to back in turns
        for i, batch in enumerate(batches):
            if (sweep or i) and box.left() < reserve:  # one batch at least, whatever the box
                break
            shift = (sweep + i) % len(variants)
            order = [*list(variants)[shift:], *list(variants)[:shift]]
            for variant in order:
                times[variant][i] = min(times[variant][i], ctx.timed(lambda v=variant, b=batch: forward(v, b)))
            measured = max(measured, i + 1)
        if box.left() < reserve:
            break
    if measured < len(batches):
        notes.append(f"time box: {measured} of {len(batches)} batches measured (the longest rows first)")
    real = lengths[: plan[measured - 1].stop].tolist() if measured else []
    if not real:
        raise RuntimeError(f"the time box ({box.seconds:.0f} s) ended before one batch was measured")
    padded_tokens = sum(batch["input_ids"].numel() for batch in batches[:measured])
    seconds = {variant: sum(values[:measured]) for variant, values in times.items()}
    tokens = sum(real)
    flops = decoder_flops(select_moe, real)
    metrics.update(
        batches_measured=measured,
        tokens=tokens,
        padding_fraction=1 - tokens / padded_tokens,
        seconds=seconds,
        tokens_per_s=tokens / seconds["select_moe"],
        olmoe_tokens_per_s=tokens / seconds["olmoe"],
        select_moe_over_olmoe=seconds["select_moe"] / seconds["olmoe"],
        active_parameters=active_parameters(select_moe),
        total_parameters=sum(p.numel() for p in select_moe.parameters()),
        flops_per_token=flops / tokens,
    )
    if "select_moe_same_kernel" in seconds:
        metrics["select_moe_over_olmoe_same_experts_kernel"] = seconds["select_moe_same_kernel"] / seconds["olmoe"]
    peak = peak_bf16(torch.cuda.get_device_name()) if ctx.cuda else None
    if peak:
        metrics["mfu"] = flops / seconds["select_moe"] / peak
        metrics["olmoe_mfu"] = flops / seconds["olmoe"] / peak
        if "select_moe_same_kernel" in seconds:
            metrics["mfu_same_experts_kernel"] = flops / seconds["select_moe_same_kernel"] / peak
        metrics["peak_bf16_tflops"] = peak / 1e12
    else:
        notes.append("MFU omitted: no peak bf16 figure for this device (PEAK_BF16)")
    if box.left() > 0:
        middle = batches[measured // 2]
        metrics["profile"] = {"batch_shape": list(middle["input_ids"].shape)}
        for variant in variants:
            try:  # a diagnostic: a profiler that cannot start (no CUPTI) costs the profile, not the figures
                metrics["profile"][variant] = profile_forward(
                    lambda v=variant: forward(v, middle), variants[variant][0], ctx
                )
            except Exception as error:  # noqa: BLE001
                metrics["profile"][variant] = {"error": f"{type(error).__name__}: {error}"}
    ctx.drop_source()


def device_time(event, *names: str) -> float:
    """The first of these timing attributes an event has, in microseconds (torch renamed cuda_* to device_*)."""
    return next((value for name in names if (value := getattr(event, name, None)) is not None), 0.0)


PROFILED = (  # module name suffix -> what it is
    (".self_attn", "attention"),
    (".mlp.quality_gate", "quality_gate"),
    (".mlp.gate", "router"),
    (".mlp.experts", "experts"),
    (".mlp", "moe_block"),
)


def profile_forward(run: Callable[[], object], model, ctx: Context) -> dict:
    """One decoder forward under torch.profiler, its time split by module kind (device time on a GPU, CPU time on a
    CPU): attention, router, experts (the dispatch and the expert matmuls), quality gate, and the MoE block's
    remainder (mixing with the trash expert, for Select-MoE), plus the top operators."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    ranges, hooks = {}, []
    for name, module in model.model.named_modules():
        kind = next((kind for suffix, kind in PROFILED if name.endswith(suffix)), None)
        if kind is None:
            continue

        def enter(module, args, kind=kind):
            ranges[id(module)] = record_function(f"mygo::{kind}")
            ranges[id(module)].__enter__()

        def leave(module, args, output):
            ranges.pop(id(module)).__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    try:
        with profile(activities=activities) as prof:
            with record_function("mygo::forward"):
                run()
            ctx.sync()
    finally:
        for hook in hooks:
            hook.remove()
    kind_of_time = "device" if ctx.cuda else "cpu"

    def milliseconds(event) -> float:
        if ctx.cuda:
            return device_time(event, "device_time_total", "cuda_time_total") / 1e3
        return event.cpu_time_total / 1e3

    totals: dict[str, float] = {}
    for event in prof.events():
        if event.name.startswith("mygo::") and getattr(event, "device_type", DeviceType.CPU) == DeviceType.CPU:
            kind = event.name.removeprefix("mygo::")
            totals[kind] = totals.get(kind, 0.0) + milliseconds(event)
    result = {"time": kind_of_time, **{f"{kind}_ms": ms for kind, ms in sorted(totals.items())}}
    if "moe_block" in totals:
        parts = sum(totals.get(kind, 0.0) for kind in ("router", "experts", "quality_gate"))
        result["moe_block_rest_ms"] = totals["moe_block"] - parts
    averages = [event for event in prof.key_averages() if not event.key.startswith("mygo::")]

    def self_time(event) -> float:
        if ctx.cuda:
            return device_time(event, "self_device_time_total", "self_cuda_time_total")
        return event.self_cpu_time_total

    top = sorted(averages, key=self_time, reverse=True)[:8]
    result["top_ops_ms"] = [[event.key, self_time(event) / 1e3] for event in top]
    return result


# ------------------------------------------------------------------------------------------------ scoring


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


# ------------------------------------------------------------------------------------------------ k-means


def part_kmeans(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    from clustering import synthetic_features  # benchmarks/clustering.py: blobs around a shared direction

    from mygo.analysis.clustering import available_backends, fit_k_range, kmeans

    sizes = ctx.sizes
    clustering = read_config("select.yaml")["clustering"]
    options = clustering["kmeans"] | sizes.kmeans
    started = time.perf_counter()
    x = synthetic_features(sizes.kmeans_rows, sizes.kmeans_dims, sizes.kmeans_blobs, seed=0)
    metrics["features_s"] = time.perf_counter() - started
    k_range = fit_k_range(tuple(options["k_range"]), len(x), options["elbow_sample"])
    settings = dict(
        k_range=k_range,
        elbow_points=options["elbow_points"],
        elbow_sample=options["elbow_sample"],
        max_iters=options["max_iters"],
        seed=clustering["seed"],
    )
    metrics["settings"] = {"rows": len(x), "dims": x.shape[1], **settings, "k_range": list(k_range)}
    available = available_backends()
    accelerated = ["torch"] + (["cuml"] if "cuml" in available else [])
    if not ctx.cuda:
        notes.append("no GPU: the torch backend runs on the CPU here")
    # The torch backend's first call would otherwise pay for CUDA's start and its kernels' loading.
    kmeans(x[:1000], k=4, auto_k=False, backend="torch", elbow_sample=1000)
    results = {}
    for backend in [*accelerated, "sklearn"]:  # the CPU default last: it is the baseline, the others the figures
        if results and box.left() <= 0:  # the first backend at least, whatever the box
            notes.append(f"time box: backend {backend} not run")
            continue
        started = time.perf_counter()
        try:
            result = kmeans(x, backend=backend, **settings)
        except Exception as error:  # noqa: BLE001 - a broken backend (a cuML install) costs its figure only
            metrics[f"error_{backend}"] = f"{type(error).__name__}: {error}"
            notes.append(f"backend {backend} failed: {metrics[f'error_{backend}']}")
            continue
        seconds = time.perf_counter() - started
        results[backend] = result
        metrics[f"seconds_{backend}"] = seconds
        metrics[f"k_{backend}"] = result.chosen_k
        metrics[f"inertia_{backend}"] = result.inertia
    metrics["backends"] = list(results)
    if "sklearn" in results:
        for backend in accelerated:
            if backend in results:
                metrics[f"inertia_ratio_{backend}"] = results[backend].inertia / results["sklearn"].inertia
                if results[backend].chosen_k != results["sklearn"].chosen_k:
                    notes.append(
                        f"{backend} chose k={results[backend].chosen_k}, sklearn k={results['sklearn'].chosen_k}"
                    )
    timed = [metrics[f"seconds_{backend}"] for backend in accelerated if backend in results]
    if timed:
        metrics["gpu_seconds"] = min(timed)
    failed = [backend for backend in (*accelerated, "sklearn") if f"error_{backend}" in metrics]
    if failed:  # after the others' figures are in: the part is failed, what it measured stays
        raise RuntimeError("; ".join(f"{backend}: {metrics[f'error_{backend}']}" for backend in failed))


# ------------------------------------------------------------------------------------------------ training


def train_steps(
    ctx: Context, box: TimeBox, metrics: dict, model, trainable: list, batches: list, training: dict, steps: int
) -> None:
    """Optimizer steps under accelerate, as the Trainer takes them (autocast bf16 on a GPU, accumulation, gradient
    clipping, AdamW); the first step (allocations, kernel choice) is not timed."""
    import torch
    from accelerate import Accelerator

    accumulation = max(1, min(training["accumulation"], ctx.sizes.accumulation_cap))
    accelerator = Accelerator(
        mixed_precision="bf16" if ctx.cuda else "no", gradient_accumulation_steps=accumulation, cpu=not ctx.cuda
    )
    optimizer = torch.optim.AdamW(trainable, lr=training["learning_rate"], weight_decay=training["weight_decay"])
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pad = getattr(model.config, "pad_token_id", None) or 0
    timed_steps = timed_tokens = 0
    timed_s = 0.0
    losses = []
    batches = iter(batches)
    for step in range(steps):
        if step > 1 and box.left() <= 0:  # the untimed first step and one timed, whatever the box
            metrics["stopped_by_time_box"] = True
            break
        tokens = 0
        ctx.sync()
        started = time.perf_counter()
        for _ in range(accumulation):
            rows, labels = next(batches)
            batch = padded(rows, pad, ctx.device, labels)
            tokens += int(batch["attention_mask"].sum())
            with accelerator.accumulate(model):
                loss = training["loss"](model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, training["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
        losses.append(float(loss.detach()))
        ctx.sync()
        seconds = time.perf_counter() - started
        if step == 0:
            metrics["first_step_s"] = seconds
        else:
            timed_steps, timed_tokens, timed_s = timed_steps + 1, timed_tokens + tokens, timed_s + seconds
    if not all(math.isfinite(loss) for loss in losses):
        raise FloatingPointError(f"non-finite loss: {losses}")
    configured = training["accumulation"]
    metrics.update(
        micro_batch=training["micro_batch"],
        accumulation=accumulation,
        configured_accumulation=configured,
        timed_steps=timed_steps,
        losses=losses,
        trainable_parameters=sum(p.numel() for p in trainable),
    )
    if timed_steps:
        micro_per_s = timed_steps * accumulation / timed_s
        metrics.update(
            optimizer_steps_per_s=timed_steps / timed_s,
            micro_steps_per_s=micro_per_s,
            tokens_per_s=timed_tokens / timed_s,
            configured_step_s=configured / micro_per_s,  # one step of the configured global batch, projected
        )
    accelerator.free_memory()


def part_warmup(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    from mygo.models import SelectMoeConfig
    from mygo.models.configuration_select_moe import select_moe_settings
    from mygo.models.router_weights import is_router_parameter

    cfg = read_config("warmup.yaml")
    training = cfg["training"]
    if training["peft_mode"] != "full_rank":
        raise ValueError(f"configs/warmup.yaml training.peft_mode={training['peft_mode']!r}: this part runs full_rank")
    _, model = ctx.models(metrics)
    ctx.select_moe = None  # trained from here on: no later part may take it for the converted model
    settings = select_moe_settings(cfg["select_moe"])
    SelectMoeConfig(**settings)  # the warmup stage's settings check
    if settings.get("trash_expert_mode", model.config.trash_expert_mode) != model.config.trash_expert_mode:
        notes.append("trash_expert_mode differs from the conversion's; the conversion's is kept (set at build time)")
    for key, value in settings.items():  # what load_select_moe applies from the warmup config
        if key != "trash_expert_mode":
            setattr(model.config, key, value)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(is_router_parameter(name, training["train_router_gates"]))
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:  # as prepare_router_training: AdamW steps on bf16 gates would lose the updates
        parameter.data = parameter.data.float()
    micro = training["micro_batch_size"]
    accumulation = training["batch_size"] // micro
    count = ctx.sizes.warmup_steps * min(accumulation, ctx.sizes.accumulation_cap)
    batches = micro_batches(ctx.sizes, count, micro, model.config.vocab_size, ctx.sizes.max_length, seed=3)

    def loss(model, batch):  # L_lm + quality_loss_weight x L_quality (mygo.models.losses), as RouterTrainer's
        return model(**batch, output_router_logits=True).loss

    recipe = dict(
        accumulation=accumulation,
        micro_batch=micro,
        learning_rate=training["learning_rate"],
        weight_decay=training["weight_decay"],
        max_grad_norm=training["max_grad_norm"],
        loss=loss,
    )
    metrics["quality_loss_type"] = model.config.quality_loss_type
    train_steps(ctx, box, metrics, model, trainable, batches, recipe, ctx.sizes.warmup_steps)
    del model, trainable
    ctx.free()


def part_finetune(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = read_config("target/qwen2_5_1_5b.yaml")
    lora, training = target["lora"], target["training"]
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(ctx.device):
        model = Qwen2ForCausalLM._from_config(Qwen2Config(**ctx.sizes.target), dtype=ctx.dtype)
    ctx.sync()
    metrics["build_s"] = time.perf_counter() - started
    metrics["total_parameters"] = sum(p.numel() for p in model.parameters())
    model = get_peft_model(  # as the finetune stage's lora_model
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
        ),
    )
    if training["gradient_checkpointing"]:
        # transformers 5 renamed it (the old name warns); the GPU machine's transformers may be older
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    micro = training["micro_batch_size"]
    accumulation = training["batch_size"] // micro
    count = ctx.sizes.finetune_steps * min(accumulation, ctx.sizes.accumulation_cap)
    max_length = min(ctx.sizes.max_length, target["max_sequence_length"])
    batches = micro_batches(ctx.sizes, count, micro, ctx.sizes.target["vocab_size"], max_length, seed=4)

    def loss(model, batch):
        return model(**batch).loss

    recipe = dict(
        accumulation=accumulation,
        micro_batch=micro,
        learning_rate=training["learning_rate"],
        weight_decay=training["weight_decay"],
        max_grad_norm=training["max_grad_norm"],
        loss=loss,
    )
    metrics["lora"] = {key: lora[key] for key in ("r", "alpha", "dropout", "target_modules")}
    metrics["gradient_checkpointing"] = bool(training["gradient_checkpointing"])
    train_steps(ctx, box, metrics, model, trainable, batches, recipe, ctx.sizes.finetune_steps)
    del model, trainable
    free_memory()


PART_FUNCTIONS = {
    "forward": part_forward,
    "scoring": part_scoring,
    "kmeans": part_kmeans,
    "warmup": part_warmup,
    "finetune": part_finetune,
}


# ------------------------------------------------------------------------------------------------ running


def run_part(name: str, ctx: Context, box_s: float, memory: PeakMemory) -> dict:
    record: dict = {"status": "running", "time_box_s": round(box_s, 1), "metrics": {}, "notes": []}
    print(f"[gpu.py] {name}: start (time box {box_s:g} s)", file=sys.stderr, flush=True)
    free_memory()
    memory.reset()
    started = time.perf_counter()
    try:
        # The hard limit only catches a part that overruns its box by far: each part stops measuring by itself.
        with hard_limit(box_s * 1.25 + 30):
            if ctx.fail_part == name:
                raise RuntimeError("failure injected by --fail-part")
            PART_FUNCTIONS[name](ctx, TimeBox(box_s), record["metrics"], record["notes"])
        record["status"] = "ok"
    except TimeBoxExceeded as error:
        record.update(status="timeout", error=str(error))
    except Exception as error:  # noqa: BLE001 - a failing part is recorded and the others go on
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        record["traceback"] = traceback.format_exc(limit=12)
        print(record["traceback"], file=sys.stderr, flush=True)
    finally:
        record["seconds"] = time.perf_counter() - started
        record["metrics"]["peak_memory_gb"] = memory.peak_gb()
        record["metrics"]["peak_memory_kind"] = memory.kind if memory.reset_ok else f"{memory.kind} (process)"
    if record["status"] != "ok":
        ctx.free()  # whatever the part left half-built
    print(f"[gpu.py] {name}: {record['status']} in {record['seconds']:.1f} s", file=sys.stderr, flush=True)
    return record


def environment(device: str, args: argparse.Namespace) -> dict:
    import torch

    def version(*names: str) -> str | None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
        "small": args.small,
        "parts": args.parts,
        "time_boxes_s": args.time_box,
        "versions": {
            name: version(*aliases)
            for name, *aliases in (
                ("torch", "torch"),
                ("transformers", "transformers"),
                ("peft", "peft"),
                ("accelerate", "accelerate"),
                ("numpy", "numpy"),
                ("scikit-learn", "scikit-learn"),
                ("pandas", "pandas"),
                ("cuml", "cuml", "cuml-cu12", "cuml-cu11"),
            )
        },
    }
    if device == "cuda":
        info["peak_bf16_tflops"] = (peak_bf16(info["device_name"]) or 0) / 1e12 or None
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return info


# Table rows: (part, metric, label, target as (comparison, bound) or None).
TABLE = (
    ("forward", "tokens_per_s", "Select-MoE forward tokens/s", None),
    ("forward", "olmoe_tokens_per_s", "OLMoE forward tokens/s", None),
    ("forward", "mfu", "forward MFU (Select-MoE)", (">=", 0.40)),
    ("forward", "select_moe_over_olmoe", "Select-MoE / OLMoE time", ("<=", 1.10)),
    ("forward", "select_moe_over_olmoe_same_experts_kernel", "  same, OLMoE's experts kernel", None),
    ("forward", "peak_memory_gb", "peak memory GB (both models)", None),
    ("scoring", "samples_per_s", "samples/s", None),
    ("scoring", "tokens_per_s", "tokens/s", None),
    ("scoring", "projected_270k_minutes", "270k LESS pool, minutes", ("<=", 20.0)),
    ("scoring", "peak_memory_gb", "peak memory GB", None),
    ("kmeans", "gpu_seconds", "elbow + fit s, best accelerated", ("<=", 20.0)),
    ("kmeans", "seconds_sklearn", "elbow + fit s, CPU default", None),
    ("kmeans", "inertia_ratio_torch", "inertia torch / CPU default", None),
    ("kmeans", "inertia_ratio_cuml", "inertia cuML / CPU default", None),
    ("warmup", "optimizer_steps_per_s", "optimizer steps/s", None),
    ("warmup", "tokens_per_s", "tokens/s", None),
    ("warmup", "peak_memory_gb", "peak memory GB", None),
    ("finetune", "optimizer_steps_per_s", "optimizer steps/s", None),
    ("finetune", "tokens_per_s", "tokens/s", None),
    ("finetune", "peak_memory_gb", "peak memory GB", None),
)


def table_rows(report: dict, targets_apply: bool) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for part, record in report["parts"].items():
        if record["status"] != "ok":
            rows.append((part, "status", f"{record['status']}: {record.get('error', '')}"[:70], "", ""))
        for name, metric, label, target in TABLE:
            value = record["metrics"].get(metric)
            if name != part or value is None:
                continue
            shown = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
            met = "-"
            if target and targets_apply:
                met = "yes" if (value >= target[1] if target[0] == ">=" else value <= target[1]) else "no"
            rows.append((part, label, shown, f"{target[0]} {target[1]:g}" if target else "", met))
    return rows


def print_table(rows: list[tuple[str, ...]], targets_apply: bool) -> None:
    header = ("part", "metric", "value", "target", "met?")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(line.format(*header))
    print(line.format(*("-" * width for width in widths)))
    for row in rows:
        print(line.format(*row))
    if not targets_apply:
        print("(targets are for one H100/H200-class GPU at full size: not judged on this run)")


def write_report(path: Path, report: dict) -> None:
    from mygo.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:  # a run killed mid-write leaves the previous report, never half of one
        temporary.write_text(json.dumps(report, indent=1, default=str))


def parts_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part(s) {unknown or [text]}; choose from {','.join(PARTS)}")
    return names


def time_boxes(text: str) -> dict[str, float]:
    boxes = dict(TIME_BOXES)
    for item in filter(None, (item.strip() for item in text.split(","))):
        name, _, seconds = item.partition("=")
        if name not in PARTS:
            raise argparse.ArgumentTypeError(f"--time-box: unknown part {name!r}; choose from {','.join(PARTS)}")
        try:
            boxes[name] = float(seconds)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--time-box: {item!r} is not PART=SECONDS") from None
    return boxes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    parser.add_argument("--parts", type=parts_list, default=list(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--small", action="store_true", help="tiny sizes: the whole run in seconds on a CPU")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument(
        "--time-box",
        type=time_boxes,
        default=dict(TIME_BOXES),
        help="seconds a part may measure, e.g. scoring=200,kmeans=60 (defaults: "
        + ",".join(f"{name}={seconds:g}" for name, seconds in TIME_BOXES.items())
        + ")",
    )
    parser.add_argument("--total-s", type=float, default=TOTAL_S, help="all parts' time boxes together, at most")
    parser.add_argument("--fail-part", choices=PARTS, help=argparse.SUPPRESS)  # tests: a part that raises
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu.py: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    ctx = Context(device, SMALL if args.small else FULL, args.small, args.fail_part)
    report = {"environment": environment(device, args), "sizes": asdict(ctx.sizes), "parts": {}}
    memory = PeakMemory(ctx.cuda)
    deadline = started + args.total_s
    for name in (name for name in RUN_ORDER if name in args.parts):
        left = deadline - time.perf_counter()
        if left < 5:
            report["parts"][name] = {"status": "skipped", "error": f"--total-s={args.total_s:g} spent", "metrics": {}}
            continue
        report["parts"][name] = run_part(name, ctx, min(args.time_box[name], left), memory)
        later = RUN_ORDER[RUN_ORDER.index(name) + 1 :]
        if not any(part in args.parts for part in later if part in MODEL_PARTS):
            ctx.free()  # no later part takes the Select-MoE
        write_report(args.out, report)  # after every part: a run cut short keeps what it measured
    report["parts"] = {name: report["parts"][name] for name in PARTS if name in report["parts"]}
    report["wall_s"] = time.perf_counter() - started
    targets_apply = ctx.cuda and not args.small
    rows = table_rows(report, targets_apply)
    report["table"] = [dict(zip(("part", "metric", "value", "target", "met"), row, strict=True)) for row in rows]
    print_table(rows, targets_apply)
    write_report(args.out, report)
    print(f"[gpu.py] {report['wall_s']:.1f} s in all; report in {args.out}", file=sys.stderr)
    return 0 if all(record["status"] == "ok" for record in report["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
