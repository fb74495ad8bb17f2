"""The tuned model and the selector as MLflow Models: a real SQLite registry, peft, pyfunc, `mlflow models serve`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mygo.analysis.score_shards import load_router_data
from mygo.config import load_config
from mygo.data.demo_pool.build import ensure_demo_pool
from mygo.data.pool import records_at
from mygo.stages.evaluate import run_evaluate
from mygo.stages.finetune import run_finetune
from mygo.stages.score import OVERLAP_WEIGHTS_FILE
from mygo.stages.selector import SELECTOR_VERSION_TAG, log_selector
from mygo.stages.target import load_target_tokenizer
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG, TARGET_PATH_TAG, adapter_of, model_dir_of, router_weights_of
from mygo.tracking.models import MODEL_BASE_TAG, MODEL_VERSION_TAG, finetune_run_of, log_tuned_model, set_alias
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import (
    as_tracking_store,
    copy_store,
    quick_evaluate_overrides,
    quick_finetune_overrides,
    scored_copy,
    use_store,
)
from tests.servers import free_port

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess


def hand_made_lineage(client: mlflow.MlflowClient, data_text: str) -> str:
    """A select run built on a score run built on a warmup run, as those stages tag them; returns the select run.

    The stages themselves are tested elsewhere; here only their tags and the selection artifact matter.
    """
    experiment = mlflow.set_experiment("lineage").experiment_id
    upstream = None
    for stage in ("warmup", "score", "select"):
        run = client.create_run(experiment, tags={STAGE_TAG: stage, **({UPSTREAM_TAG: upstream} if upstream else {})})
        if stage == "select":
            client.log_text(run.info.run_id, data_text, "selection/selected_data.jsonl")
        client.set_terminated(run.info.run_id, "FINISHED")
        upstream = run.info.run_id
    return upstream


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, empty_store):
    """One finetune run (1 epoch, 32 records, model logging on) trained on a select run's selection."""
    root = tmp_path_factory.mktemp("tuned")
    pool_dir = ensure_demo_pool(root / "demo", num_samples=40, noise_fraction=0.2, seed=0, max_answer_chars=200)
    records = [line for path in sorted(pool_dir.glob("*/*.jsonl")) for line in path.read_text().splitlines()]
    uri = copy_store(empty_store, root)
    with pytest.MonkeyPatch.context() as patch:
        use_store(uri, patch)
        client = mlflow.MlflowClient()
        select_run = hand_made_lineage(client, "\n".join(records[:32]) + "\n")
        overrides = quick_finetune_overrides(
            root, f"upstream.select_run={select_run}", "target.training.epochs=1", "tracking.log_model=true"
        )
        run_id = run_finetune(load_config("finetune", overrides))
        yield {"uri": uri, "root": root, "run": run_id, "select": select_run}


@pytest.fixture
def store(tuned, monkeypatch):
    yield from as_tracking_store(tuned, monkeypatch)


def test_transformers_load_model_gives_the_tuned_peft_model(store):
    run = mlflow.get_run(store["run"])
    assert run.data.tags[MODEL_BASE_TAG] == "included"  # the tiny target is far below the size threshold
    assert run.data.metrics["finetune/log_model_seconds"] > 0
    pipeline = mlflow.transformers.load_model(f"runs:/{store['run']}/model")
    assert isinstance(pipeline.model, PeftModel)
    trained = load_file(str(adapter_of(run) / "adapter_model.safetensors"))
    loaded = {name: tensor for name, tensor in pipeline.model.state_dict().items() if "lora_" in name}
    assert len(loaded) == len(trained) > 0
    for name, tensor in trained.items():
        torch.testing.assert_close(loaded[name.replace(".weight", ".default.weight")], tensor)
    # The base travelled with the adapter: bit-identical to the target the run trained on.
    base = AutoModelForCausalLM.from_pretrained(run.data.tags[TARGET_PATH_TAG])
    merged_base = pipeline.model.get_base_model()
    name, weight = next(iter(base.state_dict().items()))
    torch.testing.assert_close(merged_base.state_dict()[name], weight)


def test_pyfunc_predict_generates_text(store):
    model = mlflow.pyfunc.load_model(f"runs:/{store['run']}/model")
    answers = model.predict(["What does len() return?", "Name a built-in type."], params={"max_new_tokens": 8})
    assert len(answers) == 2 and all(isinstance(text, str) for text in answers)


