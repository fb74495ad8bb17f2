"""Abandoned-run detection by process token: a live process in another container sharing the host name, a
reused PID, and a process that really ended, each against a real MLflow store and real processes."""

import socket
import subprocess
import sys

import mlflow
import pytest

from mygo.config import load_config
from mygo.tracking.process_identity import Liveness, liveness, process_token
from mygo.tracking.runs import HOST_TAG, PID_TAG, PROCESS_TAG, STAGE_TAG, stage_run

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def running_run(token: str, pid: int) -> str:
    """A RUNNING run as a stage records it, on this host name, for the process the token names."""
    experiment = mlflow.set_experiment("mygo").experiment_id
    tags = {STAGE_TAG: "warmup", HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_TAG: token}
    return mlflow.MlflowClient().create_run(experiment, tags=tags).info.run_id


def next_stage_run() -> None:
    with stage_run("convert", load_config("convert")):
        pass


def status(run_id: str) -> str:
    return mlflow.get_run(run_id).info.status


def test_a_live_process_of_another_container_with_the_same_host_name_is_left_alone(tracking_store):
    boot, _, _, _ = process_token().split("/")
    # Another container: same kernel (boot id) and host name, its own PID namespace, a PID that is not ours.
    other = running_run(f"{boot}/pid:[1]/4190000/12345", 4190000)
    next_stage_run()
    assert status(other) == "RUNNING"
    assert liveness(f"{boot}/pid:[1]/4190000/12345") is Liveness.UNKNOWN


def test_a_reused_pid_does_not_keep_an_ended_run_alive(tracking_store, sleeper):
    boot, namespace, _, started = process_token(sleeper.pid).split("/")
    # The run's process had this PID but another start time: it ended, and the PID now belongs to `sleeper`.
    ended = running_run(f"{boot}/{namespace}/{sleeper.pid}/{int(started) - 100}", sleeper.pid)
    next_stage_run()
    assert status(ended) == "KILLED"
    assert "ended without closing the run" in mlflow.get_run(ended).data.tags["mygo.abandoned"]


def test_a_live_process_is_left_alone_and_closed_once_it_ended(tracking_store, sleeper):
    token = process_token(sleeper.pid)
    live = running_run(token, sleeper.pid)
    next_stage_run()
    assert status(live) == "RUNNING" and liveness(token) is Liveness.ALIVE
    sleeper.kill()
    sleeper.wait()
    next_stage_run()
    assert status(live) == "KILLED" and liveness(token) is Liveness.GONE


def test_without_proc_the_pid_on_this_host_decides(tracking_store, sleeper):
    """A token with unreadable parts (no /proc, e.g. macOS) falls back to the PID check, as before tokens."""
    live = running_run(f"-/-/{sleeper.pid}/-", sleeper.pid)
    next_stage_run()
    assert status(live) == "RUNNING"
    sleeper.kill()
    sleeper.wait()
    next_stage_run()
    assert status(live) == "KILLED"
