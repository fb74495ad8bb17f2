"""reproduce never passes what it could not compare: missing weights, one-sided metrics, masked config values."""

import mlflow
import pytest

from mygo.config import load_config
from mygo.tracking.handoffs import SELECTED_IDS_TAG
from mygo.tracking.runs import stage_run
from mygo.workflows.reproduce import compare, format_checks, run_reproduce


def logged_run(stage: str, metrics: dict[str, float], overrides: tuple[str, ...] = ()) -> mlflow.entities.Run:
    cfg = load_config(stage, list(overrides))
    with stage_run(stage, cfg) as run:
        mlflow.log_metrics(metrics)
    return mlflow.get_run(run.info.run_id)


def test_weights_neither_run_has_are_a_difference_not_a_skip(tracking_store):
    original = logged_run("warmup", {"train/final_loss": 1.0})
    reproduced = logged_run("warmup", {"train/final_loss": 1.0})
    checks = compare("warmup", original, reproduced, load_config("reproduce"))
    failed = [check for check in checks if not check.ok]
    assert [check.item for check in failed] == ["router/weights.safetensors (cannot compare)"]
    assert (failed[0].original, failed[0].reproduced) == ("missing", "missing")
    assert "XX router/weights.safetensors" in format_checks(checks)


def test_a_metric_only_one_run_logged_is_a_difference(tracking_store):
    original = logged_run("select", {"selection/num_selected": 12.0, "noise/auroc": 0.7, "select/seconds": 1.0})
    reproduced = logged_run("select", {"selection/num_selected": 12.0, "base/heldout_perplexity": 3.0})
    for run in (original, reproduced):
        mlflow.MlflowClient().set_tag(run.info.run_id, SELECTED_IDS_TAG, "abc")
    original, reproduced = (mlflow.get_run(run.info.run_id) for run in (original, reproduced))
    checks = {check.item: check for check in compare("select", original, reproduced, load_config("reproduce"))}
    assert not checks["noise/auroc"].ok and (checks["noise/auroc"].original, checks["noise/auroc"].reproduced) == (
        "logged",
        "missing",
    )
    assert checks["selection/num_selected"].ok and checks["selected ids sha256"].ok
    assert "select/seconds" not in checks  # timings are never compared
    assert "base/heldout_perplexity" not in checks  # the embedded base's build, logged by whichever run built it


def test_a_selected_ids_hash_neither_run_recorded_is_a_difference(tracking_store):
    original, reproduced = logged_run("select", {}), logged_run("select", {})
    checks = compare("select", original, reproduced, load_config("reproduce"))
    assert not next(check for check in checks if check.item == "selected ids sha256").ok


def test_a_logged_config_with_masked_secrets_is_refused_before_anything_runs(tracking_store, tmp_path):
    source = "https://mygo:s3cret@models.example/olmoe"
    original = logged_run("convert", {}, (f"model.source={source}", f"convert.output_dir={tmp_path}"))
    assert original.data.params["model.source"] == "https://mygo:***@models.example/olmoe"
    cfg = load_config("reproduce", [f"reproduce.run_id={original.info.run_id}"])
    with pytest.raises(ValueError, match=r"masked secrets \(\*\*\*\) at model.source"):
        run_reproduce(cfg)
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1  # nothing ran