def test_the_version_is_registered_with_its_lineage(store):
    client = mlflow.MlflowClient()
    name, _, number = mlflow.get_run(store["run"]).data.tags[MODEL_VERSION_TAG].rpartition("/")
    assert name == "mygo-tiny"
    version = client.get_model_version(name, number)
    assert version.run_id == store["run"]
    chain = [store["select"]]
    while upstream := mlflow.get_run(chain[-1]).data.tags.get(UPSTREAM_TAG):
        chain.append(upstream)
    select, score, warmup = chain
    assert version.tags["mygo.select_run"] == select
    assert version.tags["mygo.score_run"] == score
    assert version.tags["mygo.warmup_run"] == warmup
    assert version.tags["mygo.finetune_run"] == store["run"]


def test_evaluate_takes_a_models_uri_by_alias_and_by_version(store):
    version = mlflow.get_run(store["run"]).data.tags[MODEL_VERSION_TAG]
    set_alias(version, "champion")
    name, _, number = version.rpartition("/")
    assert finetune_run_of(f"models:/{name}/{number}").info.run_id == store["run"]
    overrides = quick_evaluate_overrides(store["root"], f"upstream.model_uri=models:/{name}@champion")
    evaluated = mlflow.get_run(run_evaluate(load_config("evaluate", overrides)))
    assert evaluated.data.tags[UPSTREAM_TAG] == store["run"]
    assert any(key.endswith("/acc") for key in evaluated.data.metrics)
    with pytest.raises(ValueError, match="upstream.model_uri='models:/mygo-tiny@nobody'"):
        finetune_run_of("models:/mygo-tiny@nobody")
    with pytest.raises(ValueError, match="not both"):
        run_evaluate(load_config("evaluate", [*overrides, f"upstream.finetune_run={store['run']}"]))


def test_a_base_above_the_threshold_is_referenced_and_loading_names_its_path(store, tmp_path):
    run = mlflow.get_run(store["run"])
    base_dir = tmp_path / "local-base"
    shutil.copytree(run.data.tags[TARGET_PATH_TAG], base_dir)
    adapter = adapter_of(run)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter)
    cfg = load_config("finetune", ["tracking.log_model_max_mb=0", "tracking.registered_model=null"])
    with mlflow.start_run():
        assert log_tuned_model(cfg, model, load_target_tokenizer(str(adapter)), str(base_dir), None) is None
        referenced = mlflow.active_run().info.run_id
    assert mlflow.get_run(referenced).data.tags[MODEL_BASE_TAG] == "referenced"
    shutil.rmtree(base_dir)
    with pytest.raises(Exception, match=str(base_dir)):
        mlflow.transformers.load_model(f"runs:/{referenced}/model")


def test_a_sweep_aliases_its_best_trials_model_version(store):
    import optuna

    from mygo.workflows.sweep import TRIAL_RUN_ATTR, log_study_results

    experiment = mlflow.set_experiment("sweep").experiment_id
    client = mlflow.MlflowClient()
    trials = {}
    for value in (0.3, 0.9):  # the better trial (0.9, maximised) is the one whose finetune run logged the model
        run = client.create_run(experiment, tags={STAGE_TAG: "trial"})
        if value == 0.9:
            client.set_tag(run.info.run_id, "mygo.run.finetune", store["run"])
        trials[value] = run.info.run_id
    study = optuna.create_study(direction="maximize")
    for value, run_id in trials.items():
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={TRIAL_RUN_ATTR: run_id}))
    with mlflow.start_run(experiment_id=experiment) as parent:
        log_study_results(study)
    assert mlflow.get_run(parent.info.run_id).data.tags["mygo.best_model"] == "models:/mygo-tiny@best"
    version = mlflow.MlflowClient().get_model_version_by_alias("mygo-tiny", "best")
    assert version.run_id == store["run"]


# ---------------------------------------------------------------------------------------------- the selector


