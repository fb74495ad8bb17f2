"""Faults that lose nothing: training or scoring killed with SIGKILL resumes to the same result, the run it
left RUNNING is closed as KILLED and linked to the run that continues it, a sweep survives a dead worker, and a full
disk is a clear error. A tracking server's outages: tests/test_faults_tracking_server.py."""

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from safetensors.numpy import load_file

from mygo.analysis.score_shards import load_router_data
from mygo.config import load_config
from mygo.data.demo_pool.build import ensure_demo_pool
from mygo.stages.finetune import run_finetune
from mygo.stages.score import run_score
from mygo.stages.warmup import run_warmup
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG
from mygo.tracking.runs import FOLLOWS_TAG
from mygo.training.hf_trainer import RESUMED_FROM_TAG
from mygo.workflows.pipeline import run_pipeline
from mygo.workflows.sweep import run_sweep
from tests.helpers import REPO, pipeline_overrides, quick_finetune_overrides, quick_warmup_overrides

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


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


@pytest.mark.timeout(600)
def test_score_killed_mid_pool_rescores_only_the_unfinished_shards(tracking_store, tmp_path):
    warmup = run_warmup(load_config("warmup", quick_warmup_overrides(tmp_path)))
    settings = [f"upstream.warmup_run={warmup}", "score.shard_size=8", "score.max_batch_size=2"]
    reference = run_score(load_config("score", [*settings, f"score.output_dir={tmp_path / 'ref'}"]))
    overrides = [*settings, f"score.output_dir={tmp_path / 'score'}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking_store
    command = [sys.executable, "-m", "mygo.cli", "score", *overrides]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list((tmp_path / "score").glob("*/shard-*.json"))) < 3 and time.monotonic() < deadline:
        assert process.poll() is None, "scoring ended before it could be interrupted"
        time.sleep(0.05)
    process.kill()
    process.wait()
    finished = len(list((tmp_path / "score").glob("*/shard-*.json")))
    assert 3 <= finished < 15  # 120 samples in 15 shards of 8

    resumed = mlflow.get_run(run_score(load_config("score", overrides)))
    metrics = resumed.data.metrics
    assert metrics["score/shards_reused"] == finished and metrics["score/scored_now"] == 120 - 8 * finished
    assert resumed.data.tags[FOLLOWS_TAG]  # the killed score run, closed as KILLED
    assert mlflow.get_run(resumed.data.tags[FOLLOWS_TAG]).info.status == "KILLED"
    first, again = (mlflow.get_run(run).data.tags[ROUTER_DATA_PATH_TAG] for run in (reference, resumed.info.run_id))
    # Equal to an uninterrupted run (within float32 rounding: the killed process scored in another process).
    np.testing.assert_allclose(load_router_data(first).quality, load_router_data(again).quality, rtol=0, atol=1e-6)
    np.testing.assert_allclose(load_router_data(first).features, load_router_data(again).features, rtol=0, atol=1e-3)


@pytest.mark.timeout(900)
def test_a_sweep_worker_killed_mid_trial_fails_that_trial_and_the_study_completes(tracking_store, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = ["sweep.space=sweeps/selection_noise.yaml", "sweep.n_trials=3", f"sweep.storage={storage}"]
    settings += ["sweep.heartbeat_interval=1", "sweep.grace_period=3"]
    overrides = [*pipeline_overrides(tmp_path), *settings]
    run_pipeline(load_config("main", [*pipeline_overrides(tmp_path), "pipeline.until=score"]))

    # A worker killed while its first trial runs.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking_store
    worker = subprocess.Popen(
        [sys.executable, "-m", "mygo.cli", "sweep", *overrides],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None:
        if mlflow.search_runs(
            search_all_experiments=True,
            filter_string="tags.`mygo.stage` = 'select' and attributes.status = 'RUNNING'",
            output_format="list",
        ):
            break
        time.sleep(0.05)
    worker.kill()
    worker.wait()
    time.sleep(4)  # past the grace period: the dead worker's trial has stopped beating

    run_sweep(load_config("sweep", overrides))  # another worker joins and finishes the study
    study = optuna.load_study(study_name="selection_noise", storage=storage)
    states = [trial.state for trial in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    failed = [trial for trial in study.get_trials() if trial.state == TrialState.FAIL]
    assert len(failed) == 1  # the dead worker's trial, failed by the heartbeat and retried
    retried = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params
    assert not mlflow.search_runs(
        search_all_experiments=True,
        filter_string="attributes.status = 'RUNNING' and tags.`mygo.stage` != 'sweep'",
        output_format="list",
    )  # the dead worker's trial and stage runs were closed as KILLED


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
import numpy as np
from mygo.analysis.score_shards import shard_problem, write_shard


signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
directory = Path(sys.argv[1])
try:
    write_shard(directory, 0, np.arange(4000), np.zeros((4000, 2)), np.zeros((4000, 16, 64), np.float16))
except OSError as error:
    print("ERROR", error)
print("PROBLEM", shard_problem(directory, 0))
"""


def test_a_full_disk_while_writing_a_shard_is_a_clear_error_and_leaves_no_half_file(tmp_path):
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"ERROR writing {tmp_path}/shard-00000.features.npy failed" in done.stdout
    assert "nothing was written under that name" in done.stdout
    assert "PROBLEM shard-00000.json missing (not finished)" in done.stdout  # a rerun scores the shard again
    left = sorted(path.name for path in tmp_path.iterdir())
    assert "shard-00000.features.npy" not in left and not [name for name in left if name.endswith(".tmp")]
