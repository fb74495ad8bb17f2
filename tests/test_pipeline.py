"""`main`, lineage and reproduce on the quick tiny setup against a real MLflow store.

One module-scoped store holds a first `main`; the tests build on it (reuse, force, lineage,
reproduce, Ctrl-C), each adding runs of its own.
"""

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.stages.score import run_score
from mygo.stages.select import run_select
from mygo.tracking.code_version import CODE_DIGEST_TAG, GIT_COMMIT_TAG, code_digest
from mygo.tracking.handoffs import SELECTED_IDS_TAG
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from mygo.workflows.lineage import lineage
from mygo.workflows.pipeline import PIPELINE_STAGES, run_pipeline
from mygo.workflows.reproduce import REPRODUCES_TAG, ReproductionMismatch, code_notice, run_reproduce
from tests.helpers import REPO, artifact_paths, as_tracking_store, copy_store, pipeline_overrides, use_store

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess

# The first main runs two control arms over two seeds (quick: a dozen samples, four eval items); later ones none.
ARMS = ["pipeline.controls=[random,base]", "pipeline.seeds=[0,1]"]
NO_ARMS = ["pipeline.controls=[]", "pipeline.seeds=[]"]


def reproduce_config(run_id: str, root, *extra: str):
    overrides = [f"reproduce.run_id={run_id}", f"reproduce.output_dir={root / 'reproduce'}", *extra]
    return load_config("reproduce", overrides)


@pytest.fixture(scope="module")
def first_main(tmp_path_factory, empty_store):
    root = tmp_path_factory.mktemp("pipeline")
    uri = copy_store(empty_store, root)
    with pytest.MonkeyPatch.context() as patch:
        use_store(uri, patch)
        parent = run_pipeline(load_config("main", [*pipeline_overrides(root), *ARMS]))
        yield {"uri": uri, "root": root, "parent": parent}


@pytest.fixture
def store(first_main, monkeypatch):
    yield from as_tracking_store(first_main, monkeypatch)


def stage_runs(parent_id: str) -> dict:
    parent = mlflow.get_run(parent_id)
    return {stage: mlflow.get_run(parent.data.tags[f"mygo.run.{stage}"]) for stage in PIPELINE_STAGES}


def test_main_chains_the_six_stages_as_child_runs_with_lineage_tags(store):
    parent = mlflow.get_run(store["parent"])
    assert parent.data.tags[STAGE_TAG] == "pipeline" and parent.info.status == "FINISHED"
    runs = stage_runs(store["parent"])
    for previous, stage in zip(PIPELINE_STAGES, PIPELINE_STAGES[1:], strict=False):
        assert runs[stage].data.tags[UPSTREAM_TAG] == runs[previous].info.run_id
    for stage, run in runs.items():
        assert parent.data.tags[f"mygo.reused.{stage}"] == "False"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.tags[CODE_DIGEST_TAG] == code_digest() and len(run.data.tags[GIT_COMMIT_TAG]) == 40
        assert "mygo.config_hash" in run.data.tags
    assert runs["select"].data.metrics["selection/num_selected"] == 12
    finetuned = runs["finetune"].data.metrics
    assert finetuned["data/records"] == 12  # the selection, exactly; short sequences may leave some label-less
    assert finetuned["data/train_samples"] + finetuned["data/no_label_tokens"] == 12
    assert 0 <= runs["evaluate"].data.metrics["eval/stdlib_mmlu/test/acc"] <= 1
    # The pool as a dataset input with its digest, where the stage reads it.
    pool_digests = {runs[stage].inputs.dataset_inputs[0].dataset.digest for stage in ("warmup", "score")}
    assert len(pool_digests) == 1


