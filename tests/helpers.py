"""Helpers the test modules share: quick tiny settings, artifact listings, a two-process launch, a store switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from mygo.builtin.tokenizer import train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]

# The tiny preset, shrunk so that a test builds it in seconds.
QUICK_TINY = [
    "model.vocab_size=512",
    "model.training.steps=8",
    "model.training.batch_size=4",
    "model.training.block_size=32",
    "model.training.max_train_tokens=20000",
    "model.training.max_heldout_tokens=2000",
]

# The tiny target shrunk to seconds: a small vocabulary and model, a few pretraining steps.
QUICK_TARGET = [
    "target.build.vocab_size=512",
    "target.build.architecture.hidden_size=32",
    "target.build.architecture.intermediate_size=64",
    "target.build.architecture.num_attention_heads=2",
    "target.build.architecture.num_key_value_heads=2",
    "target.build.architecture.max_position_embeddings=256",
    "target.build.training.steps=8",
    "target.build.training.batch_size=4",
    "target.build.training.block_size=32",
    "target.build.training.max_train_tokens=20000",
    "target.build.training.max_heldout_tokens=2000",
    "target.max_sequence_length=192",
]


def quick_finetune_overrides(root: Path, *extra: str) -> list[str]:
    return [
        *QUICK_TARGET,
        "target.training.batch_size=8",
        "target.training.micro_batch_size=4",
        "target.training.epochs=2",
        "training.logging_steps=1",
        f"training.output_dir={root / 'finetune'}",
        f"data.cache_dir={root / 'cache'}",
        *extra,
    ]


def quick_evaluate_overrides(root: Path, *extra: str) -> list[str]:
    return [*QUICK_TARGET, "evaluation.limit=4", f"output_dir={root / 'evaluate'}", *extra]


def use_store(uri: str, patch: pytest.MonkeyPatch) -> None:
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        patch.delenv(name, raising=False)
    mlflow.set_tracking_uri(uri)


def quick_warmup_overrides(tmp_path: Path) -> list[str]:
    """The default tiny setup, shrunk to seconds: a small demo pool, short sequences, a few steps."""
    return [
        *QUICK_TINY,
        f"upstream.convert_overrides='convert.output_dir={tmp_path / 'convert'}'",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.demo.num_samples=120",
        "dataset.max_sequence_length=192",
        "dataset.subset_ratio=0.4",
        "training.batch_size=8",
        "training.micro_batch_size=4",
        "training.logging_steps=2",
        "training.probe_samples=40",
        "training.probe_every=3",
        f"training.output_dir={tmp_path / 'warmup'}",
    ]


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    paths = set()
    for info in mlflow.MlflowClient().list_artifacts(run_id, path):
        paths |= artifact_paths(run_id, info.path) if info.is_dir else {info.path}
    return paths


def run_two_processes(entrypoint: str, overrides: list[str], cwd: Path, tracking_uri: str):
    """`torchrun --nproc_per_node 2 entrypoints/<entrypoint> ...`, as a multi-GPU launch runs it (gloo on CPU)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += [str(REPO / "entrypoints" / entrypoint), *overrides]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def pipeline_overrides(root, warmup_extra: tuple[str, ...] = ()) -> list[str]:
    warmup = [o for o in quick_warmup_overrides(root) if not o.startswith(("model.", "upstream."))]
    convert = [*QUICK_TINY, f"convert.output_dir={root / 'convert'}"]
    stages = {
        "convert": convert,
        "warmup": [*QUICK_TINY, *warmup, *warmup_extra],
        "score": [f"score.output_dir={root / 'score'}"],
        "select": [f"output_dir={root / 'select'}", "clustering.kmeans.k_range=[2,6]", "selection.percentage=0.1"],
        "finetune": quick_finetune_overrides(root),
        "evaluate": quick_evaluate_overrides(root),
    }
    return [f"stage_overrides.{stage}='{' '.join(values)}'" for stage, values in stages.items()]


def local_olmoe(model, tmp_path: Path) -> Path:
    """A local OLMoE checkpoint directory with a tokenizer, as a user would point `source` at."""
    directory = tmp_path / "olmoe"
    model.save_pretrained(directory)
    train_bpe_tokenizer(["some real words to learn from"] * 4, vocab_size=300).save_pretrained(directory)
    return directory
