"""Every MLproject entry point run through `mlflow run` with every named parameter given, at values that keep it
quick, on the session's scored store (tests/test_entry_points.py gives each only what it requires). Parameters that
exclude each other take one side here: finetune's data_path (select_run is the other test's), evaluate's
finetune_run (model_uri is tests/test_mlflow_models.py's)."""

from __future__ import annotations

import mlflow
import pytest

from mygo.cli import COMMANDS
from mygo.config import load_config
from mygo.stages.select import run_select
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import (
    QUICK_TINY,
    convert_only_space,
    local_olmoe,
    mlflow_run_finished,
    quick_finetune_overrides,
    quick_warmup_given_convert,
    use_store,
)

pytestmark = pytest.mark.timeout(1800)

NO_ARMS = ["pipeline.controls=[]", "pipeline.seeds=[]"]
EXCLUSIVE = {"finetune": {"select_run"}, "evaluate": {"model_uri"}}


def test_every_entry_point_runs_with_every_named_parameter(store, tmp_path, olmoe_model):
    root, runs = tmp_path, {}
    source = local_olmoe(olmoe_model, tmp_path)  # a local checkpoint directory, as a user points `source` at
    target = {"root": root, "uri": store["uri"]}
    score = mlflow.get_run(store["score_run"])
    convert_run = mlflow.get_run(store["warmup_run"]).data.tags[UPSTREAM_TAG]
    select_cfg = [f"upstream.score_run={score.info.run_id}", f"output_dir={root / 'select'}", "clustering.kmeans.k=3"]
    selected = mlflow.artifacts.download_artifacts(
        run_id=run_select(load_config("select", select_cfg)),
        artifact_path="selection/selected_data.jsonl",
        dst_path=str(root / "data"),
    )
    quick_convert = [f"stage_overrides.convert='{' '.join([*QUICK_TINY, f'convert.output_dir={root}'])}'"]
    given = {
        "convert": lambda: {
            "model": "tiny", "source": source, "trash_expert_mode": "noise", "quality_gate_init_std": 0.02,
            "overrides": f"convert.output_dir={root / 'convert'}",
        },
        "warmup": lambda: {
            "convert_run": convert_run, "model": "tiny", "loss_type": "mse", "quality_loss_weight": 0.5,
            "trash_expert_mode": "zero", "learning_rate": 0.05, "epochs": 1, "peft_mode": "lora", "subset_ratio": 0.3,
            "overrides": " ".join(quick_warmup_given_convert(root, "dataset.subset_ratio")),
        },
        "score": lambda: {
            "warmup_run": store["warmup_run"], "dataset_overrides": "max_sequence_length=128",
            "overrides": f"score.output_dir={root / 'score'}",
        },
        "select": lambda: {
            "score_run": score.info.run_id, "selection_percentage": 0.2, "strategy": "round_robin",
            "clustering_method": "kmeans", "k": 3, "min_cluster_size": 5, "overrides": f"output_dir={root / 'sel'}",
        },
        "finetune": lambda: {
            "data_path": selected, "target": "tiny", "learning_rate": 0.001, "epochs": 1, "lora_r": 4,
            "overrides": " ".join(o for o in quick_finetune_overrides(root) if "training.epochs" not in o),
        },
        "evaluate": lambda: {
            "finetune_run": runs["finetune"].info.run_id, "tasks": "stdlib_qa,debian_qa", "splits": "val",
            "chat_template": "auto", "base_only": "false", "num_fewshot": 0, "limit": 4, "target": "tiny",
            "overrides": f"output_dir={root / 'evaluate'}",
        },
        "lineage": lambda: {"run_id": runs["evaluate"].info.run_id, "overrides": ""},
        "compare": lambda: {"run_ids": runs["evaluate"].info.run_id, "overrides": "compare.output=null"},
        "reproduce": lambda: {"run_id": runs["select"].info.run_id, "overrides": f"reproduce.output_dir={root}"},
        "main": lambda: {
            "force": "convert", "overrides": " ".join([*quick_convert, *NO_ARMS, "pipeline.until=convert"]),
        },
        "sweep": lambda: {
            "space": convert_only_space(root), "n_trials": 1, "study": "named",
            "storage": f"sqlite:///{root / 'optuna.db'}", "overrides": " ".join(quick_convert),
        },
    }  # fmt: skip
    assert set(given) == set(COMMANDS), "an entry point this test does not run"
    with pytest.MonkeyPatch.context() as patch:
        use_store(store["uri"], patch)
        for name, params in given.items():
            params = params()
            named = {knob.option for knob in COMMANDS[name].named} | {"overrides"}
            assert set(params) == named - EXCLUSIVE.get(name, set()), f"{name}: not every named parameter"
            runs[name] = mlflow_run_finished(name, params, target)

    params = {name: run.data.params for name, run in runs.items()}
    assert params["convert"]["select_moe.trash_expert_mode"] == "noise" and params["convert"]["model.source"] == str(
        source
    )
    assert runs["convert"].data.metrics["parity/bypass_logits_max_abs_diff"] <= 1e-5
    assert params["warmup"]["select_moe.quality_loss_type"] == "mse" and params["warmup"]["training.epochs"] == "1"
    assert params["warmup"]["training.learning_rate"] == "0.05" and params["warmup"]["dataset.subset_ratio"] == "0.3"
    # The tiny preset's tuned objective corrupts batches; mse learns from none, and the params say so.
    assert params["warmup"]["corruption.fraction"] == "0.0" and load_config("warmup").corruption.fraction == 0.5
    assert params["score"]["dataset.max_sequence_length"] == "128"
    assert runs["select"].data.metrics["clustering/chosen_k"] == 3
    assert runs["select"].data.metrics["selection/num_selected"] == 24  # 20% of the 120 scored
    assert params["finetune"]["target.lora.r"] == "4" and params["finetune"]["data.path"] == str(selected)
    evaluated = runs["evaluate"].data.metrics
    assert {"eval/stdlib_qa/val/bits_per_byte", "eval/debian_qa/val/bits_per_byte"} <= set(evaluated)
    assert not any("/test/" in key or key.startswith("eval/stdlib_mmlu") for key in evaluated)
    assert runs["evaluate"].data.params["finetune_run"] == runs["finetune"].info.run_id
    assert runs["evaluate"].info.run_id in target["stdout"]["lineage"]
    assert runs["reproduce"].data.tags["mygo.reproduces"] == runs["select"].info.run_id
    assert runs["main"].data.tags["mygo.reused.convert"] == "False" and "mygo.run.warmup" not in runs["main"].data.tags
    assert runs["sweep"].data.tags["mygo.study"] == "named" and runs["sweep"].data.tags[STAGE_TAG] == "sweep"
