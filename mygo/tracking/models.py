"""The fine-tuned model as an MLflow Model: logged with the transformers flavor, registered, found by URI.

finetune logs its PEFT model with `mlflow.transformers.log_model` (task text-generation): MLflow keeps the
adapter weights only (`peft/`) and records where the base comes from. Which base record depends on the base:

- a hub id: MLflow records the repository and its commit; loading downloads the base (MLflow's default);
- a local directory (the built-in tiny target, a local checkpoint) of at most `tracking.log_model_max_mb`:
  the base weights travel in the model (MLflow saves them for a base that is no hub id), so the model
  loads anywhere;
- a larger local directory: referenced by path (`base_model_path`); loading on a machine without it
  fails naming that path (`mlflow.transformers.load_model(uri, base_model_path=...)` points elsewhere).

So `mlflow.transformers.load_model("runs:/<id>/model")` gives the tuned PEFT model in a pipeline and
`mlflow.pyfunc.load_model(...).predict([...])` generates text. The version is registered
(`tracking.registered_model`; auto: `mygo-<target preset>`) with tags naming the select, score and warmup
runs behind it, and the finetune run records it (`mygo.model_version`), so a sweep can alias its best trial's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG, check_upstream, get_run

logger = logging.getLogger(__name__)

MODEL_NAME = "model"  # runs:/<finetune run>/model
MODEL_VERSION_TAG = "mygo.model_version"  # "<registered name>/<version>" on the finetune run
MODEL_BASE_TAG = "mygo.model_base"  # how the base is kept: hub | included | referenced
LINEAGE_STAGES = ("select", "score", "warmup", "convert")
GENERATION = {"max_new_tokens": 64, "do_sample": False}  # pyfunc predict's defaults; params override them


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def model_requirements() -> list[str]:
    """The packages the model needs, pinned to this environment: given, so MLflow does not load the model in a
    subprocess to infer them (seconds per run)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers", "peft", "accelerate")]


def registered_name(cfg: DictConfig) -> str | None:
    """`tracking.registered_model`: auto means `mygo-<target preset>`; null, not registered."""
    name = cfg.tracking.get("registered_model", "auto")
    if name is None or str(name).lower() in ("", "null", "none"):
        return None
    return f"mygo-{cfg.target.name}" if str(name) == "auto" else str(name)


def upstream_runs(run_id: str | None) -> dict[str, str]:
    """{stage: run ID} of the run and everything it was built on, through `mygo.upstream_run` tags."""
    found: dict[str, str] = {}
    while run_id:
        run = get_run(run_id)
        found.setdefault(run.data.tags.get(STAGE_TAG, "unknown"), run_id)
        run_id = run.data.tags.get(UPSTREAM_TAG)
    return found


def log_tuned_model(cfg: DictConfig, model, tokenizer, base_location: str, select_run: str | None) -> str | None:
    """Log the PEFT model as `model` in the active finetune run and register it; returns "<name>/<version>"
    (None when not registered)."""
    base = Path(base_location)
    kwargs: dict = {}
    if base.is_dir():
        size, limit = directory_mb(base), float(cfg.tracking.log_model_max_mb)
        kind = "included" if size <= limit else "referenced"
        if kind == "referenced":  # too big to copy into the store: loading needs this path (or base_model_path=)
            kwargs["base_model_path"] = str(base.resolve())
        logger.info("base %s (%.1f MB, tracking.log_model_max_mb=%g): %s", base, size, limit, kind)
    else:
        kind = "hub"
    with_lineage = {f"mygo.{stage}_run": run for stage, run in upstream_runs(select_run).items()}
    info = mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name=MODEL_NAME,
        task="text-generation",
        model_config=GENERATION,
        pip_requirements=model_requirements(),
        **kwargs,
    )
    mlflow.set_tag(MODEL_BASE_TAG, kind)
    name = registered_name(cfg)
    if name is None:
        return None
    run_id = mlflow.active_run().info.run_id
    tags = with_lineage | {"mygo.finetune_run": run_id, "mygo.target": str(cfg.target.name), MODEL_BASE_TAG: kind}
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    mlflow.set_tag(MODEL_VERSION_TAG, f"{name}/{version.version}")
    logger.info("registered %s version %s (base %s)", name, version.version, kind)
    return f"{name}/{version.version}"


def set_alias(version: str, alias: str) -> None:
    """Point `alias` of the registered model at "<name>/<version>"."""
    name, _, number = version.rpartition("/")
    mlflow.MlflowClient().set_registered_model_alias(name, alias, number)


def model_version_of(uri: str):
    """The registry's model version behind `models:/<name>@<alias>` or `models:/<name>/<version>`."""
    if not uri.startswith("models:/"):
        raise ValueError(f"upstream.model_uri={uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
    body = uri.removeprefix("models:/").strip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, number = body.rpartition("/")
        if not name or not number.isdigit():
            raise ValueError(f"upstream.model_uri={uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")
        return client.get_model_version(name, number)
    except MlflowException as error:
        raise ValueError(f"upstream.model_uri={uri!r}: {error.message}") from error


def finetune_run_of(uri: str) -> Run:
    """The FINISHED finetune run that logged the registered version `uri` names."""
    version = model_version_of(uri)
    run_id = version.run_id or version.tags.get("mygo.finetune_run")
    if not run_id:
        raise ValueError(f"upstream.model_uri={uri!r}: version {version.version} names no run that logged it")
    return check_upstream(run_id, "finetune")
