"""Every MLproject entry point, run as users run it, with only what it requires: `mlflow run . --env-manager local
-e <entry> -P <upstream>_run=<id>`, each stage on the run before it, as the docs write the commands. The stages that
build or train (convert, warmup, finetune, main, sweep) get `-P overrides` with the quick tiny sizes too, since the
embedded default's own sizes take minutes. MLflow logs each `-P` as a param before the command starts, so a stage
that logs a config key of the same name again fails here first (it did: score's `dataset_overrides`). Every named
parameter given: tests/test_entry_points_named.py.
"""

from __future__ import annotations

import pytest

from mygo.cli import COMMANDS
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import (
    QUICK_TINY,
    convert_only_space,
    copy_store,
    mlflow_run_finished,
    quick_finetune_overrides,
    quick_warmup_given_convert,
    use_store,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

NO_ARMS = ["pipeline.controls=[]", "pipeline.seeds=[]"]


def test_every_entry_point_runs_with_only_its_required_parameters(tmp_path, empty_store):
    root = tmp_path
    store = {"root": root, "uri": copy_store(empty_store, root)}
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        use_store(store["uri"], patch)
        convert = " ".join([*QUICK_TINY, f"convert.output_dir={root / 'convert'}"])
        runs["convert"] = mlflow_run_finished("convert", {"overrides": convert}, store)
        warmup = " ".join(quick_warmup_given_convert(root))
        runs["warmup"] = mlflow_run_finished(
            "warmup", {"convert_run": runs["convert"].info.run_id, "overrides": warmup}, store
        )
        runs["score"] = mlflow_run_finished("score", {"warmup_run": runs["warmup"].info.run_id}, store)
        runs["select"] = mlflow_run_finished("select", {"score_run": runs["score"].info.run_id}, store)
        finetune = " ".join(quick_finetune_overrides(root))
        runs["finetune"] = mlflow_run_finished(
            "finetune", {"select_run": runs["select"].info.run_id, "overrides": finetune}, store
        )
        runs["evaluate"] = mlflow_run_finished("evaluate", {"finetune_run": runs["finetune"].info.run_id}, store)
        runs["lineage"] = mlflow_run_finished("lineage", {"run_id": runs["evaluate"].info.run_id}, store)
        runs["compare"] = mlflow_run_finished("compare", {"run_ids": runs["evaluate"].info.run_id}, store)
        # main with the settings the stages above were given: it reuses every one of them.
        given = [f"stage_overrides.{stage}='{value}'" for stage, value in (("convert", convert), ("warmup", warmup))]
        given += [f"stage_overrides.finetune='{finetune}'", *NO_ARMS]
        runs["main"] = mlflow_run_finished("main", {"overrides": " ".join(given)}, store)
        space = convert_only_space(root)  # one trial of seconds: the entry point, not a study, is under test
        sweep = [f"sweep.space={space}", "sweep.n_trials=1", f"stage_overrides.convert='{convert}'"]
        runs["sweep"] = mlflow_run_finished("sweep", {"overrides": " ".join(sweep)}, store)
        # Last: its new select run would be the newest match for main's select, and main would build on it.
        runs["reproduce"] = mlflow_run_finished("reproduce", {"run_id": runs["select"].info.run_id}, store)

    assert set(runs) == set(COMMANDS), "an entry point this test does not run"
    for stage, upstream in (("warmup", "convert"), ("score", "warmup"), ("select", "score"), ("finetune", "select")):
        assert runs[stage].data.tags[STAGE_TAG] == stage
        assert runs[stage].data.tags[UPSTREAM_TAG] == runs[upstream].info.run_id
    assert runs["score"].data.params["warmup_run"] == runs["warmup"].info.run_id  # MLflow's -P, beside the config
    assert runs["score"].data.params["upstream.warmup_run"] == runs["warmup"].info.run_id
    assert runs["score"].data.metrics["score/samples"] == 120
    assert runs["select"].data.metrics["selection/num_selected"] > 0
    evaluated = runs["evaluate"].data.metrics  # the tiny target's tasks, in and out of the pool's domain
    assert 0 <= evaluated["eval/stdlib_mmlu/test/acc"] <= 1
    assert {"eval/out_of_domain/val/bits_per_byte", "eval/all_domains/test/bits_per_byte"} <= set(evaluated)
    assert runs["evaluate"].info.run_id in store["stdout"]["lineage"]
    assert "eval/out_of_domain/test/bits_per_byte" in store["stdout"]["compare"]
    assert runs["reproduce"].data.tags["mygo.reproduces"] == runs["select"].info.run_id
    assert runs["main"].data.tags[STAGE_TAG] == "pipeline" and runs["sweep"].data.tags[STAGE_TAG] == "sweep"
    for stage in ("convert", "warmup", "score", "select", "finetune", "evaluate"):  # made by mlflow run, reused by main
        assert runs["main"].data.tags[f"mygo.run.{stage}"] == runs[stage].info.run_id, stage
    assert runs["sweep"].data.metrics["trials/complete"] == 1
