"""Run reuse: a finished run with the same resolved config (upstream run included), code and pool is not run again.

The config names the pool by its location only, so a run that read a pool records the pool's content
digest (`mygo.pool_digest`) and is reused only while the pool there still has that digest: an edited
pool file makes warmup and score (and a finetune on `data.path`) run again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig

from mygo.config import config_hash
from mygo.data.pool import source_digest
from mygo.tracking.code_version import CODE_DIGEST_TAG, code_digest
from mygo.tracking.runs import CONFIG_HASH_TAG, POOL_DIGEST_TAG, POOL_SOURCE_TAG, STAGE_TAG

logger = logging.getLogger(__name__)


def find_finished_runs(
    stage: str | None, tags: dict[str, str], experiment_names: list[str] | None = None, max_results: int = 1
) -> list[Run]:
    """The newest FINISHED runs of `stage` (None: of any stage) whose tags match, newest first."""
    conditions = ["attributes.status = 'FINISHED'"] + [f"tags.`{key}` = '{value}'" for key, value in tags.items()]
    if stage is not None:
        conditions.insert(0, f"tags.`{STAGE_TAG}` = '{stage}'")
    query = " and ".join(conditions)
    runs = mlflow.search_runs(
        experiment_names=experiment_names,
        search_all_experiments=experiment_names is None,
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
        output_format="list",
    )
    return runs


def find_finished_run(stage: str | None, tags: dict[str, str], experiment_names: list[str] | None = None) -> Run | None:
    """The newest FINISHED run of `stage` (None: of any stage) whose tags match, for reusing work already done."""
    runs = find_finished_runs(stage, tags, experiment_names)
    return runs[0] if runs else None


def pool_unchanged(run: Run, digests: dict[str, str | None]) -> bool:
    """Whether the pool the run read (if any) still has the content it had; `digests` caches by source."""
    recorded = run.data.tags.get(POOL_DIGEST_TAG)
    source = run.data.tags.get(POOL_SOURCE_TAG)
    if recorded is None or source is None:  # a run that read no pool
        return True
    if source not in digests:
        digests[source] = source_digest(json.loads(source))
    if digests[source] == recorded:
        return True
    now = "gone" if digests[source] is None else f"digest {digests[source][:12]}"
    logger.info("run %s read pool %s with digest %s, now %s: not reused", run.info.run_id, source, recorded[:12], now)
    return False


def run_or_reuse(
    stage: str, cfg: DictConfig, runner: Callable[[DictConfig], str], force: bool = False
) -> tuple[str, bool]:
    """A FINISHED run of `stage` with the same resolved config (upstream run included), code and pool content,
    else a new one (always with `force`): (run id, reused)."""
    if force:
        return runner(cfg), False
    tags = {CONFIG_HASH_TAG: config_hash(cfg), CODE_DIGEST_TAG: code_digest()}
    digests: dict[str, str | None] = {}
    # Several candidates: the newest may have read the pool before an edit that was later undone.
    for finished in find_finished_runs(stage, tags, max_results=20):
        if pool_unchanged(finished, digests):
            logger.info("%s: reusing finished run %s", stage, finished.info.run_id)
            return finished.info.run_id, True
    return runner(cfg), False
