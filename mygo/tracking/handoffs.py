"""The hand-offs between stages, as named contracts: what one stage's run leaves for the next.

A stage asks for "the converted model of this convert run" or "the adapter of this finetune run";
it never spells another stage's tag names or artifact paths. Those are declared once, in the stage
table (`mygo.stages.table`: each stage's `artifacts` and `tags`), and read here. Large outputs are
recorded as a local path (a tag) and used from there when this machine has them; small ones are also
artifacts, fetched from the tracking store anywhere else.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from mygo.analysis.score_shards import INDEX_FILE, RouterData, load_router_data
from mygo.stages.table import stage

MODEL_ARTIFACT = stage("convert").artifacts["model"]
MODEL_PATH_TAG = stage("convert").tags["model_path"]
ROUTER_WEIGHTS_ARTIFACT = stage("warmup").artifacts["router_weights"]
ROUTER_DATA_ARTIFACT = stage("score").artifacts["router_data"]
ROUTER_DATA_PATH_TAG = stage("score").tags["router_data_path"]
SELECTED_DATA_ARTIFACT = stage("select").artifacts["selected_data"]
SELECTED_IDS_TAG = stage("select").tags["selected_ids"]
ADAPTER_ARTIFACT = stage("finetune").artifacts["adapter"]
ADAPTER_PATH_TAG = stage("finetune").tags["adapter_path"]
TARGET_PATH_TAG = stage("finetune").tags["target_path"]
BASE_ONLY_TAG = stage("evaluate").tags["base_only"]


def model_dir_of(
    run: Run, artifact_path: str = MODEL_ARTIFACT, path_tag: str = MODEL_PATH_TAG, marker: str = "config.json"
) -> Path:
    """A run's saved model (or adapter): the recorded local path when it exists here, else its artifact.

    Large checkpoints are recorded as a path (tag `path_tag`) rather than copied into the store;
    small ones are also logged as artifacts so another machine can fetch them. `marker`: a file
    the saved directory must hold.
    """
    recorded = run.data.tags.get(path_tag)
    if recorded and (Path(recorded) / marker).is_file():
        return Path(recorded)
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=artifact_path))
    except (MlflowException, OSError) as error:
        raise FileNotFoundError(
            f"run {run.info.run_id} has no model at its recorded path {recorded!r} nor an artifact {artifact_path!r}"
        ) from error


def adapter_of(finetune_run: Run) -> Path:
    """The finetune run's LoRA adapter directory (peft `save_pretrained`, with the tokenizer)."""
    return model_dir_of(finetune_run, ADAPTER_ARTIFACT, ADAPTER_PATH_TAG, marker="adapter_config.json")


def router_weights_of(warmup_run: Run) -> str:
    """The warmup run's router weights file (safetensors), fetched from its artifacts."""
    return mlflow.artifacts.download_artifacts(run_id=warmup_run.info.run_id, artifact_path=ROUTER_WEIGHTS_ARTIFACT)


def convert_run_of(score_run: Run) -> tuple[Run, Run]:
    """(warmup, convert): the warmup run a score run used, and the conversion it started from (model, tokenizer)."""
    from mygo.tracking.runs import UPSTREAM_TAG, check_upstream

    warmup = check_upstream(score_run.data.tags[UPSTREAM_TAG], "warmup")
    return warmup, check_upstream(warmup.data.tags[UPSTREAM_TAG], "convert")


def router_data_path_of(score_run: Run) -> Path:
    """The router data directory the score run recorded (named by the digest of what decided the scores)."""
    return Path(score_run.data.tags[ROUTER_DATA_PATH_TAG])


def router_data_of(score_run: Run) -> RouterData:
    """The score run's router data: its recorded directory when it exists here, else its artifacts."""
    recorded = score_run.data.tags.get(ROUTER_DATA_PATH_TAG)
    if recorded and (Path(recorded) / INDEX_FILE).is_file():
        return load_router_data(recorded)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=score_run.info.run_id, artifact_path=ROUTER_DATA_ARTIFACT)
    except (MlflowException, OSError) as error:
        message = f"score run {score_run.info.run_id} has no router data here nor as artifacts"
        raise FileNotFoundError(message) from error
    return load_router_data(path)


def selected_data_of(select_run: Run) -> Path:
    """The select run's chosen records (`selected_data.jsonl`), fetched from its artifacts."""
    try:
        local = mlflow.artifacts.download_artifacts(run_id=select_run.info.run_id, artifact_path=SELECTED_DATA_ARTIFACT)
    except (MlflowException, OSError) as error:
        message = f"select run {select_run.info.run_id} has no artifact {SELECTED_DATA_ARTIFACT}"
        raise FileNotFoundError(message) from error
    return Path(local)
