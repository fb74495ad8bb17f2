"""finetune and evaluate on the tiny target, real peft, real lm-eval and a real MLflow store."""

import json
from pathlib import Path

import mlflow
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.data.demo_pool.build import ensure_demo_pool
from mygo.stages.evaluate import BASE_ONLY_TAG, CHAT_TEMPLATE_TAG, check_adapter_fits, run_evaluate
from mygo.stages.finetune import run_finetune
from mygo.tracking.builds import build_run_tag
from mygo.tracking.handoffs import TARGET_PATH_TAG, model_dir_of
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import (
    artifact_paths,
    as_tracking_store,
    copy_store,
    quick_evaluate_overrides,
    quick_finetune_overrides,
    run_two_processes,
    use_store,
)

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess

SUBJECTS = ("functions", "classes", "modules", "topics")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, empty_store):
    """A real store with one finished finetune run on 48 demo-pool records (which built the tiny target)."""
    root = tmp_path_factory.mktemp("finetuned")
    pool_dir = ensure_demo_pool(root / "demo", num_samples=60, noise_fraction=0.2, seed=0, max_answer_chars=300)
    records = [line for path in sorted(pool_dir.glob("*/*.jsonl")) for line in path.read_text().splitlines()]
    data = root / "selected_data.jsonl"
    data.write_text("\n".join(records[:48]) + "\n")
    uri = copy_store(empty_store, root)
    with pytest.MonkeyPatch.context() as patch:
        use_store(uri, patch)
        run_id = run_finetune(load_config("finetune", quick_finetune_overrides(root, f"data.path={data}")))
        yield {"uri": uri, "root": root, "data": data, "run": run_id}


@pytest.fixture
def store(finetuned, monkeypatch):
    yield from as_tracking_store(finetuned, monkeypatch)


def test_finetune_trains_lora_and_records_everything(store):
    run = mlflow.get_run(store["run"])
    assert run.info.status == "FINISHED" and run.data.tags[STAGE_TAG] == "finetune"
    assert UPSTREAM_TAG not in run.data.tags  # trained on a file, not on a select run
    assert run.data.tags[build_run_tag("target")] == run.info.run_id  # the first run builds the tiny target
    metrics = run.data.metrics
    assert metrics["data/train_samples"] == 48 and metrics["data/records"] == 48
    assert metrics["data/injected_noise"] >= 1  # the demo pool's noise is counted, not hidden
    assert metrics["train/tokens_per_s"] > 0 and metrics["target/heldout_perplexity"] > 0
    assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/loss")) == 12  # 48 / 8 x 2 epochs
    assert run.data.params["target.lora.r"] == "32" and run.data.params["target.training.epochs"] == "2"
    paths = artifact_paths(run.info.run_id)
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json"} <= paths
    assert {"plots/loss.png", "config/resolved.yaml", "target/config.json", "target/model.safetensors"} <= paths
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["finetune_data:selected_data.jsonl"]

    # Training moved the LoRA B matrices away from their zero start, and so changed the model's output.
    adapter_dir = model_dir_of(run, "adapter", "mygo.adapter_path", marker="adapter_config.json")
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert len(lora_b) == 7 * 2 and all(w.abs().max() > 0 for w in lora_b)  # every linear layer of both blocks
    base = AutoModelForCausalLM.from_pretrained(run.data.tags[TARGET_PATH_TAG]).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, adapter_dir).eval()(ids).logits
    assert not torch.allclose(before, after)


def test_a_second_finetune_reuses_the_built_target(store):
    extra = [f"data.path={store['data']}", "target.training.epochs=1"]
    run = mlflow.get_run(run_finetune(load_config("finetune", quick_finetune_overrides(store["root"], *extra))))
    assert run.data.tags[build_run_tag("target")] == store["run"]
    assert "target/build_seconds" not in run.data.metrics


