"""Helpers the test modules share: quick tiny settings, artifact listings, a two-process launch, a store switch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
    "target.build.architecture.max_position_embeddings=1024",  # lm-eval refuses an answer longer than this
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


def copy_store(empty_store: Path, directory: Path) -> str:
    """A new MLflow store in `directory`, copied from the session's `empty_store` fixture; its URI."""
    shutil.copyfile(empty_store, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def use_store(uri: str, patch: pytest.MonkeyPatch) -> None:
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        patch.delenv(name, raising=False)
    mlflow.set_tracking_uri(uri)
    # The experiment an earlier test made active belongs to another store: start from this store's default one.
    mlflow.set_experiment(experiment_id="0")
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment exports it; the patch restores what was there


def as_tracking_store(built: dict, patch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A fixture's body: the built store (a dict with its "uri") as the test's tracking store, and any run the
    test left active ended after it."""
    use_store(built["uri"], patch)
    yield built
    while mlflow.active_run():
        mlflow.end_run()


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


def quick_warmup_given_convert(root: Path, *leave_out: str) -> list[str]:
    """The quick warmup settings for a warmup given its convert run (the model sizes are the convert run's)."""
    dropped = ("model.", "upstream.", *leave_out)
    return [o for o in quick_warmup_overrides(root) if not o.startswith(dropped)]


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
    warmup = quick_warmup_given_convert(root)
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


def mlflow_run(entry: str, params: dict[str, object], cwd: Path, tracking_uri: str) -> subprocess.CompletedProcess:
    """`mlflow run <repo> --env-manager local -e <entry> -P k=v ...`, as a user runs it, against `tracking_uri`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    command = ["mlflow", "run", str(REPO), "--env-manager", "local", "-e", entry, "--experiment-name", "mygo"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


def scored_copy(template: dict, tmp_path_factory) -> dict:
    """A store of its own holding the template's runs: what a module adds, no other module sees.

    The runs' files (the pool under `root`, the shards, the converted model, the artifacts) are the template's,
    shared: a test that changes one puts it back."""
    copy = tmp_path_factory.mktemp("store") / "mlflow.db"
    shutil.copyfile(template["root"] / "mlflow.db", copy)
    return template | {"uri": f"sqlite:///{copy}"}


SUCCEEDED = re.compile(r"=== Run \(ID '([0-9a-f]{32})'\) succeeded ===")


def mlflow_run_finished(entry: str, params: dict[str, object], store: dict) -> mlflow.entities.Run:
    """`mlflow run` it in `store["root"]` against `store["uri"]`; the run MLflow made for it, which must have
    FINISHED and recorded every -P as a param. Its stdout lands in `store["stdout"][entry]`."""
    done = mlflow_run(entry, params, store["root"], store["uri"])
    found = SUCCEEDED.search(done.stderr)
    assert done.returncode == 0 and found, f"mlflow run -e {entry} {params}:\n{done.stderr[-4000:]}"
    run = mlflow.get_run(found.group(1))
    assert run.info.status == "FINISHED", entry
    assert set(params) <= set(run.data.params), (entry, set(params) - set(run.data.params))
    store.setdefault("stdout", {})[entry] = done.stdout
    return run


def convert_only_space(directory: Path) -> Path:
    """A search space whose trials run convert alone (seconds): for tests of the sweep machinery, not of a study."""
    path = directory / "convert_only.yaml"
    path.write_text(
        "objective: {metric: parity/bypass_logits_max_abs_diff, direction: minimize, stage: convert}\n"
        "params:\n  convert.select_moe.quality_gate_init_std: {type: float, low: 0.01, high: 0.05}\n"
    )
    return path


def tiny_llama(vocab_size: int, max_positions: int = 512):
    """A one-layer Llama of random weights, for running lm-eval tasks end to end in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
    )
    return LlamaForCausalLM(config).eval()
