"""Per trial of a sweep over arms (`delta_vs_<arm>` objectives, e.g. sweeps/generalization.yaml): the selection
minus the control arm per task and domain mean, in standard errors, beside its select run's noise and diversity.

    python benchmarks/trial_figures.py --sweep_run <parent run id> [--store sqlite:///mlflow.db] [--split val]

Prints a markdown table, one row per finished trial, and (with the split `test`) the sweep run's own comparison
of the best trial on test. The figures are those the runs logged; nothing is recomputed.
"""

from __future__ import annotations

import argparse

import mlflow

TASKS = ("stdlib_qa", "debian_qa", "man_qa", "perldiag_qa", "out_of_domain", "all_domains")
SELECT_FIGURES = (
    ("noise", "noise/fraction_selected", None),
    ("topics", "diversity/topic_coverage", "diversity/topic_coverage/random"),
    ("bigrams", "diversity/distinct_bigrams", "diversity/distinct_bigrams/random"),
    ("coverage distance", "diversity/coverage_distance", "diversity/coverage_distance/random"),
)


def delta_cell(metrics: dict[str, float], task: str, split: str, arm: str) -> str:
    key = f"eval/{task}/{split}/bits_per_byte/delta_vs_{arm}"
    if key not in metrics:
        return "-"
    delta, stderr = metrics[key], metrics.get(f"{key}_stderr", float("nan"))
    return (
        f"{delta:+.4f} ± {stderr:.4f} ({abs(delta) / stderr:.1f} se)"
        if stderr == stderr and stderr
        else f"{delta:+.4f}"
    )


def header(first: str) -> str:
    names = [first, "settings", *TASKS, *(name for name, _, _ in SELECT_FIGURES)]
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def row(label: str, settings: str, metrics: dict[str, float], select_run: str, split: str, arm: str) -> str:
    """A table row: the selection minus `arm` per task (from a pipeline's or trial's comparison metrics) and the
    select run's noise and diversity beside random's."""
    chosen = mlflow.get_run(select_run).data.metrics
    cells = [delta_cell(metrics, task, split, arm) for task in TASKS]
    for _, key, baseline in SELECT_FIGURES:
        cells.append(f"{chosen[key]:.4f}" + (f" ({chosen[baseline]:.4f})" if baseline else ""))
    return f"| {label} | {settings or '-'} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep_run", required=True)
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--arm", default="random")
    args = parser.parse_args()
    mlflow.set_tracking_uri(args.store)
    if args.split == "test":
        trials = [mlflow.get_run(args.sweep_run)]  # the sweep run holds the best trial's comparison on test
    else:
        trials = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.`mlflow.parentRunId` = '{args.sweep_run}' and tags.`mygo.stage` = 'trial'",
            output_format="list",
        )
        latest = {}  # a study made again under the same parent: each trial number's latest run
        for run in sorted(trials, key=lambda run: run.info.start_time):
            latest[int(run.data.tags.get("optuna.trial_number", 0))] = run
        trials = [latest[number] for number in sorted(latest)]
    print(header("trial"))
    for run in trials:
        metrics, tags = run.data.metrics, run.data.tags
        number = tags.get("optuna.trial_number", tags.get("mygo.best_trial", "best"))
        settings = ", ".join(
            f"{key.rsplit('.', 1)[1]}={value}"
            for key, value in sorted(run.data.params.items())
            if key.startswith("trial.")
        )
        select_id = (
            tags.get("mygo.run.select") or mlflow.get_run(tags["mygo.best_trial_run"]).data.tags["mygo.run.select"]
        )
        print(row(number, settings, metrics, select_id, args.split, args.arm))


if __name__ == "__main__":
    main()
