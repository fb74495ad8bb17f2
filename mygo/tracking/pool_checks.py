"""What the pool checks before warmup and scoring removed, recorded on the stage's run."""

from __future__ import annotations

import mlflow

from mygo.data.decontamination import REMOVED_ARTIFACT
from mygo.data.pool import Pool
from mygo.tracking.notes import NOTE_TAG, set_note


def log_decontamination(pool: Pool) -> None:
    """`decontam/...` metrics, the removed records (`decontamination/removed.jsonl`: id, source, task, split, the
    shared n-gram) and the report in the run's description; nothing when decontamination is off."""
    report = pool.decontamination
    if report is None:
        return
    removed = report.removed
    ids, sources = {}, {}
    if len(removed):
        records = pool.records.select(removed).select_columns(["id", "dataset"])
        ids = dict(zip(removed.tolist(), records["id"], strict=True))
        sources = dict(zip(removed.tolist(), records["dataset"], strict=True))
    mlflow.log_metrics(report.metrics(sources))
    mlflow.log_text(report.removed_jsonl(ids, sources), REMOVED_ARTIFACT)
    run = mlflow.active_run()
    note = mlflow.MlflowClient().get_run(run.info.run_id).data.tags.get(NOTE_TAG, "") if run else ""
    set_note("\n\n".join(part for part in (note, report.description()) if part))
