"""Decontamination: pool records holding an evaluation item are removed before warmup and scoring."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest

from mygo.config import config_dir, load_config
from mygo.data.decontamination import (
    REMOVED_ARTIFACT,
    DecontaminationSettings,
    EvalItem,
    cached_eval_items,
    eval_items,
    find_contamination,
)
from mygo.data.demo_pool.build import ensure_demo_pool
from mygo.stages.score import run_score
from mygo.stages.warmup import run_warmup
from mygo.tracking.notes import NOTE_TAG
from tests.helpers import artifact_paths, quick_warmup_overrides

TASK_DIR = str(config_dir() / "eval_tasks")
ITEM = (
    "Which module of the standard library parses command line options into a namespace? The argparse module "
    "does: it builds a parser from the arguments you declare and returns their values as attributes."
)


def test_a_copy_and_a_paraphrase_that_keeps_the_answer_are_caught_and_a_near_miss_is_not():
    items = [EvalItem("qa", "test", ITEM), EvalItem("qa", "validation", "Too short to tell apart.")]
    pool = [
        "Some unrelated text about cooking rice in a pot with water and salt until it is done.",
        "Question: " + ITEM + " Thanks!",  # a planted copy inside a longer record
        # A paraphrase of the question that keeps the answer's wording.
        "Which standard library module parses command line options into a namespace? The argparse module does: it "
        "builds a parser from the arguments you declare and returns their values as attributes.",
        # A near miss: the same topic and a few of the same phrases, in other words.
        "Which module parses command line options? Use argparse: declare arguments, then read them as attributes.",
        "The argparse module does: it builds a parser",  # one shared stretch, far under the threshold
    ]
    matches, too_short = find_contamination(pool, items, DecontaminationSettings(tasks=("qa",)))
    assert [m.row for m in matches] == [1, 2] and too_short == 1
    assert matches[0].share == 1.0 and 0.7 <= matches[1].share < 1.0
    assert {(m.task, m.split) for m in matches} == {("qa", "test")}
    assert all(set(m.ngram.split()) <= set(ITEM.lower().replace(":", " ").replace("?", " ").split()) for m in matches)
    # A template many items share is no item's own: a record in the template about another object is kept.
    template = [
        EvalItem("qa", "test", f"`pkg.name{i}` is part of which Python module? Answer with the module name only. pkg")
        for i in range(12)
    ]
    other = "`pkg.other` is part of which Python module? Answer with the module name only. pkg"
    copy = template[3].text
    assert [m.row for m in find_contamination([other, copy], template, DecontaminationSettings())[0]] == [1]
    # A stricter threshold keeps the paraphrase; every record past the batch size is checked as well.
    strict = DecontaminationSettings(tasks=("qa",), threshold=1.0)
    assert [m.row for m in find_contamination(pool * 3, items, strict)[0]] == [1, 6, 11]


@pytest.mark.slow
def test_the_eval_items_are_every_validation_test_and_fewshot_item_of_the_named_tasks(tmp_path):
    items, skipped = eval_items(["stdlib_qa", "perldiag_qa"], TASK_DIR)
    splits = {(item.task, item.split) for item in items}
    assert {("stdlib_qa", "validation"), ("stdlib_qa", "test"), ("stdlib_qa", "fewshot")} <= splits
    assert {("perldiag_qa", "test"), ("perldiag_qa", "validation")} <= splits and not skipped
    assert all(len(item.text.split()) > 3 for item in items)
    with pytest.raises(ValueError, match="dataset.decontamination.tasks: unknown lm-eval task 'stdlib_qaa'"):
        eval_items(["stdlib_qaa"], TASK_DIR)
    # Kept on disk: the second call reads the file instead of loading the tasks.
    first, _ = cached_eval_items(["stdlib_qa", "perldiag_qa"], TASK_DIR, tmp_path)
    assert first == items and len(list(tmp_path.glob("items-*.jsonl"))) == 1
    assert cached_eval_items(["stdlib_qa", "perldiag_qa"], TASK_DIR, tmp_path) == (items, {})
    with pytest.raises(ValueError, match="min_ngram=9 is over ngram=8"):
        DecontaminationSettings.from_config({"decontamination": {"enabled": True, "min_ngram": 9}})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_warmup_and_score_never_use_a_record_that_holds_a_test_item(tracking_store, tmp_path):
    demo = ensure_demo_pool(tmp_path / "demo", num_samples=120, noise_fraction=0.15, seed=0, max_answer_chars=600)
    pool_dir = tmp_path / "pool"
    shutil.copytree(demo, pool_dir)
    items, _ = eval_items(["stdlib_qa"], TASK_DIR)
    test_item = next(item for item in items if item.split == "test")
    question, answer = test_item.text.rsplit("\n", 1)
    planted = {"id": "planted_test_item", "messages": [{"role": "user", "content": question}]}
    planted["messages"].append({"role": "assistant", "content": answer.strip()})
    with (pool_dir / "dolly" / "dolly_data.jsonl").open("a") as handle:
        handle.write(json.dumps(planted) + "\n")

    on = ["dataset.decontamination.enabled=true", "dataset.decontamination.tasks=[stdlib_qa,perldiag_qa]"]
    warmup = mlflow.get_run(
        run_warmup(load_config("warmup", [*quick_warmup_overrides(tmp_path), f"dataset.data_dir={pool_dir}", *on]))
    )
    assert warmup.data.metrics["decontam/removed"] >= 1
    score_overrides = [f"upstream.warmup_run={warmup.info.run_id}", f"score.output_dir={tmp_path / 'score'}"]
    score = mlflow.get_run(run_score(load_config("score", score_overrides)))
    metrics = score.data.metrics
    removed = metrics["decontam/removed"]
    assert metrics["decontam/removed/task/stdlib_qa"] >= 1 and metrics["decontam/removed/source/dolly"] >= 1
    assert metrics["score/samples"] == metrics["dedup/kept"] - removed
    assert REMOVED_ARTIFACT in artifact_paths(score.info.run_id)
    lines = [
        json.loads(line)
        for line in mlflow.artifacts.load_text(f"runs:/{score.info.run_id}/{REMOVED_ARTIFACT}").splitlines()
    ]
    planted_line = next(line for line in lines if line["id"] == "planted_test_item")
    assert planted_line["task"] == "stdlib_qa" and planted_line["split"] == "test" and planted_line["share"] == 1.0
    assert planted_line["source"] == "dolly" and len(planted_line["ngram"].split()) == 8
    assert "Decontamination" in score.data.tags[NOTE_TAG] and "planted_test_item" not in score.data.tags[NOTE_TAG]


@pytest.mark.slow  # a subprocess that loads lm-eval's tasks
def test_the_decontamination_benchmark_finds_every_planted_copy_and_no_clean_record():
    import subprocess
    import sys

    from tests.helpers import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "decontamination.py"), "--records", "500", "--planted", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("records=530 ") and last.endswith("recall=1.0000 false_positives=0"), result.stdout
