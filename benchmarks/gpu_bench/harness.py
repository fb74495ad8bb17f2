"""What every part runs within: the parts and their run order, the sizes (full, and `--small`'s), the time boxes
(TimeBox, BoxSpent, and the hard limit's TimeBoxExceeded), the project configs read with PyYAML, the Context the
parts share (the device and the Select-MoE built once for forward, scoring and warmup), and each part's peak memory.
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # benchmarks/gpu_bench/harness.py -> the repository
CONFIGS = REPO / "configs"
PARTS = ("forward", "scoring", "kmeans", "warmup", "finetune")
# Run order: the Select-MoE built for forward is reused by scoring and warmup (which trains it), then dropped.
RUN_ORDER = ("forward", "scoring", "warmup", "kmeans", "finetune")
TIME_BOXES = {"forward": 75.0, "scoring": 150.0, "warmup": 60.0, "kmeans": 100.0, "finetune": 60.0}
MODEL_PARTS = ("forward", "scoring", "warmup")  # the parts that take the converted Select-MoE
TOTAL_S = 465.0  # the 8 minutes, less start-up (imports, CUDA context) and the JSON
LESS_POOL = 270_000

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
