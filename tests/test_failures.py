"""A run that ends FAILED or KILLED says why: `mygo.error` (type and message, redacted) and `logs/<name>.log`."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.entities import RunStatus

from mygo.cli import main as mygo_main
from mygo.stages.table import STAGE_NAMES
from mygo.tracking.failures import ERROR_TAG
from mygo.tracking.runs import STAGE_TAG, stage_run
from tests.helpers import artifact_paths

MISSING_RUN = "0" * 32


def read_log(run_id: str, name: str) -> str:
    return mlflow.artifacts.load_text(f"runs:/{run_id}/logs/{name}.log")


def failing_argv(command: str, tmp_path) -> list[str]:
    """Each command, failed on purpose: a missing input, a missing upstream run, a bad setting."""
    upstream = {
        "warmup": ["--convert_run", MISSING_RUN],
        "score": ["--warmup_run", MISSING_RUN],
        "select": ["--score_run", MISSING_RUN],
        "evaluate": ["--finetune_run", MISSING_RUN],
    }
    return {
        "convert": ["convert", "model=olmoe_1b_7b", f"model.source={tmp_path / 'no-checkpoint'}"],
        "finetune": ["finetune", "--data_path", str(tmp_path / "missing.jsonl")],
        "main": ["main", "stage_overrides.select='selection.percentage=2'"],
        "sweep": ["sweep", "--space", str(tmp_path / "no-space.yaml")],
        "reproduce": ["reproduce", MISSING_RUN],
    }.get(command) or [command, *upstream[command]]


@pytest.mark.parametrize("command", [*STAGE_NAMES, "main", "sweep", "reproduce"])
def test_under_mlflow_run_every_command_records_why_it_failed(tracking_store, tmp_path, monkeypatch, command):
    """`mlflow run` makes the run before the command starts; whatever fails, that run says why."""
    experiment = mlflow.set_experiment("mygo").experiment_id
    run_id = mlflow.MlflowClient().create_run(experiment).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert mygo_main(failing_argv(command, tmp_path)) == 2
    run = mlflow.get_run(run_id)
    error = run.data.tags[ERROR_TAG]
    expected = {
        "convert": "FileNotFoundError: OLMoE source directory not found",
        "finetune": "missing.jsonl",
        "main": "selection.percentage: expected float in (0, 1], got 2",
        "sweep": "no-space.yaml",
    }.get(command, MISSING_RUN)
    assert expected in error, error
    name = run.data.tags.get(STAGE_TAG) or command
    log = read_log(run_id, name)
    assert "Traceback" in log and expected in log


def test_a_failed_stage_run_and_its_pipeline_record_the_reason(tracking_store, tmp_path, capsys):
    missing = tmp_path / "no-checkpoint"
    argv = ["main", f"stage_overrides.convert='model=olmoe_1b_7b model.source={missing}'"]
    assert mygo_main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err  # the console keeps one line; the traceback is in the log
    runs = {
        run.data.tags[STAGE_TAG]: run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
    }
    assert set(runs) == {"pipeline", "convert"}
    for stage, run in runs.items():
        assert run.info.status == "FAILED"
        assert run.data.tags[ERROR_TAG].startswith("FileNotFoundError: OLMoE source directory not found"), stage
        assert f"logs/{stage}.log" in artifact_paths(run.info.run_id)
    assert "Traceback" in read_log(runs["convert"].info.run_id, "convert")


def test_a_killed_run_records_why_and_errors_are_redacted(tracking_store):
    cfg = mlflow_cfg()
    with pytest.raises(KeyboardInterrupt), stage_run("select", cfg) as run:
        raise KeyboardInterrupt("signal 15")
    killed = mlflow.get_run(run.info.run_id)
    assert killed.info.status == RunStatus.to_string(RunStatus.KILLED)
    assert killed.data.tags[ERROR_TAG] == "KeyboardInterrupt: signal 15"
    with pytest.raises(ValueError), stage_run("select", cfg) as run:
        raise ValueError("cannot reach postgresql://mygo:hunter2@db.example/optuna")
    failed = mlflow.get_run(run.info.run_id)
    assert failed.data.tags[ERROR_TAG] == "ValueError: cannot reach postgresql://mygo:***@db.example/optuna"
    assert "hunter2" not in read_log(run.info.run_id, "select")


def test_a_finished_run_has_no_error_and_no_failure_log(tracking_store):
    with stage_run("select", mlflow_cfg()) as run:
        pass
    finished = mlflow.get_run(run.info.run_id)
    assert ERROR_TAG not in finished.data.tags
    assert not any(path.startswith("logs/") for path in artifact_paths(run.info.run_id))


def mlflow_cfg():
    from mygo.config import load_config

    return load_config("select")