@pytest.mark.timeout(600)
def test_second_main_reuses_everything_and_force_reruns_from_a_stage(store, capsys):
    second = mlflow.get_run(run_pipeline(load_config("main", [*pipeline_overrides(store["root"]), *ARMS])))
    first = mlflow.get_run(store["parent"])
    for stage in PIPELINE_STAGES:
        assert second.data.tags[f"mygo.reused.{stage}"] == "True"
        assert second.data.tags[f"mygo.run.{stage}"] == first.data.tags[f"mygo.run.{stage}"]
    printed = capsys.readouterr().out
    assert (
        "reused" in printed
        and "selection/num_selected=12" in printed
        and "eval/stdlib_mmlu/val/acc=" in printed
        and "eval/stdlib_qa/val/bpb=" in printed
        and "eval/stdlib_qa/val/bits_per_byte=" in printed
    )
    assert "mlflow ui --backend-store-uri" in printed
    assert "The selection against its controls" in printed and "eval/stdlib_qa/val/bpb (lower is better)" in printed
    arms = [
        mlflow.artifacts.load_dict(f"runs:/{run}/comparison/arms.json")
        for run in (first.info.run_id, second.info.run_id)
    ]
    assert arms[0] == arms[1]  # every arm's runs reused

    forced_config = load_config("main", [*pipeline_overrides(store["root"]), *NO_ARMS, "pipeline.force=select"])
    forced = mlflow.get_run(run_pipeline(forced_config))
    for stage in PIPELINE_STAGES:
        reused = stage in ("convert", "warmup", "score")
        assert forced.data.tags[f"mygo.reused.{stage}"] == str(reused), stage
        assert (forced.data.tags[f"mygo.run.{stage}"] == first.data.tags[f"mygo.run.{stage}"]) == reused
    # A forced select over the same scores selects the same samples.
    parents = (forced.info.run_id, store["parent"])
    selections = {stage_runs(parent)["select"].data.tags[SELECTED_IDS_TAG] for parent in parents}
    assert len(selections) == 1
    with pytest.raises(ValueError, match="pipeline.force='selection' is not valid"):
        run_pipeline(load_config("main", ["pipeline.force=selection"]))


