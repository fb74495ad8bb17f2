"""MLflow-native outputs (issue 18) against a real SQLite store: system metrics on stage runs, each run's
environment and reproduce's report of a changed one, the pipeline's summary as its run description."""

from __future__ import annotations

import importlib.metadata
import re
import sys

import mlflow
import pytest
import torch

from mygo.config import load_config
from mygo.stages.convert import run_convert
from mygo.tracking.environment import REQUIREMENTS_ARTIFACT, parse_requirements, requirements_text
from mygo.tracking.notes import NOTE_TAG
from mygo.tracking.runs import CONFIG_HASH_TAG, stage_run
from mygo.workflows.pipeline import run_pipeline
from mygo.workflows.reproduce import ReproductionMismatch, run_reproduce
from mygo.workflows.sweep import run_sweep
from tests.helpers import local_olmoe

CPU_METRIC = "system/cpu_utilization_percentage"


def system_metric_names(run_id: str) -> set[str]:
    return {name for name in mlflow.get_run(run_id).data.metrics if name.startswith("system/")}


@pytest.mark.slow
def test_stage_runs_log_system_metrics_unless_switched_off(tracking_store, tmp_path, olmoe_model):
    source = local_olmoe(olmoe_model, tmp_path)
    common = [f"model.source={source}", f"convert.output_dir={tmp_path / 'out'}"]
    sampled = run_convert(load_config("convert", [*common, "tracking.system_metrics_interval=0.5"]))
    names = system_metric_names(sampled)
    assert {CPU_METRIC, "system/system_memory_usage_megabytes", "system/disk_usage_percentage"} <= names
    history = mlflow.MlflowClient().get_metric_history(sampled, CPU_METRIC)
    steps = [metric.step for metric in history]
    assert steps == list(range(len(steps))) and len(steps) >= 1  # one per interval plus the last, partial one

    quiet = run_convert(load_config("convert", [*common, "tracking.system_metrics=false"]))
    assert system_metric_names(quiet) == set()
    assert mlflow.get_run(quiet).data.metrics["parity/shared_weights_bit_identical"] == 1.0
    # How a run is watched is not what it computes: reuse must not tell the two apart.
    tags = [mlflow.get_run(run_id).data.tags[CONFIG_HASH_TAG] for run_id in (sampled, quiet)]
    assert tags[0] == tags[1]


def test_a_workflow_run_has_no_system_metrics_of_its_own(tracking_store):
    with stage_run("pipeline", load_config("main", ["tracking.system_metrics_interval=0.2"])) as run:
        pass
    assert system_metric_names(run.info.run_id) == set()


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_a_non_positive_interval_is_refused(interval):
    with pytest.raises(Exception, match="tracking.system_metrics_interval"):
        load_config("convert", [f"tracking.system_metrics_interval={interval}"])


def test_every_run_records_its_environment(tracking_store):
    with stage_run("select", load_config("select", ["tracking.system_metrics=false"])) as run:
        pass
    recorded = mlflow.get_run(run.info.run_id)
    assert recorded.data.tags["mygo.env.torch"] == torch.__version__
    assert recorded.data.tags["mygo.env.python"].split()[-1] == ".".join(map(str, sys.version_info[:3]))
    assert recorded.data.tags["mygo.env.devices"]  # "cpu", or the GPUs' names
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{REQUIREMENTS_ARTIFACT}")
    requirements = parse_requirements(text)
    assert requirements["mlflow"] == importlib.metadata.version("mlflow")
    assert requirements["scikit-learn"] == importlib.metadata.version("scikit-learn")  # names as pip spells them