@pytest.mark.timeout(300)
def test_evaluate_with_the_adapter_and_the_base_alone(store):
    upstream = f"upstream.finetune_run={store['run']}"
    adapter = mlflow.get_run(run_evaluate(load_config("evaluate", quick_evaluate_overrides(store["root"], upstream))))
    base_only = quick_evaluate_overrides(store["root"], upstream, "evaluation.base_only=true")
    base = mlflow.get_run(run_evaluate(load_config("evaluate", base_only)))
    for run, base_only in ((adapter, "false"), (base, "true")):
        assert run.info.status == "FINISHED" and run.data.tags[STAGE_TAG] == "evaluate"
        assert run.data.tags[UPSTREAM_TAG] == store["run"] and run.data.tags[BASE_ONLY_TAG] == base_only
        # Both are scored as the adapter was trained: chat-formatted prompts.
        assert run.data.tags[CHAT_TEMPLATE_TAG] == "true"
        assert "chat-formatted" in run.data.params["evaluation.chat_template_used"]
        metrics = run.data.metrics
        paths = artifact_paths(run.info.run_id)
        for split in ("val", "test"):
            assert 0 <= metrics[f"eval/stdlib_mmlu/{split}/acc"] <= 1
            assert f"eval/stdlib_mmlu/{split}/acc_norm" in metrics
            for subject in SUBJECTS:
                assert 0 <= metrics[f"eval/stdlib_mmlu/{split}/{subject}/acc"] <= 1
                assert f"eval/stdlib_mmlu/{split}/{subject}/acc_stderr" in metrics
            # The answer-likelihood task: bits per byte per answer (with a standard error), NLL, pooled bpb.
            assert metrics[f"eval/stdlib_qa/{split}/bpb"] > 0 and metrics[f"eval/stdlib_qa/{split}/bpb_stderr"] > 0
            assert metrics[f"eval/stdlib_qa/{split}/nll"] > 0 and metrics[f"eval/stdlib_qa/{split}/bits_per_byte"] > 0
            assert {f"eval/results_{split}.json", f"plots/stdlib_mmlu_{split}_subjects.png"} <= paths
            results = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/eval/results_{split}.json"))
            assert results["results"]["stdlib_mmlu"]["acc,none"] == metrics[f"eval/stdlib_mmlu/{split}/acc"]
            assert results["n-samples"]["stdlib_mmlu_topics"]["effective"] == 4  # evaluation.limit
            # An accuracy is a count of right answers out of the questions asked, and the group's is their mean
            # (checks that a bound of [0, 1] cannot make).
            accuracies = [metrics[f"eval/stdlib_mmlu/{split}/{subject}/acc"] for subject in SUBJECTS]
            for subject, accuracy in zip(SUBJECTS, accuracies, strict=True):
                asked = results["n-samples"][f"stdlib_mmlu_{subject}"]["effective"]
                assert asked == 4 and accuracy * asked == pytest.approx(round(accuracy * asked)), subject
            assert metrics[f"eval/stdlib_mmlu/{split}/acc"] == pytest.approx(sum(accuracies) / len(accuracies))
        # The two splits are different questions, so (with 4 examples of bpb each) different figures.
        assert metrics["eval/stdlib_qa/val/nll"] != metrics["eval/stdlib_qa/test/nll"]
    assert adapter.data.params["evaluation.base_only"] == "False" and base.data.params["evaluation.base_only"] == "True"
    assert adapter.data.metrics["eval/stdlib_qa/val/nll"] != base.data.metrics["eval/stdlib_qa/val/nll"]


def test_base_only_without_a_finetune_run_evaluates_the_configured_target(store):
    overrides = quick_evaluate_overrides(store["root"], "evaluation.base_only=true", "evaluation.splits=[val]")
    run = mlflow.get_run(run_evaluate(load_config("evaluate", overrides)))
    assert UPSTREAM_TAG not in run.data.tags and run.data.tags[build_run_tag("target")] == store["run"]
    assert 0 <= run.data.metrics["eval/stdlib_mmlu/val/acc"] <= 1
    assert not any("/test/" in key for key in run.data.metrics)  # the test split was not asked for
    assert run.data.tags[CHAT_TEMPLATE_TAG] == "false"  # a target alone was pretrained on plain text