def test_main_fine_tunes_and_evaluates_control_arms_alike_and_logs_the_deltas(store, capsys):
    parent = mlflow.get_run(store["parent"])
    arms = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/comparison/arms.json")
    assert {arm: sorted(seeds) for arm, seeds in arms.items()} == {
        "selection": ["0", "1"],
        "random": ["0", "1"],
        "base": ["0"],
    }
    assert arms["selection"]["0"] == parent.data.tags["mygo.run.evaluate"]  # the pipeline's own is seed 0's
    evaluations = {(arm, seed): mlflow.get_run(run) for arm, seeds in arms.items() for seed, run in seeds.items()}
    finetunes, selects = {}, {}
    for (arm, seed), run in evaluations.items():
        assert run.data.tags["mygo.arm"] == arm and run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        finetunes[arm, seed] = mlflow.get_run(run.data.tags[UPSTREAM_TAG])
        selects[arm, seed] = mlflow.get_run(finetunes[arm, seed].data.tags[UPSTREAM_TAG])
    assert evaluations["base", "0"].data.tags["mygo.eval_base_only"] == "true"
    for arm in ("selection", "random"):
        for seed in ("0", "1"):
            assert finetunes[arm, seed].data.params["training.seed"] == seed
            assert (
                evaluations[arm, seed].data.params["evaluation.tasks"]
                == evaluations["selection", "0"].data.params["evaluation.tasks"]
            )
    # Random arms: the same score run and size, a new draw per seed; the selection arm's selection is the pipeline's.
    assert (
        selects["selection", "0"].info.run_id
        == selects["selection", "1"].info.run_id
        == parent.data.tags["mygo.run.select"]
    )
    for seed in ("0", "1"):
        random_select = selects["random", seed]
        assert (
            random_select.data.params["selection.strategy"] == "random"
            and random_select.data.params["selection.seed"] == seed
        )
        assert random_select.data.tags[UPSTREAM_TAG] == parent.data.tags["mygo.run.score"]
        assert random_select.data.metrics["selection/num_selected"] == 12
        # from the whole pool: the selection's quality band is not the control's
        assert float(random_select.data.params["selection.quality_floor"]) == 0.0
        assert float(random_select.data.params["selection.quality_ceiling"]) == 0.0
    assert float(selects["selection", "0"].data.params["selection.quality_floor"]) > 0  # the default band
    assert selects["random", "0"].data.tags[SELECTED_IDS_TAG] != selects["random", "1"].data.tags[SELECTED_IDS_TAG]

    # The delta is the selection minus random, paired by seed, with its standard error over the two seeds.
    key = "eval/stdlib_qa/val/bpb"
    differences = [
        evaluations["selection", s].data.metrics[key] - evaluations["random", s].data.metrics[key] for s in ("0", "1")
    ]
    metrics = parent.data.metrics
    assert metrics[f"{key}/delta_vs_random"] == pytest.approx(sum(differences) / 2)
    assert metrics[f"{key}/delta_vs_random_stderr"] == pytest.approx(abs(differences[0] - differences[1]) / 2)
    assert metrics[f"arms/base/{key}"] == evaluations["base", "0"].data.metrics[key]
    assert f"{key}/delta_vs_base" in metrics and "eval/stdlib_mmlu/test/acc/delta_vs_random" in metrics
    assert {"comparison/table.csv", "comparison/table.txt", "plots/comparison.png"} <= artifact_paths(
        parent.info.run_id
    )

    # `mygo compare` prints the same table, for a pipeline run or for evaluate runs.
    assert mygo_main(["compare", parent.info.run_id]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/comparison/table.txt").strip()
    runs = [evaluations["random", "0"].info.run_id, evaluations["base", "0"].info.run_id]
    assert mygo_main(["compare", *runs]) == 0
    printed = capsys.readouterr().out
    assert f"{key} (lower is better)" in printed and "random" in printed and "base" in printed
    assert mygo_main(["compare", parent.data.tags["mygo.run.score"]]) == 2
    assert "compare takes pipeline, trial or evaluate runs" in capsys.readouterr().err


def test_lineage_goes_from_any_run_back_to_the_conversion(store, capsys):
    runs = stage_runs(store["parent"])
    chain = lineage(runs["evaluate"].info.run_id)
    assert [run.data.tags[STAGE_TAG] for run in chain] == list(reversed(PIPELINE_STAGES))
    assert [run.info.run_id for run in lineage(store["parent"])] == [run.info.run_id for run in chain]

    assert mygo_main(["lineage", runs["select"].info.run_id]) == 0
    printed = capsys.readouterr().out
    positions = [printed.index(runs[stage].info.run_id) for stage in ("select", "score", "warmup", "convert")]
    assert positions == sorted(positions) and runs["finetune"].info.run_id not in printed
    assert "selection.percentage=0.1" in printed and "selection/num_selected=12" in printed
    assert "input   pool:cot,dolly,flan_v2,oasst1" in printed

    missing = "0" * 32
    assert mygo_main(["lineage", missing]) == 2
    assert f"run '{missing}' not found in tracking store" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_reproduce_a_select_run_exactly_and_a_warmup_run_within_tolerance(store, capsys):
    runs = stage_runs(store["parent"])
    for stage in ("select", "warmup"):
        original = runs[stage]
        new = mlflow.get_run(run_reproduce(reproduce_config(original.info.run_id, store["root"])))
        assert new.info.run_id != original.info.run_id and new.data.tags[REPRODUCES_TAG] == original.info.run_id
        assert new.data.tags[STAGE_TAG] == stage and new.data.tags[UPSTREAM_TAG] == original.data.tags[UPSTREAM_TAG]
        printed = capsys.readouterr().out
        assert "reproduced:" in printed and "XX" not in printed
    assert new.data.metrics["train/final_loss"] == pytest.approx(original.data.metrics["train/final_loss"], rel=1e-4)
    assert "router/weights.safetensors (max abs diff of 4 tensors)" in printed
    select = runs["select"]
    assert (
        mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.`{REPRODUCES_TAG}` = '{select.info.run_id}'",
            output_format="list",
        )[0].data.tags[SELECTED_IDS_TAG]
        == select.data.tags[SELECTED_IDS_TAG]
    )


