"""`main` on the quick tiny setup against a real MLflow store: every stage a child run, all reused the second time."""

import mlflow
import pytest

from mygo.config import load_config
from mygo.pipeline import PIPELINE_STAGES, run_pipeline
from mygo.tracking import STAGE_TAG, UPSTREAM_TAG
from tests.test_convert_stage import QUICK_TINY
from tests.test_finetune_evaluate import quick_evaluate_overrides, quick_finetune_overrides
from tests.test_warmup_stage import quick_warmup_overrides


def pipeline_overrides(tmp_path) -> list[str]:
    warmup = [o for o in quick_warmup_overrides(tmp_path) if not o.startswith(("model.", "upstream."))]
    convert = [*QUICK_TINY, f"convert.output_dir={tmp_path / 'convert'}"]
    stages = {
        "convert": convert,
        "warmup": [*QUICK_TINY, *warmup],
        "score": [f"score.output_dir={tmp_path / 'score'}"],
        "select": [f"output_dir={tmp_path / 'select'}", "clustering.kmeans.k_range=[2,6]", "selection.percentage=0.1"],
        "finetune": quick_finetune_overrides(tmp_path),
        "evaluate": quick_evaluate_overrides(tmp_path),
    }
    return [f"stage_overrides.{stage}='{' '.join(values)}'" for stage, values in stages.items()]


@pytest.mark.timeout(600)
def test_main_chains_the_stages_and_reuses_them_all(tracking_store, tmp_path, capsys):
    first = mlflow.get_run(run_pipeline(load_config("main", pipeline_overrides(tmp_path))))
    assert first.data.tags[STAGE_TAG] == "pipeline"
    runs = {stage: mlflow.get_run(first.data.tags[f"mygo.run.{stage}"]) for stage in PIPELINE_STAGES}
    for previous, stage in zip(PIPELINE_STAGES, PIPELINE_STAGES[1:], strict=False):
        assert runs[stage].data.tags[UPSTREAM_TAG] == runs[previous].info.run_id
    for stage, run in runs.items():
        assert first.data.tags[f"mygo.reused.{stage}"] == "False"
        assert run.data.tags["mlflow.parentRunId"] == first.info.run_id and run.info.status == "FINISHED"
    assert runs["select"].data.metrics["selection/num_selected"] == 12
    finetuned = runs["finetune"].data.metrics
    assert finetuned["data/records"] == 12  # the selection, exactly; short sequences may leave some label-less
    assert finetuned["data/train_samples"] + finetuned["data/no_label_tokens"] == 12
    assert 0 <= runs["evaluate"].data.metrics["eval/stdlib_mmlu/acc"] <= 1

    second = mlflow.get_run(run_pipeline(load_config("main", pipeline_overrides(tmp_path))))
    for stage in PIPELINE_STAGES:
        assert second.data.tags[f"mygo.reused.{stage}"] == "True"
        assert second.data.tags[f"mygo.run.{stage}"] == first.data.tags[f"mygo.run.{stage}"]
    printed = capsys.readouterr().out
    assert "select" in printed and "reused" in printed and "mlflow ui --backend-store-uri" in printed
