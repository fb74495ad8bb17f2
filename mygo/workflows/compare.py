"""Arms side by side: the selection against its controls (random, quality top-k, the full pool, the base model).

`main` logs the comparison on its run (`mygo.workflows.controls`); `mygo compare <run id>...` prints the same
for any pipeline, trial or evaluate runs. An arm is a set of evaluate runs, one per fine-tuning seed.
"""

from __future__ import annotations

import csv
import io
import json
import math

import mlflow
from mlflow.entities import Run
from omegaconf import DictConfig

from mygo.analysis.arms import (
    HEADLINE_METRICS,
    Estimate,
    arm_estimates,
    eval_figures,
    lower_is_better,
    paired_deltas,
)
from mygo.tracking import plots
from mygo.tracking.handoffs import BASE_ONLY_TAG
from mygo.tracking.runs import STAGE_TAG, configure_tracking, get_run

ARM_TAG = "mygo.arm"
SEED_TAG = "mygo.seed"
ARMS_ARTIFACT = "comparison/arms.json"  # arm -> seed -> evaluate run ID, on a pipeline (or trial) run
REFERENCE_ARM = "selection"

ArmRuns = dict[str, dict[int, str]]  # arm -> seed -> evaluate run ID
ArmFigures = dict[str, dict[int, dict[str, float]]]  # arm -> seed -> eval figures


def arms_of(run: Run) -> ArmRuns:
    """The arms a run holds: a pipeline's (or trial's) recorded arms, or one evaluate run as an arm of one seed."""
    tags, run_id = run.data.tags, run.info.run_id
    stage = tags.get(STAGE_TAG)
    if stage in ("pipeline", "trial"):
        try:
            recorded = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{ARMS_ARTIFACT}"))
        except Exception:  # a pipeline without controls (or from before them): its own evaluate run
            evaluate = tags.get("mygo.run.evaluate")
            if not evaluate:
                raise ValueError(f"{stage} run {run_id} has no evaluate run to compare") from None
            return {REFERENCE_ARM: {0: evaluate}}
        return {arm: {int(seed): rid for seed, rid in seeds.items()} for arm, seeds in recorded.items()}
    if stage == "evaluate":
        base = tags.get(BASE_ONLY_TAG) == "true"
        arm = tags.get(ARM_TAG) or ("base" if base else run.info.run_name or run_id[:8])
        return {arm: {int(tags.get(SEED_TAG, 0)): run_id}}
    raise ValueError(f"run {run_id} is a {stage or 'non-mygo'} run; compare takes pipeline, trial or evaluate runs")


def merge_arms(runs: list[Run]) -> ArmRuns:
    """The arms of several runs; an arm that two runs both hold is told apart by its run's ID."""
    merged: ArmRuns = {}
    for run in runs:
        for arm, seeds in arms_of(run).items():
            label = arm
            if label in merged and set(merged[label]) & set(seeds):
                label = f"{arm}@{run.info.run_id[:8]}"
            merged.setdefault(label, {}).update(seeds)
    return merged


def arm_figures(arm_runs: ArmRuns) -> ArmFigures:
    return {
        arm: {seed: eval_figures(mlflow.get_run(run_id).data.metrics) for seed, run_id in seeds.items()}
        for arm, seeds in arm_runs.items()
    }


def comparison_rows(figures: ArmFigures, reference: str = REFERENCE_ARM) -> list[dict]:
    """One row per (figure, arm): mean and standard error over seeds, and the reference arm minus this one."""
    figures = dict(sorted(figures.items(), key=lambda item: item[0] != reference))  # the reference first
    estimates = arm_estimates(figures)
    deltas = {
        arm: paired_deltas(figures, reference, arm) for arm in figures if arm != reference and reference in figures
    }
    rows = []
    for key in sorted({key for per_arm in estimates.values() for key in per_arm}):
        for arm, per_figure in estimates.items():
            if key not in per_figure:
                continue
            found = per_figure[key]
            delta = deltas.get(arm, {}).get(key)
            rows.append(
                {
                    "figure": key,
                    "arm": arm,
                    "mean": found.mean,
                    "stderr": found.stderr,
                    "seeds": found.n,
                    "delta": delta.mean if delta else math.nan,
                    "delta_stderr": delta.stderr if delta else math.nan,
                }
            )
    return rows