def _tiny_llama(directory: Path, **changes) -> str:
    arch = dict(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(LlamaConfig(**(arch | changes))).save_pretrained(directory)
    return str(directory)


def test_an_adapter_that_does_not_fit_the_base_is_refused(store, tmp_path):
    run = mlflow.get_run(store["run"])
    adapter_dir = model_dir_of(run, "adapter", "mygo.adapter_path", marker="adapter_config.json")
    check_adapter_fits(adapter_dir, run.data.tags[TARGET_PATH_TAG])  # its own base fits
    with pytest.raises(ValueError, match=r"does not fit the base model .*_proj: LoRA A .* do not fit \d+ -> 48"):
        check_adapter_fits(adapter_dir, _tiny_llama(tmp_path / "wider", hidden_size=48))
    with pytest.raises(ValueError, match=r"adapter has no weights for model.layers.2"):
        check_adapter_fits(adapter_dir, _tiny_llama(tmp_path / "deeper", num_hidden_layers=3))


def test_bad_upstream_runs_and_data_are_clear_errors(store, tmp_path):
    finetune = store["run"]
    with pytest.raises(ValueError, match=rf"run {finetune} is a finetune run, expected a select run"):
        run_finetune(load_config("finetune", quick_finetune_overrides(tmp_path, f"upstream.select_run={finetune}")))
    experiment = mlflow.set_experiment("mygo").experiment_id
    unfinished = mlflow.MlflowClient().create_run(experiment, tags={STAGE_TAG: "finetune"}).info.run_id
    with pytest.raises(ValueError, match=f"finetune run {unfinished} is RUNNING, expected FINISHED"):
        run_evaluate(load_config("evaluate", quick_evaluate_overrides(tmp_path, f"upstream.finetune_run={unfinished}")))
    with pytest.raises(ValueError, match="give upstream.finetune_run"):
        run_evaluate(load_config("evaluate", quick_evaluate_overrides(tmp_path)))
    with pytest.raises(ValueError, match="give exactly one source of training data"):
        run_finetune(load_config("finetune", quick_finetune_overrides(tmp_path)))

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=rf"{empty}: no usable records"):
        run_finetune(load_config("finetune", quick_finetune_overrides(tmp_path, f"data.path={empty}")))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(store["data"].read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{broken}:2: not a JSON record"):
        run_finetune(load_config("finetune", quick_finetune_overrides(tmp_path, f"data.path={broken}")))


def test_cli_names_unknown_lm_eval_tasks_with_close_matches(store, capsys):
    code = mygo_main(["evaluate", "--finetune_run", store["run"], "--tasks", "stdlib_mmlu_function"])
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown lm-eval task 'stdlib_mmlu_function'" in error and "stdlib_mmlu_functions" in error


@pytest.mark.timeout(600)
def test_finetune_under_torchrun_with_two_processes_makes_one_run(store):
    overrides = quick_finetune_overrides(store["root"], f"data.path={store['data']}", "target.training.epochs=1")
    done = run_two_processes("finetune.py", overrides, store["root"], store["uri"])
    assert done.returncode == 0, done.stderr[-3000:]
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`mygo.stage` = 'finetune' and params.`target.training.epochs` = '1'",
        output_format="list",
    )
    newest = max(runs, key=lambda run: run.info.start_time)
    # 48 samples, global batch 8 = 4 per process x 2 processes: 6 optimizer steps, one run.
    assert len(mlflow.MlflowClient().get_metric_history(newest.info.run_id, "train/loss")) == 6
    assert newest.data.tags[build_run_tag("target")] == store["run"]


def test_finetune_with_gradient_checkpointing_trains_the_adapter(store):
    extra = [f"data.path={store['data']}", "target.training.epochs=1", "target.training.gradient_checkpointing=true"]
    run = mlflow.get_run(run_finetune(load_config("finetune", quick_finetune_overrides(store["root"], *extra))))
    assert run.info.status == "FINISHED" and run.data.params["target.training.gradient_checkpointing"] == "True"
    adapter_dir = model_dir_of(run, "adapter", "mygo.adapter_path", marker="adapter_config.json")
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert all(w.abs().max() > 0 for name, w in weights.items() if "lora_B" in name)
