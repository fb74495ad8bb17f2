"""Faults that lose nothing: training killed with SIGKILL resumes to the same weights, and the run it
left RUNNING is closed as KILLED and linked to the run that continues it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from safetensors.numpy import load_file

from mygo.config import load_config
from mygo.data.demo_pool import ensure_demo_pool
from mygo.finetune import run_finetune
from mygo.tracking import FOLLOWS_TAG
from mygo.training import RESUMED_FROM_TAG
from mygo.warmup import run_warmup
from tests.test_finetune_evaluate import quick_finetune_overrides
from tests.test_warmup_stage import REPO, quick_warmup_overrides


def kill_once_checkpointed(command: list[str], runs_dir: Path, known: set[str], uri: str) -> str:
    """Run `command`, SIGKILL it as soon as a new run under `runs_dir` holds a complete checkpoint; its run ID."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        done = [p for p in runs_dir.glob("*/checkpoints/checkpoint-*/trainer_state.json") if p.parts[-4] not in known]
        if done:
            process.kill()  # SIGKILL: no handler runs, the MLflow run stays RUNNING
            process.wait()
            return done[0].parts[-4]
        time.sleep(0.1)
    stderr = process.stderr.read().decode()[-3000:] if process.poll() is not None else "timed out"
    process.kill()
    pytest.fail(f"no checkpoint appeared before the process ended: {stderr}")


def max_difference(first: str, second: str) -> float:
    a, b = load_file(first), load_file(second)
    assert set(a) == set(b)
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


def assert_killed_and_followed(killed: str, resumed) -> None:
    assert mlflow.get_run(killed).info.status == "KILLED"
    assert "ended without closing the run" in mlflow.get_run(killed).data.tags["mygo.abandoned"]
    assert resumed.data.tags[RESUMED_FROM_TAG] == killed and killed in resumed.data.tags[FOLLOWS_TAG].split(",")
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(resumed.info.run_id, "train/loss")]
    checkpoint_step = int(Path(resumed.data.params["resumed_from_checkpoint"]).name.rpartition("-")[2])
    assert min(steps) > checkpoint_step  # it went on from the checkpoint rather than starting over


@pytest.mark.timeout(600)
def test_warmup_killed_mid_training_resumes_to_the_same_router_weights(tracking_store, tmp_path):
    overrides = [*quick_warmup_overrides(tmp_path), "training.epochs=8", "training.save_steps=3"]
    reference = run_warmup(load_config("warmup", overrides))  # uninterrupted, and it makes the convert run

    command = [sys.executable, "-m", "mygo.cli", "warmup", *overrides]
    killed = kill_once_checkpointed(command, tmp_path / "warmup", {reference}, tracking_store)
    assert mlflow.get_run(killed).info.status == "RUNNING"  # what SIGKILL leaves behind

    resumed = mlflow.get_run(run_warmup(load_config("warmup", [*overrides, "training.resume=true"])))
    assert resumed.info.status == "FINISHED"
    assert_killed_and_followed(killed, resumed)
    runs = (reference, resumed.info.run_id)
    weights = [str(tmp_path / "warmup" / run / "router" / "weights.safetensors") for run in runs]
    assert max_difference(*weights) <= 1e-5
    # The last logging window's loss (the same batches through the same weights); the Trainer's own
    # train_loss average counts only the steps a resumed run made, so it is not compared.
    last = [mlflow.get_run(run).data.metrics["train/loss"] for run in runs]
    assert last[1] == pytest.approx(last[0], rel=1e-4)


@pytest.mark.timeout(600)
def test_finetune_killed_mid_training_resumes_to_the_same_adapter(tracking_store, tmp_path):
    pool = ensure_demo_pool(tmp_path / "demo", num_samples=60, noise_fraction=0.2, seed=0, max_answer_chars=300)
    records = [line for path in sorted(pool.glob("*/*.jsonl")) for line in path.read_text().splitlines()]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(records[:48]) + "\n")
    overrides = quick_finetune_overrides(tmp_path, f"data.path={data}", "target.training.epochs=8")
    overrides.append("training.save_steps=3")
    reference = run_finetune(load_config("finetune", overrides))  # uninterrupted, and it builds the tiny target

    command = [sys.executable, "-m", "mygo.cli", "finetune", *overrides]
    killed = kill_once_checkpointed(command, tmp_path / "finetune", {reference}, tracking_store)
    resumed = mlflow.get_run(run_finetune(load_config("finetune", [*overrides, "training.resume=true"])))
    assert_killed_and_followed(killed, resumed)
    adapters = [
        str(tmp_path / "finetune" / run / "adapter" / "adapter_model.safetensors")
        for run in (reference, resumed.info.run_id)
    ]
    assert max_difference(*adapters) <= 1e-5