def format_comparison(rows: list[dict], reference: str = REFERENCE_ARM, headline: bool = True) -> str:
    """A block per figure: each arm's mean ± standard error (seeds), and `reference − arm` in standard errors.

    `headline`: the HEADLINE_METRICS only (the CSV has every figure)."""
    lines: list[str] = []
    for key in dict.fromkeys(row["figure"] for row in rows if not headline or row["figure"].endswith(HEADLINE_METRICS)):
        direction = "lower" if lower_is_better(key) else "higher"
        lines += ["", f"{key} ({direction} is better)", f"  {'arm':<22}{'mean ± se (seeds)':<30}{reference} − arm"]
        for row in (r for r in rows if r["figure"] == key):
            value = Estimate(row["mean"], row["stderr"], row["seeds"]).text()
            delta = ""
            if not math.isnan(row["delta"]):
                found = Estimate(row["delta"], row["delta_stderr"], row["seeds"])
                better = (found.mean < 0) == lower_is_better(key) and found.mean != 0
                if found.n < 2:
                    strength = "one seed, "
                elif found.stderr == 0:
                    strength = "the same at every seed, "
                else:
                    strength = f"{abs(found.ratio()):.1f} se, "
                delta = f"{found.text()} ({strength}{reference} {'better' if better else 'not better'})"
            counted = f"{value} ({row['seeds']})"
            lines.append(f"  {row['arm']:<22}{counted:<30}{delta}")
    return "\n".join(lines[1:])


def comparison_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["figure"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def comparison_figure(rows: list[dict], title: str):
    plotted: dict[str, dict[str, tuple[float, float]]] = {}
    for row in rows:
        if row["figure"].endswith(HEADLINE_METRICS):
            plotted.setdefault(row["figure"], {})[row["arm"]] = (row["mean"], row["stderr"])
    return plots.arm_comparison(plotted, title) if plotted else None


def log_comparison(arm_runs: ArmRuns, title: str) -> list[dict]:
    """On the active run: the arms' runs, the table (text and CSV), the picture, and metrics for `mlflow ui`:
    `arms/<arm>/<figure>` (mean over seeds, `_stderr`) and `<figure>/delta_vs_<arm>` (selection − arm, `_stderr`)."""
    rows = comparison_rows(arm_figures(arm_runs))
    mlflow.log_text(json.dumps(arm_runs, indent=2), ARMS_ARTIFACT)  # in arm order: the selection first
    mlflow.log_text(format_comparison(rows) + "\n", "comparison/table.txt")
    mlflow.log_text(comparison_csv(rows), "comparison/table.csv")
    if (figure := comparison_figure(rows, title)) is not None:
        plots.log_figure(figure, "plots/comparison.png")
    metrics = {}
    for row in rows:
        metrics[f"arms/{row['arm']}/{row['figure']}"] = row["mean"]
        if not math.isnan(row["stderr"]):
            metrics[f"arms/{row['arm']}/{row['figure']}_stderr"] = row["stderr"]
        if not math.isnan(row["delta"]):
            metrics[f"{row['figure']}/delta_vs_{row['arm']}"] = row["delta"]
            if not math.isnan(row["delta_stderr"]):
                metrics[f"{row['figure']}/delta_vs_{row['arm']}_stderr"] = row["delta_stderr"]
    mlflow.log_metrics(metrics)
    return rows


def run_compare(cfg: DictConfig) -> str:
    """Print the comparison of the given runs' arms (and, with compare.output, write it as CSV)."""
    configure_tracking(cfg)
    ids = (cfg.compare.run_ids or "").replace(",", " ").split()
    if not ids:
        raise ValueError("compare needs run IDs: mygo compare <run id>... (-P run_ids='<id> <id>')")
    rows = comparison_rows(arm_figures(merge_arms([get_run(run_id) for run_id in ids])))
    if not rows:
        raise ValueError(f"the runs {ids} logged no eval/<task>/<split>/<metric> figures")
    print(format_comparison(rows))
    if cfg.compare.output:
        with open(cfg.compare.output, "w", encoding="utf-8") as file:
            file.write(comparison_csv(rows))
        print(f"written to {cfg.compare.output}")
    return ids[0]
