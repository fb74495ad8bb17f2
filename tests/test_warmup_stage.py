"""The warmup stage end to end on tiny real models, a real demo pool and a real MLflow store."""

import math

import mlflow
import pytest
import torch
from safetensors.torch import load_file

from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.models import load_select_moe
from mygo.models.router_weights import load_router_weights, router_state_dict
from mygo.stages.convert import run_convert
from mygo.stages.warmup import run_warmup
from mygo.tracking.handoffs import model_dir_of
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import QUICK_TINY, artifact_paths, quick_warmup_overrides, run_two_processes

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


def router_weights_of(run_id: str) -> str:
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="router/weights.safetensors")


@pytest.mark.timeout(600)
def test_warmup_trains_the_router_and_records_everything(tracking_store, tmp_path, capsys):
    run = mlflow.get_run(run_warmup(load_config("warmup", quick_warmup_overrides(tmp_path))))
    assert run.info.status == "FINISHED" and run.data.tags[STAGE_TAG] == "warmup"
    convert = mlflow.get_run(run.data.tags[UPSTREAM_TAG])
    assert convert.data.tags[STAGE_TAG] == "convert" and convert.info.status == "FINISHED"

    metrics = mlflow.MlflowClient().get_metric_history
    for name in ("loss/total", "loss/lm", "loss/quality", "loss/load_balancing", "quality_gate/good_ratio_mean"):
        assert len(metrics(run.info.run_id, name)) >= 2, name
    logged = run.data.metrics
    per_layer = {f"quality_gate/layer_{layer:02d}/good_ratio_mean" for layer in range(2)}
    assert {"quality_gate/good_ratio_std", *per_layer} <= set(logged)
    assert logged["loss/load_balancing"] == 0.0  # off by default, as upstream
    assert logged["data/pool_records"] == 120 and logged["data/truncated"] >= logged["data/no_label_tokens"]
    assert logged["data/train_samples"] == round(0.4 * (120 - logged["data/no_label_tokens"]))
    assert {"probe/good_ratio_clean", "probe/good_ratio_noisy", "probe/noise_auroc"} <= set(logged)
    assert run.data.params["training.peft_mode"] == "full_rank" and run.data.params["dataset.name"] == "demo"

    assert {
        "router/weights.safetensors",
        "config/resolved.yaml",
        "plots/good_ratio_histogram.png",
        "plots/good_ratio_per_layer.png",
        "plots/good_ratio_per_layer_over_steps.png",
    } <= artifact_paths(run.info.run_id)
    (pool_input,) = run.inputs.dataset_inputs
    assert pool_input.dataset.name == "pool:cot,dolly,flan_v2,oasst1" and len(pool_input.dataset.digest) == 16

    # The saved weights are exactly the router's, what trained moved (the tiny default's corruption objective
    # trains the quality gates alone), and they load into the converted model.
    assert run.data.params["training.train_router_gates"] == "False"
    weights_file = router_weights_of(run.info.run_id)
    saved = load_file(weights_file)
    converted = load_select_moe(model_dir_of(convert))
    initial = router_state_dict(converted)
    assert set(saved) == set(initial)
    for name in saved:
        assert torch.equal(saved[name], initial[name]) == ("quality_gate" not in name), name
    load_router_weights(converted, weights_file)
    assert all(torch.equal(router_state_dict(converted)[name], saved[name]) for name in saved)

    # LoRA on the router, from the same conversion: the same weights file layout.
    from_convert = [*quick_warmup_overrides(tmp_path), f"upstream.convert_run={convert.info.run_id}"]
    lora = mlflow.get_run(run_warmup(load_config("warmup", [*from_convert, "training.peft_mode=lora"])))
    assert lora.data.tags[UPSTREAM_TAG] == convert.info.run_id
    lora_file = router_weights_of(lora.info.run_id)
    assert set(load_file(lora_file)) == set(saved)

    # Bad input, each named, before any training.
    def cli_error(*overrides: str) -> str:
        base = [*quick_warmup_overrides(tmp_path), f"upstream.convert_run={convert.info.run_id}"]
        assert mygo_main(["warmup", *base, *overrides]) == 2
        return capsys.readouterr().err

    assert "is a warmup run, expected a convert run" in cli_error(f"upstream.convert_run={run.info.run_id}")
    error = cli_error("dataset.dataset_names=[dolly,wiki]")
    assert "['wiki'] not found" in error and "found: ['cot', 'dolly', 'flan_v2', 'oasst1']" in error
    assert str(tmp_path / "nowhere") in cli_error(f"dataset.data_dir={tmp_path / 'nowhere'}")
    assert "training.peft_mode: expected one of full_rank, lora, got 'qlora'" in cli_error("training.peft_mode=qlora")
    assert "quality_loss_type='hinge'" in cli_error("select_moe.quality_loss_type=hinge")


@pytest.mark.timeout(600)
def test_two_processes_train_one_run(tracking_store, tmp_path):
    """`torchrun --nproc_per_node 2` (as `accelerate launch` does): two processes, one gloo group, one MLflow run."""
    convert_run = run_convert(load_config("convert", [*QUICK_TINY, f"convert.output_dir={tmp_path / 'convert'}"]))
    overrides = [
        *quick_warmup_overrides(tmp_path),
        f"upstream.convert_run={convert_run}",
        "training.micro_batch_size=4",
    ]
    result = run_two_processes("warmup.py", overrides, tmp_path, tracking_store)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`mygo.stage` = 'warmup'", output_format="list"
    )
    # batch 8 = micro batch 4 x 2 processes: no accumulation, each process takes half the samples per step
    steps = run.data.metrics["train/steps_per_s"] * run.data.metrics["train/runtime_s"]
    epochs = int(run.data.params["training.epochs"])
    assert round(steps) == epochs * math.ceil(run.data.metrics["data/train_samples"] / 8)
    assert run.info.status == "FINISHED" and "router/weights.safetensors" in artifact_paths(run.info.run_id)
