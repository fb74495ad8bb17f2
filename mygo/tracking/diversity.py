"""The select stage's diversity record: the run's selection beside a random and a quality top-k selection of
the same size, measured alike (`mygo.analysis.diversity`) and drawn against the pool.

The baselines cost no model pass: they are made from the quality and clusters the run already has.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from mygo.analysis.diversity import MIN_SELECTED, coverage_rows, diversity_metrics
from mygo.analysis.selection import select
from mygo.data.formats import conversation
from mygo.data.pool import TOPIC_FIELD, records_at
from mygo.tracking import plots

logger = logging.getLogger(__name__)

BASELINES = {"random": "random", "topk": "quality_topk"}  # metric suffix -> strategy
SKIPPED_TAG = "mygo.diversity_skipped"


def _answers(record: dict) -> list[str]:
    return [m["content"] for m in conversation(record) if m["role"] == "assistant"]  # records as written, any format


def selection_diversity(
    index: pd.DataFrame,
    features: np.ndarray,
    quality: np.ndarray,
    labels: np.ndarray,
    selected: np.ndarray,
    cfg: DictConfig,
) -> dict[str, float]:
    """`diversity/<metric>` of the selection, `diversity/<metric>/random` and `/topk` of the baselines; logs the
    picture (`plots/diversity.png`). From the select config: `selection.seed` draws the random baseline (as
    strategy=random would), `diversity.coverage_sample` pool rows average the coverage distance. A selection of
    fewer than MIN_SELECTED samples gets none and says why."""
    n, count = len(selected), int(selected.sum())
    if count < MIN_SELECTED:
        reason = f"the selection has {count} sample(s); diversity needs at least {MIN_SELECTED}: none logged"
        logger.warning("diversity: %s", reason)
        mlflow.set_tag(SKIPPED_TAG, reason)
        return {}
    masks = {"selection": selected}
    for suffix, strategy in BASELINES.items():
        masks[suffix] = select(strategy, quality, labels, count / n, cfg.selection.seed).rounds >= 0
    union = np.flatnonzero(np.logical_or.reduce(list(masks.values())))
    locations = list(zip(index["file"].iloc[union], index["line"].iloc[union], strict=True))
    text_of = {row: _answers(record) for row, record in zip(union.tolist(), records_at(locations), strict=True)}
    topics = index[TOPIC_FIELD].tolist() if TOPIC_FIELD in index.columns else None
    sources, rows = index["dataset"].to_numpy(), coverage_rows(n, size=cfg.diversity.coverage_sample)
    metrics = {}
    for name, mask in masks.items():
        answers = [text for row in np.flatnonzero(mask) for text in text_of[int(row)]]
        measured = diversity_metrics(mask, labels, features, rows, sources, answers, topics)
        suffix = "" if name == "selection" else f"/{name}"
        metrics |= {f"diversity/{key}{suffix}": value for key, value in measured.items()}
    groupings = {"source": sources, "cluster": np.where(labels < 0, "noise", labels.astype(str))}
    if topics is not None and "diversity/topic_coverage" in metrics:
        groupings["topic"] = np.array([t if isinstance(t, str) else "(none)" for t in topics], dtype=object)
    figure = plots.selection_vs_pool(
        groupings, {"selection": selected, "random": masks["random"], "top-k": masks["topk"]}
    )
    plots.log_figure(figure, "plots/diversity.png")
    return metrics
