"""Faults of the tracking server: training goes on through an outage, buffers its logs and delivers them when the
server is back; a server gone for good at the end of training keeps the weights and says where."""

import os
import subprocess
import sys
import time

import mlflow
import pytest
from safetensors.numpy import load_file

from mygo.config import load_config
from mygo.tracking.runs import stage_run
from tests.helpers import REPO, quick_warmup_overrides, use_store
from tests.servers import TrackingServer

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


def start_warmup_and_wait_for_logs(server, tmp_path, retries: str | None, *extra: str):
    """A warmup subprocess on the server; returns (process, run id) once three steps' logs arrived."""
    client = mlflow.MlflowClient(tracking_uri=server.url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = server.url
    if retries is not None:
        env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = retries
    overrides = [*quick_warmup_overrides(tmp_path), "training.epochs=8", "training.logging_steps=1", *extra]
    command = [sys.executable, "-m", "mygo.cli", "warmup", *overrides]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.`mygo.stage` = 'warmup'"
        )
        if runs and len(client.get_metric_history(runs[0].info.run_id, "loss/total")) >= 3:
            return process, runs[0].info.run_id
        time.sleep(0.3)
    process.kill()
    pytest.fail(f"warmup never logged: {process.communicate()[1][-3000:]}")


@pytest.mark.timeout(600)
def test_warmup_trains_through_a_tracking_server_outage(tmp_path):
    """The server stops for a while and comes back. With no HTTP retries every log call in the outage fails at once,
    so the buffering is what carries the logs over (under MLflow's default retries, a call simply outlasts a short
    outage, which tests MLflow rather than mygo; the outage at the end of training runs under them)."""
    (tmp_path / "server").mkdir()
    server = TrackingServer(tmp_path / "server").start()
    client = mlflow.MlflowClient(tracking_uri=server.url)
    process, run_id = start_warmup_and_wait_for_logs(server, tmp_path, "0")
    try:
        server.stop()
        time.sleep(8)  # training goes on with no tracking server
        assert process.poll() is None, "training died with the tracking server"
        server.start()
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        assert "tracking store unreachable, buffering metrics and training on" in stderr
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run_id, "loss/total")]
        assert sorted(steps) == list(range(1, 49))  # 8 epochs x 6 steps: every step's log arrived
    finally:
        process.kill()
        server.stop()


@pytest.mark.timeout(600)
def test_an_outage_at_the_end_of_training_keeps_the_weights_and_says_where(tmp_path):
    """The server goes away for good during training, with MLflow's default retries: training goes on at full
    speed, the router weights are saved, the error names them, and the next stage run closes the run."""
    (tmp_path / "server").mkdir()
    server = TrackingServer(tmp_path / "server").start()
    process, run_id = start_warmup_and_wait_for_logs(server, tmp_path, None, "training.tracking_flush_s=5")
    try:
        server.stop()
        stopped = time.monotonic()
        _, stderr = process.communicate(timeout=400)
        # 45 more steps, each logged: one blocking log call alone would take minutes under the default retries.
        assert time.monotonic() - stopped < 150, "training stalled on the unreachable server"
        weights = tmp_path / "warmup" / run_id / "router" / "weights.safetensors"
        assert process.returncode == 3, stderr[-3000:]
        assert "stayed unreachable for 5 s after training" in stderr and f"weights are saved at {weights}" in stderr
        assert set(load_file(str(weights))) and "Traceback" not in stderr.split("mygo warmup: error:")[-1]

        server.start()
        with pytest.MonkeyPatch.context() as patch:
            use_store(server.url, patch)
            with stage_run("convert", load_config("convert")):  # the next stage run on this machine
                pass
            closed = mlflow.get_run(run_id)
        assert closed.info.status == "KILLED" and "ended without closing the run" in closed.data.tags["mygo.abandoned"]
    finally:
        process.kill()
        server.stop()
