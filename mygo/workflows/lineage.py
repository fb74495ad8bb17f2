"""Lineage: from any run back to its conversion, through the `mygo.upstream_run` tags every stage sets.

`mygo lineage <run id>` prints the chain with each run's key params and metrics, the code it ran and
its dataset inputs; a pipeline run is followed from its last stage.
"""

from __future__ import annotations

from mlflow.entities import Run
from omegaconf import DictConfig

from mygo.analysis.arms import HEADLINE_METRICS
from mygo.stages.table import STAGE_NAMES, STAGES
from mygo.tracking.code_version import CODE_DIGEST_TAG, GIT_COMMIT_TAG, GIT_DIRTY_TAG
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG, configure_tracking, get_run

# What one looks at first in each stage: used by lineage and the pipeline's summary.
KEY_PARAMS = {entry.name: entry.key_params for entry in STAGES}
KEY_METRICS = {entry.name: entry.key_metrics for entry in STAGES}  # evaluate: see HEADLINE_METRICS
PIPELINE_ORDER = STAGE_NAMES


def key_metrics(run: Run) -> dict[str, float]:
    stage = run.data.tags.get(STAGE_TAG, "")
    metrics = run.data.metrics
    if stage == "evaluate":
        return {
            k: v
            for k, v in sorted(metrics.items())
            if k.startswith("eval/") and k.count("/") == 3 and k.endswith(HEADLINE_METRICS)
        }
    return {name: metrics[name] for name in KEY_METRICS.get(stage, ()) if name in metrics}


def key_params(run: Run) -> dict[str, str]:
    params = run.data.params
    return {name: params[name] for name in KEY_PARAMS.get(run.data.tags.get(STAGE_TAG, ""), ()) if name in params}


def lineage(run_id: str) -> list[Run]:
    """The run and its upstream runs, newest first, down to the conversion."""
    run = get_run(run_id)
    if run.data.tags.get(STAGE_TAG) == "pipeline":  # follow the pipeline's last stage
        stages = [s for s in PIPELINE_ORDER if f"mygo.run.{s}" in run.data.tags]
        if not stages:
            raise ValueError(f"pipeline run {run_id} recorded no stage runs")
        run = get_run(run.data.tags[f"mygo.run.{stages[-1]}"])
    chain = [run]
    while upstream := chain[-1].data.tags.get(UPSTREAM_TAG):
        try:
            chain.append(get_run(upstream))
        except ValueError as error:
            raise ValueError(
                f"{chain[-1].data.tags.get(STAGE_TAG)} run {chain[-1].info.run_id}: upstream {error}"
            ) from error
    return chain


def describe(run: Run) -> list[str]:
    tags = run.data.tags
    commit = tags.get(GIT_COMMIT_TAG, "unknown")[:12]
    dirty = " (dirty)" if tags.get(GIT_DIRTY_TAG) == "true" else ""
    lines = [
        f"{tags.get(STAGE_TAG, '?'):<9}{run.info.run_id}  {run.info.status}  {run.info.run_name}",
        f"{'':9}code {tags.get(CODE_DIGEST_TAG, 'unknown')} at commit {commit}{dirty}; "
        f"config {tags.get('mygo.config_hash', '?')}",
    ]
    if params := key_params(run):
        lines.append(f"{'':9}params  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if metrics := key_metrics(run):
        lines.append(f"{'':9}metrics " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    for item in run.inputs.dataset_inputs:
        lines.append(f"{'':9}input   {item.dataset.name} (digest {item.dataset.digest})")
    return lines


def format_lineage(chain: list[Run]) -> str:
    lines = []
    for depth, run in enumerate(chain):
        if depth:
            lines.append(f"{'':4}^ built on")
        lines.extend(describe(run))
    return "\n".join(lines)


def run_lineage(cfg: DictConfig) -> str:
    configure_tracking(cfg)
    if not cfg.lineage.run_id:
        raise ValueError("lineage needs a run ID: mygo lineage <run id> (-P run_id=<run id>)")
    print(format_lineage(lineage(cfg.lineage.run_id)))
    return cfg.lineage.run_id
