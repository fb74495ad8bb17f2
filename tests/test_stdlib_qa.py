"""The held-out answer-likelihood task (stdlib_qa), the val/test splits of the local tasks, the sweeps' objectives."""

import json
import math
from pathlib import Path

import pytest

from mygo.config import config_dir
from mygo.data.demo_pool.build import generate_demo_records
from mygo.data.stdlib_corpus import stdlib_documents
from mygo.data.stdlib_mmlu import write_splits
from mygo.data.stdlib_qa import DEFAULT_POOL, build_pairs, held_out_documents, pool_text
from mygo.stages.evaluate import SplitTaskManager, chat_template_choice, eval_splits, task_dir, task_manager
from mygo.workflows.sweep import load_space

TASK_DIR = config_dir() / "eval_tasks" / "stdlib_qa"
SPLIT_FILES = ("dev", "validation", "test")


def _records(split: str) -> list[dict]:
    return [json.loads(line) for line in (TASK_DIR / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def documents():
    return stdlib_documents()


def test_the_committed_files_are_what_the_builder_writes(documents, tmp_path):
    write_splits(build_pairs(documents), tmp_path)
    for split in SPLIT_FILES:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (TASK_DIR / f"{split}.jsonl").read_bytes(), split


def test_no_pair_is_about_a_document_the_default_pool_names_or_quotes(documents):
    text = pool_text(documents)
    held_out = held_out_documents(documents)
    assert len(held_out) >= 200
    for doc in held_out:
        assert doc.title not in text, doc.title
    records = [record for split in SPLIT_FILES for record in _records(split)]
    assert len(records) == 500 and len({r["question"] for r in records}) == len(records)  # splits never share one
    assert {r["kind"] for r in records} == {"cot", "dolly", "flan_v2"}  # the pool's single-turn styles
    pool_answers = {
        m["content"] for r in generate_demo_records(documents, **DEFAULT_POOL) for m in r.record["messages"]
    }
    long_answers = [r["answer"] for r in records if len(r["answer"]) >= 40]
    assert len(long_answers) > 300 and not [a for a in long_answers if a in pool_answers]


@pytest.mark.slow
def test_lm_eval_scores_validation_and_test_apart():
    manager = task_manager(task_dir_default())
    counts = {}
    for split in ("val", "test"):
        task = SplitTaskManager(manager, split).load(["stdlib_qa"])["tasks"]
        (only,) = task.values()
        counts[split] = [doc["id"] for doc in only.eval_docs]
    assert counts["val"] == [r["id"] for r in _records("validation")]
    assert counts["test"] == [r["id"] for r in _records("test")]
    # stdlib_mmlu's validation figure is its dev split (its test split is what it always scored).
    mmlu = SplitTaskManager(manager, "val").load(["stdlib_mmlu"])["tasks"]
    assert sum(len(task.eval_docs) for task in mmlu.values()) == 20


def task_dir_default() -> Path:
    from omegaconf import OmegaConf

    return task_dir(OmegaConf.create({"evaluation": {"task_dir": None}}))


def test_the_scorer_gives_bits_per_byte_of_the_reference_answer():
    import importlib.util

    spec = importlib.util.spec_from_file_location("stdlib_qa_dataset", TASK_DIR / "dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scores = module.process_results({"answer": "é" * 5}, [(-10 * math.log(2), False)])  # 10 bits over 10 bytes
    assert scores["bpb"] == pytest.approx(1.0) and scores["nll"] == pytest.approx(10 * math.log(2))
    assert scores["bits_per_byte"] == (-10 * math.log(2), 10)


def test_splits_and_the_chat_template_setting_are_checked_and_explained():
    assert eval_splits("val,test") == ["val", "test"] and eval_splits(["test"]) == ["test"]
    with pytest.raises(ValueError, match="evaluation.splits"):
        eval_splits(["dev"])
    finetune = object()  # any finetune run: every one trained on chat-formatted data
    assert chat_template_choice("auto", finetune)[0] is True
    assert chat_template_choice("auto", None)[0] is False
    chosen, reason = chat_template_choice(False, finetune)
    assert chosen is False and "although" in reason


def test_no_sweep_space_has_a_test_split_objective():
    spaces = sorted((config_dir().parent / "sweeps").glob("*.yaml"))
    assert spaces
    for path in spaces:
        metric = load_space(path).objective["metric"]
        assert "/test/" not in metric and not metric.endswith("/test"), path.name
        if metric.startswith("eval/"):
            assert "/val/" in metric, f"{path.name}: an eval objective must be a validation figure ({metric})"