@pytest.mark.timeout(600)
def test_reproduce_reports_differences_and_missing_upstream_runs(store, capsys):
    runs = stage_runs(store["parent"])
    select = run_select(
        load_config("select", [f"upstream.score_run={runs['score'].info.run_id}", *select_cfg_overrides(store)])
    )
    mlflow.MlflowClient().log_metric(select, "selection/quality_mean_selected", 123.0)  # the record now disagrees
    with pytest.raises(ReproductionMismatch, match="selection/quality_mean_selected"):
        run_reproduce(reproduce_config(select, store["root"]))
    assert mygo_main(["reproduce", select, f"reproduce.output_dir={store['root'] / 'reproduce'}"]) == 1
    assert "XX selection/quality_mean_selected" in capsys.readouterr().out

    # A select run whose score run has been deleted cannot be reproduced: the error names the score run.
    score = run_score(
        load_config(
            "score",
            [f"upstream.warmup_run={runs['warmup'].info.run_id}", f"score.output_dir={store['root'] / 'score'}"],
        )
    )
    orphan = run_select(load_config("select", [f"upstream.score_run={score}", *select_cfg_overrides(store)]))
    mlflow.delete_run(score)
    with pytest.raises(ValueError, match=f"upstream run {score} \\(upstream.score_run\\) is missing or deleted"):
        run_reproduce(reproduce_config(orphan, store["root"]))
    with pytest.raises(ValueError, match="not found in tracking store"):
        run_reproduce(reproduce_config("f" * 32, store["root"]))
    with pytest.raises(ValueError, match="is a pipeline run; reproduce one of the stages"):
        run_reproduce(reproduce_config(store["parent"], store["root"]))


def select_cfg_overrides(store) -> list[str]:
    return [f"output_dir={store['root'] / 'select'}", "clustering.kmeans.k=3", "selection.percentage=0.2"]


def _runs_with_status(status: str, stage: str) -> list:
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and attributes.status = '{status}'",
        output_format="list",
    )


@pytest.mark.timeout(600)
def test_ctrl_c_marks_runs_killed_and_the_next_main_reuses_what_finished(store):
    # A warmup setting no run has used yet: convert is reused, warmup starts anew and is interrupted. Long enough
    # that it is still training when interrupted however fast the experts kernel is (37 epochs once sufficed).
    overrides = pipeline_overrides(store["root"], warmup_extra=("training.epochs=5000",))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": store["uri"], "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mygo.cli", "main", *overrides]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a non-interactive shell ignores SIGINT, and children inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    # Interrupt inside the training loop: once the RUNNING warmup has logged its first training step.
    while time.monotonic() < deadline and process.poll() is None:
        running = _runs_with_status("RUNNING", "warmup")
        if running and "train/loss" in mlflow.get_run(running[0].info.run_id).data.metrics:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted; the runs in progress are marked KILLED" in stderr

    killed_warmup = _runs_with_status("KILLED", "warmup")
    killed_pipeline = _runs_with_status("KILLED", "pipeline")
    assert len(killed_warmup) == 1 and len(killed_pipeline) == 1
    assert killed_warmup[0].data.tags["mlflow.parentRunId"] == killed_pipeline[0].info.run_id
    assert not _runs_with_status("RUNNING", "warmup") and not _runs_with_status("RUNNING", "pipeline")

    overrides = [*pipeline_overrides(store["root"], warmup_extra=("training.epochs=3",)), *NO_ARMS]  # a new warmup
    again = mlflow.get_run(run_pipeline(load_config("main", overrides)))
    assert again.data.tags["mygo.reused.convert"] == "True" and again.data.tags["mygo.reused.warmup"] == "False"


def test_reproduce_says_when_a_run_came_from_other_code(store):
    select = stage_runs(store["parent"])["select"]
    assert code_notice(select) is None  # made by this checkout's code
    client = mlflow.MlflowClient()
    client.set_tag(select.info.run_id, CODE_DIGEST_TAG, "0123456789abcdef")
    client.set_tag(select.info.run_id, GIT_COMMIT_TAG, "a" * 40)
    client.set_tag(select.info.run_id, "mygo.git_dirty", "true")
    notice = code_notice(mlflow.get_run(select.info.run_id))
    assert f"made from commit {'a' * 40} with uncommitted changes" in notice
    assert f"git checkout {'a' * 40}" in notice
