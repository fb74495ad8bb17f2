"""Optuna sweeps: a 6-trial study on the quick tiny setup (SQLite), resuming, bad spaces and storages, and two
workers sharing one study through a real PostgreSQL server and a real MLflow tracking server."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from glob import glob
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.tracking.redaction import redact_text
from mygo.tracking.runs import STAGE_TAG
from mygo.workflows.pipeline import run_pipeline
from mygo.workflows.sweep import (
    PARENT_RUN_ATTR,
    SpaceError,
    ensure_parent_run,
    load_space,
    open_storage,
    run_sweep,
)
from tests.helpers import REPO, artifact_paths, pipeline_overrides, use_store
from tests.servers import TrackingServer, free_port

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


def sweep_config(root, *extra: str):
    return load_config("sweep", [*pipeline_overrides(root), *extra])


def trial_runs(parent_id: str) -> list:
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{STAGE_TAG}` = 'trial'",
        output_format="list",
    )


@pytest.mark.timeout(900)
def test_a_selection_sweep_links_its_trials_to_a_parent_run_and_resumes(tracking_store, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = ["sweep.space=sweeps/selection.yaml", "sweep.n_trials=3", f"sweep.storage={storage}"]
    parent_id = run_sweep(sweep_config(tmp_path, *settings))
    parent = mlflow.get_run(parent_id)
    assert parent.data.tags[STAGE_TAG] == "sweep" and parent.data.tags["mygo.study"] == "selection"
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.storage"] == storage
    trials = trial_runs(parent_id)
    assert len(trials) == 3 and all(run.info.status == "FINISHED" for run in trials)
    numbers = sorted(int(run.data.tags["optuna.trial_number"]) for run in trials)
    assert numbers == list(range(3))
    # Selection-only trials reuse one convert, warmup and score run; each has its own select, finetune, evaluate.
    for stage, distinct in (("convert", 1), ("warmup", 1), ("score", 1), ("evaluate", 3)):
        assert len({run.data.tags[f"mygo.run.{stage}"] for run in trials}) == distinct, stage
    for run in trials:
        assert 0 <= run.data.metrics["objective"] <= 1
        assert "trial.select.selection.percentage" in run.data.params
        evaluate = mlflow.get_run(run.data.tags["mygo.run.evaluate"])
        assert evaluate.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert run.data.metrics["objective"] == evaluate.data.metrics["eval/stdlib_mmlu/val/acc"]
        assert not any("/test/" in key for key in evaluate.data.metrics)  # trials never see the test split
    assert parent.data.metrics["trials/complete"] == 3
    assert parent.data.metrics["best/objective"] == max(run.data.metrics["objective"] for run in trials)
    # The best trial's adapter, and only it, is scored on the test split, once.
    test_run = mlflow.get_run(parent.data.tags["mygo.best_trial_test_run"])
    assert parent.data.metrics["best/eval/stdlib_qa/test/bpb"] == test_run.data.metrics["eval/stdlib_qa/test/bpb"]
    assert not any("/val/" in key for key in test_run.data.metrics)
    assert {
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/parallel_coordinate.png",
        "best_trial.json",
        "space/selection.yaml",
    } <= artifact_paths(parent_id)

    # A stopped study resumes: asking for 4 runs only the missing trial, under the same parent.
    settings[1] = "sweep.n_trials=4"
    assert run_sweep(sweep_config(tmp_path, *settings)) == parent_id
    assert len(trial_runs(parent_id)) == 4
    study = optuna.load_study(study_name="selection", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4

    # The same study with another space is refused unless told to continue.
    changed = [*settings[1:], "sweep.space=sweeps/selection_noise.yaml", "sweep.study=selection"]
    with pytest.raises(ValueError, match="created with another search space"):
        run_sweep(sweep_config(tmp_path, *changed))


def test_bad_space_files_name_the_file_and_key(tmp_path):
    for name, text, message in (
        ("typo.yaml", "objective: {metric: noise/auroc, stage: select}\nparams:\n  select.selection.percentag: "
         "{type: float, low: 0.1, high: 0.2}\n", "params.select.selection.percentag: the select config has no key"),
        ("stage.yaml", "objective: {metric: x}\nparams:\n  polish.a: {type: int, low: 1, high: 2}\n",
         "params.polish.a: a parameter is <stage>.<config key>"),
        ("broken.yaml", "objective: [unclosed\n", "not a YAML mapping"),
        ("extra.yaml", "objectives: {}\n", "unknown key(s) ['objectives']"),
        ("range.yaml", "objective: {metric: x}\nparams:\n  select.selection.percentage: "
         "{type: float, low: 2, high: 1}\n", "needs low <= high"),
    ):  # fmt: skip
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(SpaceError, match=f"{re.escape(str(path))}: .*{re.escape(message)}"):
            load_space(path)
    full = load_space("sweeps/full.yaml")
    assert {p.stage for p in full.params} == {"warmup", "select"} and full.objective["stage"] == "evaluate"


def test_an_unreachable_storage_is_a_clear_error_without_the_password(tracking_store, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://mygo:s3cret@127.0.0.1:{port}/optuna"
    started = time.monotonic()
    with pytest.raises(
        ValueError, match="cannot open the Optuna storage postgresql\\+psycopg://mygo:\\*\\*\\*@"
    ) as error:
        run_sweep(sweep_config(tmp_path, f"sweep.storage={url}", "sweep.connect_timeout=3"))
    assert "s3cret" not in str(error.value) and time.monotonic() - started < 30
    assert redact_text(url) == f"postgresql+psycopg://mygo:***@127.0.0.1:{port}/optuna"


# ------------------------------------------------------------------------------------- servers on loopback
@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server started for the test, on loopback, with trust authentication."""
    binaries = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries and not shutil.which("initdb"):
        if os.environ.get("MYGO_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server binaries not found (install Debian's postgresql package)")
        pytest.skip("PostgreSQL server binaries not found; .ci/run installs them")
    bin_dir = Path(binaries[-1]).parent if binaries else Path(shutil.which("initdb")).parent
    root = Path(tempfile.mkdtemp(prefix="mygo-pg-"))  # under /tmp: reachable for the postgres user
    root.chmod(0o755)
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "mygo")
    options = f"-p {port} -k {root} -h 127.0.0.1"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mygo", "optuna")
        yield f"postgresql+psycopg://mygo@127.0.0.1:{port}/optuna"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def open_together(start: threading.Barrier, url: str, cfg):
    start.wait()
    return open_storage(url, cfg)


