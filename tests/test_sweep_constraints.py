"""Sweep objectives under constraints: the space's form is checked, each trial records whether it meets them,
and the best trial is the best one that does (a real Optuna study over real select runs of the quick tiny setup)."""

import re

import mlflow
import optuna
import pytest

from mygo.config import load_config
from mygo.workflows.sweep import SpaceError, constraint_values, load_space, run_sweep
from tests.helpers import pipeline_overrides

PARAMS = "params:\n  select.selection.percentage: {type: float, low: 0.05, high: 0.2}\n"


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ("{metric: a}", "objective.constraints must be a list"),
        ("[]", "objective.constraints must be a list"),
        ("[{metric: a}]", "objective.constraints[0] must be a list of {metric"),
        ("[{metric: a, at_most: 1, at_least: 0}]", "objective.constraints[0]"),
        ("[{metric: a, at_most: 1}, {metric: b, below: 2}]", "objective.constraints[1]"),
        ("[{metric: a, at_most: true}]", "objective.constraints[0]"),
    ],
)
def test_bad_constraints_name_the_file_and_the_constraint(tmp_path, constraints, message):
    path = tmp_path / "space.yaml"
    path.write_text(f"objective: {{metric: x, stage: select, constraints: {constraints}}}\n{PARAMS}")
    with pytest.raises(SpaceError, match=f"{re.escape(str(path))}: {re.escape(message)}"):
        load_space(path)


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("{select.selection.percentage: 0.1}", "start must be a list of mappings"),
        ("[{select.selection.count: 3}]", "start[0].select.selection.count: not a parameter of the space"),
        ("[{select.selection.percentage: 0.1}, {select.selection.percentage: 0.5}]", "start[1].select.selection"
         ".percentage: 0.5 is not a number in [0.05, 0.2]"),
    ],
)  # fmt: skip
def test_bad_starting_points_name_the_file_and_the_point(tmp_path, start, message):
    path = tmp_path / "space.yaml"
    path.write_text(f"objective: {{metric: x, stage: select}}\nstart: {start}\n{PARAMS}")
    with pytest.raises(SpaceError, match=f"{re.escape(str(path))}: {re.escape(message)}"):
        load_space(path)


def test_the_diverse_selection_space_bounds_coverage_by_the_random_baseline():
    space = load_space("sweeps/selection_diverse.yaml")
    assert space.objective["metric"] == "noise/fraction_selected" and space.objective["stage"] == "select"
    assert space.objective["constraints"] == [
        {"metric": "diversity/coverage_distance", "at_most": "diversity/coverage_distance/random"}
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_best_trial_is_the_best_that_meets_the_constraints(tracking_store, tmp_path):
    """Maximise the selection's size under a cap on it: without the constraint the largest would win. The two
    starting points (one under the cap, one over it) are the first two trials, as written."""
    space = tmp_path / "capped.yaml"
    space.write_text(
        "objective:\n  metric: selection/num_selected\n  direction: maximize\n  stage: select\n"
        "  constraints: [{metric: selection/num_selected, at_most: 17}]\nsampler: {name: tpe, seed: 0}\n"
        "start: [{select.selection.percentage: 0.06}, {select.selection.percentage: 0.2}]\n" + PARAMS
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = [f"sweep.space={space}", "sweep.n_trials=4", f"sweep.storage={storage}"]
    parent = mlflow.get_run(run_sweep(load_config("sweep", [*pipeline_overrides(tmp_path), *settings])))

    study = optuna.load_study(study_name="capped", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    assert [t.params["select.selection.percentage"] for t in trials[:2]] == [0.06, 0.2]
    for trial in trials:
        assert list(trial.constraints) == ["0:selection/num_selected"]
        assert trial.constraints["0:selection/num_selected"] == trial.value - 17
        run = mlflow.get_run(trial.user_attrs["mlflow_run"])
        assert run.data.metrics["objective/feasible"] == float(trial.value <= 17)
    feasible = [t for t in trials if t.value <= 17]
    assert feasible and len(feasible) < len(trials)  # the start gives both kinds, so the constraint decides
    best = max(feasible, key=lambda t: (t.value, -t.number))
    assert parent.data.tags["mygo.best_trial"] == str(best.number)
    assert parent.data.metrics["best/objective"] == best.value < max(t.value for t in trials)


def test_constraints_read_each_metric_from_the_first_run_that_logged_it(tracking_store):
    """A trial judged against its control arm holds the deltas; its select run holds noise and diversity."""
    with mlflow.start_run() as trial:
        mlflow.log_metric("eval/all_domains/val/bits_per_byte/delta_vs_random", -0.05)
    with mlflow.start_run() as select:
        mlflow.log_metrics({"noise/fraction_selected": 0.02, "diversity/topic_coverage": 0.30})
        mlflow.log_metric("diversity/topic_coverage/random", 0.32)
    constraints = [
        {"metric": "noise/fraction_selected", "at_most": 0.03},
        {"metric": "diversity/topic_coverage", "at_least": "diversity/topic_coverage/random"},
    ]
    runs = [trial.info.run_id, select.info.run_id]
    assert constraint_values(runs, constraints) == pytest.approx([-0.01, 0.02])  # the first holds, the second not
    with pytest.raises(ValueError, match="no metric 'noise/kept'"):
        constraint_values(runs, [{"metric": "noise/kept", "at_most": 0.03}])


def test_the_generalization_space_chooses_on_every_task_and_bounds_noise_and_diversity():
    space = load_space("sweeps/generalization.yaml")
    assert space.objective["metric"] == "eval/all_domains/val/bits_per_byte/delta_vs_random"
    assert space.objective["direction"] == "minimize" and space.objective["stage"] == "evaluate"
    bounded = {c["metric"] for c in space.objective["constraints"]}
    assert {"noise/fraction_selected", "diversity/topic_coverage", "diversity/coverage_distance"} <= bounded
    assert all(p.stage == "select" for p in space.params)