@pytest.fixture(scope="module")
def scored(scored_template, tmp_path_factory):
    """The session's scored store: a warmup run and a score run of its pool with the selector logged (and
    registered)."""
    store = scored_copy(scored_template, tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        use_store(store["uri"], patch)
        score = mlflow.get_run(store["score_run"])
    data = load_router_data(score.data.tags[ROUTER_DATA_PATH_TAG])
    return store | {"score": score, "warmup": store["warmup_run"], "data": data}


def sample_records(data, count: int = 6) -> tuple[list[dict], pd.DataFrame]:
    """Records of the scored pool as written in their files, and the score stage's values for them."""
    rows = np.linspace(0, len(data.index) - 1, count).astype(int)  # short and long ones, several sources
    records = records_at(list(zip(data.index["file"].iloc[rows], data.index["line"].iloc[rows], strict=True)))
    expected = pd.DataFrame({"gate": data.sample_quality[rows], **{k: v[rows] for k, v in data.signals.items()}})
    expected.insert(0, "id", list(data.index["id"].iloc[rows]))
    return records, expected


def assert_scores_equal(answer: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(answer["id"]) == list(expected["id"])
    for column in expected.columns[1:]:
        np.testing.assert_allclose(answer[column].to_numpy(float), expected[column].to_numpy(float), atol=1e-5)


def test_the_selector_is_a_registered_pyfunc_that_scores_as_score_does(scored, monkeypatch):
    use_store(scored["uri"], monkeypatch)
    score = scored["score"]
    name, _, number = score.data.tags[SELECTOR_VERSION_TAG].rpartition("/")
    version = mlflow.MlflowClient().get_model_version(name, number)
    assert name == "mygo-selector" and version.run_id == score.info.run_id
    assert version.tags["mygo.warmup_run"] == scored["warmup"]
    records, expected = sample_records(scored["data"])
    selector = mlflow.pyfunc.load_model(f"models:/{name}/{number}")
    answer = selector.predict(pd.DataFrame(records))
    signals = {"gate", "gate/layer_0", "gate/layer_1", "nll", "relevance", "overlap", "prompt_copy", "repetition"}
    assert signals <= set(answer.columns)
    assert_scores_equal(answer, expected)
    # Another format mygo reads: the same conversation as alpaca fields scores as the messages record does.
    single = next(r for r in records if len(r["messages"]) == 2 and r["messages"][0]["role"] == "user")
    alpaca = {"instruction": single["messages"][0]["content"], "output": single["messages"][1]["content"]}
    both = selector.predict(pd.DataFrame([{"messages": single["messages"]}, alpaca]))
    np.testing.assert_allclose(both.iloc[0].to_numpy(float), both.iloc[1].to_numpy(float), atol=1e-6)


@pytest.mark.timeout(300)
def test_mlflow_models_serve_answers_as_the_score_stage(scored, monkeypatch):
    use_store(scored["uri"], monkeypatch)
    name, _, number = scored["score"].data.tags[SELECTOR_VERSION_TAG].rpartition("/")
    mlflow.MlflowClient().set_registered_model_alias(name, "served", number)
    records, expected = sample_records(scored["data"])
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": scored["uri"], "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    command = ["mlflow", "models", "serve", "-m", f"models:/{name}@served", "--env-manager", "local"]
    command += ["-p", str(port), "-h", "127.0.0.1", "--workers", "1"]
    log = scored["root"] / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        body = json.dumps({"dataframe_records": records}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
        assert_scores_equal(answer, expected)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert server.poll() is not None


def test_a_selector_over_the_size_threshold_is_referenced_and_loading_names_its_path(scored, monkeypatch, tmp_path):
    use_store(scored["uri"], monkeypatch)
    score = scored["score"]
    convert = mlflow.get_run(mlflow.get_run(scored["warmup"]).data.tags[UPSTREAM_TAG])
    local = tmp_path / "converted"
    shutil.copytree(model_dir_of(convert), local)
    resolved = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{score.info.run_id}/config/resolved.yaml"))
    resolved.tracking.log_model_max_mb = 0
    resolved.tracking.registered_selector = None
    with mlflow.start_run():
        weights = Path(score.data.tags[ROUTER_DATA_PATH_TAG]) / OVERLAP_WEIGHTS_FILE  # the scored pool's 4-gram idf
        assert log_selector(resolved, local, router_weights_of(mlflow.get_run(scored["warmup"])), weights) is None
        referenced = mlflow.active_run().info.run_id
    included = Path(mlflow.artifacts.download_artifacts(f"runs:/{score.info.run_id}/selector"))
    assert (included / "artifacts" / "model" / "config.json").is_file()  # the score run's carries its model
    logged = Path(mlflow.artifacts.download_artifacts(f"runs:/{referenced}/selector"))
    assert (logged / "artifacts").is_dir() and not (logged / "artifacts" / "model").exists()
    records, expected = sample_records(scored["data"], count=2)
    assert_scores_equal(mlflow.pyfunc.load_model(f"runs:/{referenced}/selector").predict(records), expected)
    shutil.rmtree(local)
    with pytest.raises(Exception, match=str(local)):
        mlflow.pyfunc.load_model(f"runs:/{referenced}/selector")
