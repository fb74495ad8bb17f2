"""Scoring speed and memory, as ratios within one run: `python benchmarks/scoring.py [--quick]`.

1. Select-MoE forward time over plain OLMoE forward time, same weights and batch (target <= 1.10).
2. mygo's scorer (decoder only, length-bucketed batches) over a naive scorer (pool order, full
   forward with the LM head, a Python loop per sample), in samples/s on one pool (target >= 2).
3. Peak RSS of scoring 50k samples over 5k samples, streamed into shards (target <= 1.2).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from omegaconf import OmegaConf
from timing import best_seconds
from transformers import OlmoeConfig, OlmoeForCausalLM

from mygo.analysis.score_shards import plan_shards
from mygo.builtin.tokenizer import train_bpe_tokenizer
from mygo.data.chat import IGNORE_INDEX
from mygo.models import convert_olmoe_to_select_moe
from mygo.stages.score import score_shards

MODEL = dict(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_experts=16,
    num_experts_per_tok=4,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=None,
)
SCORE_CFG = OmegaConf.create(
    {
        "score": {
            "max_batch_tokens": 8192,
            "max_batch_size": 64,
            "feature_dtype": "float16",
            "shard_size": 2048,
            "ifd": False,
        }
    }
)


def synthetic_pool(samples: int, seed: int = 0, max_length: int = 512) -> datasets.Dataset:
    """Token sequences with the long-tailed length spread of instruction data (log-normal, median ~120)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(120), sigma=0.8, size=samples), 16, max_length).astype(int)
    ids = [rng.integers(2, MODEL["vocab_size"], length).tolist() for length in lengths]
    labels = [[IGNORE_INDEX] * (len(row) // 3) + row[len(row) // 3 :] for row in ids]  # a prompt, then the answer
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels, "length": lengths.tolist()})


def tokenizer():
    """A byte-level BPE of the model's vocabulary size: score decodes prompts and answers for `overlap`."""
    texts = [f"def function_{i}(value): return value * {i} # sample text {i}" for i in range(2000)]
    return train_bpe_tokenizer(texts, vocab_size=MODEL["vocab_size"])


# Memory flatness does not depend on the model's size; a small one keeps 50k samples to a minute or two.
SMALL_MODEL = MODEL | dict(
    hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_experts=4, num_experts_per_tok=2
)


def models(config: dict = MODEL):
    torch.manual_seed(0)
    olmoe = OlmoeForCausalLM(OlmoeConfig(**config)).eval()
    return olmoe, convert_olmoe_to_select_moe(olmoe).eval()


def forward_ratio() -> float:
    olmoe, select_moe = models()
    batch = torch.randint(2, MODEL["vocab_size"], (8, 256))
    with torch.inference_mode():
        plain = best_seconds(lambda: olmoe(input_ids=batch), repeat=5)
        ours = best_seconds(lambda: select_moe(input_ids=batch), repeat=5)
    print(f"forward: OLMoE {plain * 1e3:.1f} ms, Select-MoE {ours * 1e3:.1f} ms, ratio {ours / plain:.3f}")
    return ours / plain


@torch.inference_mode()
def naive_scorer(model, pool: datasets.Dataset, batch_size: int = 16) -> None:
    """The obvious scorer: pool order, fixed batches, full model with LM head, per-sample Python loop."""
    for start in range(0, len(pool), batch_size):
        rows = pool[start : start + batch_size]["input_ids"]
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        outputs = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
        for i, row in enumerate(rows):
            for layer in outputs.router_logits:
                torch.sigmoid(layer["quality_score"][i, : len(row)]).mean()
                layer["moe_logits"].view(len(rows), width, -1)[i, : len(row)].mean(0)


def throughput_ratio(samples: int) -> float:
    _, model = models()
    pool = synthetic_pool(samples)
    plan = plan_shards(np.array(pool["length"]), SCORE_CFG.score.shard_size)
    with tempfile.TemporaryDirectory() as work_dir:
        shards = list(range(len(plan)))
        bpe = tokenizer()
        ours = best_seconds(lambda: score_shards(model, pool, plan, shards, Path(work_dir), SCORE_CFG, bpe), 1)
    naive = best_seconds(lambda: naive_scorer(model, pool), 1)
    print(f"{samples} samples: naive {samples / naive:.0f}/s, mygo {samples / ours:.0f}/s, ratio {naive / ours:.2f}")
    return naive / ours


def peak_rss_mb(samples: int) -> float:
    """Peak RSS of a child process that scores `samples` from an on-disk (memory-mapped) pool.

    The pool is written here, in this process, so the child's peak is the scorer's alone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_pool(samples, max_length=64).save_to_disk(f"{tmp}/pool")
        command = [sys.executable, __file__, "--rss-child", tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def peak_rss_since_reset() -> float:
    """This process's peak RSS in MB. On Linux it is reset at the child's start: a forked child otherwise
    inherits its parent's high-water mark, which grows with the pool the parent just built."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(directory: str) -> None:
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")  # reset the peak-RSS high-water mark (Linux)
    pool = datasets.load_from_disk(f"{directory}/pool")
    _, model = models(SMALL_MODEL)
    plan = plan_shards(np.array(pool["length"]), SCORE_CFG.score.shard_size)
    score_shards(model, pool, plan, list(range(len(plan))), Path(directory), SCORE_CFG, tokenizer())
    print(peak_rss_since_reset())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller pools (a minute instead of several)")
    parser.add_argument("--parts", default="forward,throughput,rss", help="which measurements, comma-separated")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)  # internal: the measured process
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child)
    parts = args.parts.split(",")
    if "forward" in parts:
        print(f"forward ratio {forward_ratio():.3f} (target <= 1.10)")
    if "throughput" in parts:
        print(f"scorer speed-up {throughput_ratio(500 if args.quick else 2000):.2f} (target >= 2)")
    if "rss" in parts:
        small, large = (2000, 20000) if args.quick else (5000, 50000)
        rss_small, rss_large = peak_rss_mb(small), peak_rss_mb(large)
        print(f"peak RSS: {small} samples {rss_small:.0f} MB, {large} samples {rss_large:.0f} MB")
        print(f"RSS ratio {rss_large / rss_small:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