@pytest.mark.slow
def test_reproduce_names_the_package_whose_version_differs(tracking_store, tmp_path, olmoe_model, capsys):
    source = local_olmoe(olmoe_model, tmp_path)
    overrides = [f"model.source={source}", f"convert.output_dir={tmp_path / 'out'}", "tracking.system_metrics=false"]
    torch.manual_seed(1234)  # whatever the global RNG holds, the conversion's gates are drawn alike
    original = run_convert(load_config("convert", overrides))
    # The original "was made" with another numpy: its logged requirements say so.
    client = mlflow.MlflowClient()
    logged = parse_requirements(mlflow.artifacts.load_text(f"runs:/{original}/{REQUIREMENTS_ARTIFACT}"))
    current = logged["numpy"]
    client.log_text(original, requirements_text(logged | {"numpy": "1.0.0"}), REQUIREMENTS_ARTIFACT)
    changed = f"numpy 1.0.0 -> {current}"
    cfg = load_config("reproduce", [f"reproduce.run_id={original}", f"reproduce.output_dir={tmp_path / 'again'}"])

    run_reproduce(cfg)  # a different environment is reported, not a failure by itself
    out = capsys.readouterr().out
    assert "1 package(s) differ" in out and changed in out
    assert "reproduced:" in out

    client.log_metric(original, "parity/bypass_logits_max_abs_diff", 1.0, step=1)  # now the results differ too
    with pytest.raises(ReproductionMismatch, match=r"parity/bypass_logits_max_abs_diff.*numpy 1\.0\.0 -> "):
        run_reproduce(cfg)
    out = capsys.readouterr().out
    assert out.index("XX parity/bypass_logits_max_abs_diff") < out.rindex(changed)  # beside the mismatch


# ------------------------------------------------------------------------------------- run descriptions
def note_of(run_id: str) -> str:
    return mlflow.get_run(run_id).data.tags[NOTE_TAG]


@pytest.mark.slow
def test_the_pipeline_run_page_carries_the_summary_main_prints(tracking_store, tmp_path, olmoe_model, capsys):
    source = local_olmoe(olmoe_model, tmp_path)
    convert = f"model.source={source} convert.output_dir={tmp_path / 'out'} tracking.system_metrics=false"
    cfg = load_config("main", [f"stage_overrides.convert='{convert}'", "pipeline.until=convert"])
    first = run_pipeline(cfg)
    printed = capsys.readouterr().out
    note = note_of(first)
    convert_run = mlflow.get_run(first).data.tags["mygo.run.convert"]
    assert note.startswith("### mygo pipeline: convert (1 new, 0 reused)")
    table = printed[printed.index("stage ") : printed.index("Compare runs with")].strip()
    assert f"```text\n{table}\n```" in note  # the very table main printed, as a fixed-width block
    assert convert_run in note
    # The key metric as main printed it: conversion parity, exact or within float rounding (BLAS threads vary).
    parity = re.search(r"parity/bypass_logits_max_abs_diff=(\S+)", note)
    assert parity and float(parity.group(1)) < 1e-5
    assert "`mlflow ui --backend-store-uri sqlite:///" in note

    second = run_pipeline(cfg)  # everything reused: the new run's page says so
    assert note_of(second).startswith("### mygo pipeline: convert (0 new, 1 reused)")
    assert convert_run in note_of(second)


@pytest.mark.slow
def test_the_sweep_run_page_lists_its_trials_and_the_best(tracking_store, tmp_path, olmoe_model, capsys):
    source = local_olmoe(olmoe_model, tmp_path)
    space = tmp_path / "convert_space.yaml"
    space.write_text(
        "objective: {metric: parity/bypass_logits_max_abs_diff, direction: minimize, stage: convert}\n"
        "params:\n  convert.select_moe.quality_gate_init_std: {type: categorical, choices: [0.01, 0.02]}\n"
    )
    convert = f"model.source={source} convert.output_dir={tmp_path / 'out'} tracking.system_metrics=false"
    overrides = [f"sweep.space={space}", f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", "sweep.n_trials=2"]
    parent = run_sweep(load_config("sweep", [*overrides, f"stage_overrides.convert='{convert}'"]))
    printed = capsys.readouterr().out
    note = note_of(parent)
    assert note.startswith("### mygo sweep convert_space: parity/bypass_logits_max_abs_diff")
    assert f"study convert_space: 2 complete trials; parent run {parent}" in note and "best trial " in note
    assert printed.strip().splitlines()[-1] in note  # the best trial line, as printed
    trials = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", output_format="list"
    )
    assert len(trials) == 2
    for trial in trials:
        assert trial.info.run_id in note  # the trials table links every trial's run
        assert note_of(trial.info.run_id).startswith("### mygo sweep trial ")
        assert trial.data.tags["mygo.run.convert"] in note_of(trial.info.run_id)
