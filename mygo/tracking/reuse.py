"""Run reuse: a finished run with the same resolved config (upstream run included) and code is not run again."""

from __future__ import annotations

import logging
from collections.abc import Callable

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig

from mygo.config import config_hash
from mygo.tracking.code_version import CODE_DIGEST_TAG, code_digest
from mygo.tracking.runs import CONFIG_HASH_TAG, STAGE_TAG

logger = logging.getLogger(__name__)


def find_finished_run(stage: str | None, tags: dict[str, str], experiment_names: list[str] | None = None) -> Run | None:
    """The newest FINISHED run of `stage` (None: of any stage) whose tags match, for reusing work already done."""
    conditions = ["attributes.status = 'FINISHED'"] + [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    if stage is not None:
        conditions.insert(0, f"tags.`{STAGE_TAG}` = '{stage}'")
    query = " and ".join(conditions)
    runs = mlflow.search_runs(
        experiment_names=experiment_names,
        search_all_experiments=experiment_names is None,
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0] if runs else None


def run_or_reuse(
    stage: str, cfg: DictConfig, runner: Callable[[DictConfig], str], force: bool = False
) -> tuple[str, bool]:
    """A FINISHED run of `stage` with the same resolved config (upstream run included) and code, else a new
    one (always with `force`): (run id, reused)."""
    if force:
        return runner(cfg), False
    finished = find_finished_run(stage, {CONFIG_HASH_TAG: config_hash(cfg), CODE_DIGEST_TAG: code_digest()})
    if finished is not None:
        logger.info("%s: reusing finished run %s", stage, finished.info.run_id)
        return finished.info.run_id, True
    return runner(cfg), False
