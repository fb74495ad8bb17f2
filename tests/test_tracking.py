"""MLflow conventions: stage runs carry tags and the resolved config; upstream checks give clear errors."""

import mlflow
import pytest

from mygo.config import config_hash, flatten_config, load_config
from mygo.tracking.reuse import find_finished_run
from mygo.tracking.runs import CONFIG_HASH_TAG, STAGE_TAG, check_upstream, stage_run


def test_stage_run_logs_tags_params_and_resolved_config(tracking_store):
    cfg = load_config("convert", ["select_moe.trash_expert_mode=noise"])
    with stage_run("convert", cfg, upstream_run="abc") as run:
        pass
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.tags[STAGE_TAG] == "convert"
    assert logged.data.tags["mygo.upstream_run"] == "abc"
    assert logged.data.tags[CONFIG_HASH_TAG] == config_hash(cfg)
    assert logged.data.params["select_moe.trash_expert_mode"] == "noise"
    assert set(logged.data.params) == set(flatten_config(cfg))
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/resolved.yaml")
    assert "trash_expert_mode: noise" in text
    assert find_finished_run("convert", {CONFIG_HASH_TAG: config_hash(cfg)}).info.run_id == run.info.run_id


def test_check_upstream_refuses_wrong_stage_unfinished_and_missing_runs(tracking_store):
    cfg = load_config("convert")
    with stage_run("convert", cfg) as finished:
        pass
    assert check_upstream(finished.info.run_id, "convert").info.run_id == finished.info.run_id
    with pytest.raises(ValueError, match=rf"run {finished.info.run_id} is a convert run, expected a warmup run"):
        check_upstream(finished.info.run_id, "warmup")

    with pytest.raises(RuntimeError), stage_run("convert", cfg) as failed:
        raise RuntimeError("boom")
    with pytest.raises(ValueError, match=rf"convert run {failed.info.run_id} is FAILED, expected FINISHED"):
        check_upstream(failed.info.run_id, "convert")

    with pytest.raises(ValueError, match=r"run 'deadbeef' not found in tracking store sqlite:///"):
        check_upstream("deadbeef", "convert")


def test_config_hash_changes_with_any_setting():
    assert config_hash(load_config("convert")) == config_hash(load_config("convert"))
    assert config_hash(load_config("convert")) != config_hash(load_config("convert", "convert.parity_seed=1"))