def test_workers_opening_a_fresh_postgresql_storage_together_all_get_it(postgres_url):
    """The schema race: every worker that starts on an empty database tries to create Optuna's tables; the
    losers (a duplicate table or row) must wait for the winner's schema rather than fail the sweep. The window
    is narrow (CI hit it once in two workers on loaded cores), so eight openers start together, six times."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    cfg = load_config("sweep")
    admin = postgres_url.replace("postgresql+psycopg", "postgresql")
    for round_ in range(6):
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE race_{round_}")
        url = postgres_url.rsplit("/", 1)[0] + f"/race_{round_}"
        start = threading.Barrier(8)
        with ThreadPoolExecutor(8) as pool:  # an error in any worker is raised here, failing the test
            opened = list(pool.map(lambda _: open_together(start, url, cfg), range(8)))  # noqa: B023 - joined here
        optuna.create_study(storage=opened[0], study_name="ready")
        assert [s.study_name for s in optuna.get_all_study_summaries(opened[-1])] == ["ready"]
        for storage in opened:
            storage.engine.dispose()  # PostgreSQL's 100 connections would not last the rounds


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    server = TrackingServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server.url
    server.stop()


@pytest.mark.timeout(900)
def test_two_workers_share_one_study_on_postgresql_and_a_tracking_server(postgres_url, tracking_server, tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        use_store(tracking_server, patch)
        # The upstream stages first, so that both workers reuse them rather than race to make them.
        run_pipeline(load_config("main", [*pipeline_overrides(tmp_path), "pipeline.until=score"]))
        overrides = pipeline_overrides(tmp_path)
        settings = ["sweep.space=sweeps/selection_noise.yaml", "sweep.n_trials=4", "sweep.study=two-workers"]
        settings.append(f"sweep.storage={postgres_url}")
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        env |= {"MLFLOW_TRACKING_URI": tracking_server, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "mygo.cli", "sweep", *overrides, *settings]
        workers = [
            subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        errors = [worker.communicate(timeout=800)[1] for worker in workers]
        for worker, stderr in zip(workers, errors, strict=True):
            assert worker.returncode == 0, stderr[-3000:]

        study = optuna.load_study(study_name="two-workers", storage=postgres_url)
        trials = study.get_trials()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert 4 <= len(complete) <= 5  # a trial in flight when the fourth completes may finish too
        assert all(t.state == TrialState.COMPLETE for t in trials)  # none lost, none left RUNNING
        parent = study.user_attrs[PARENT_RUN_ATTR]
        runs = trial_runs(parent)
        assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == sorted(t.number for t in trials)
        assert len({r.data.tags["mygo.worker"] for r in runs}) == 2  # both workers ran trials
        assert len({r.data.tags["mygo.run.score"] for r in runs}) == 1  # and reused the same scores
        assert mlflow.get_run(parent).data.tags[STAGE_TAG] == "sweep"


# ------------------------------------------------------------------------------------- failing studies
@pytest.fixture
def failing_sweep(tracking_store, tmp_path):
    """A sweep whose every trial fails in seconds: convert is pointed at a local Llama (refused: not OLMoE)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_dir = tmp_path / "llama"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(llama_dir)
    space = tmp_path / "convert_space.yaml"
    space.write_text(
        "objective: {metric: parity/bypass_logits_max_abs_diff, direction: minimize, stage: convert}\n"
        "params:\n  convert.select_moe.trash_expert_mode: {type: categorical, choices: [zero, noise]}\n"
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = [
        f"sweep.space={space}",
        f"sweep.storage={storage}",
        "sweep.n_trials=2",
        "sweep.max_retry=0",
        f"stage_overrides.convert='model.source={llama_dir} convert.output_dir={tmp_path / 'convert'}'",
    ]
    return {"overrides": overrides, "storage": storage, "study": "convert_space"}


def test_a_sweep_whose_every_trial_failed_exits_non_zero_with_the_count_and_first_error(failing_sweep, capsys):
    assert mygo_main(["sweep", *failing_sweep["overrides"]]) == 2
    error = capsys.readouterr().err
    assert "all 2 trials failed and none completed" in error and "found model_type 'llama'" in error
    study = optuna.load_study(study_name=failing_sweep["study"], storage=failing_sweep["storage"])
    parent = mlflow.get_run(study.user_attrs[PARENT_RUN_ATTR])
    assert parent.info.status == "FAILED" and "all 2 trials failed" in parent.data.tags["mygo.error"]


def test_a_study_left_without_its_parent_run_gets_one_from_the_next_worker(failing_sweep):
    """The creator made the study but not its parent run (MLflow unreachable): a later worker makes it, at once."""
    optuna.create_study(study_name=failing_sweep["study"], storage=failing_sweep["storage"], direction="minimize")
    started = time.monotonic()
    with pytest.raises(ValueError, match="all 2 trials failed"):
        run_sweep(load_config("sweep", failing_sweep["overrides"]))
    assert time.monotonic() - started < 100  # it used to wait 120 s for a parent run, then give up
    study = optuna.load_study(study_name=failing_sweep["study"], storage=failing_sweep["storage"])
    parent = study.user_attrs[PARENT_RUN_ATTR]
    assert {run.info.run_id for run in trial_runs(parent)} == {t.user_attrs["mlflow_run"] for t in study.trials}

    # Idempotent: a worker that again finds no parent recorded (the attribute lost) takes the same run.
    study.set_user_attr(PARENT_RUN_ATTR, None)
    cfg = load_config("sweep", failing_sweep["overrides"])
    assert ensure_parent_run(cfg, load_space(cfg.sweep.space), study, failing_sweep["storage"]) == parent
