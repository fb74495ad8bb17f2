"""The offline stdlib MMLU task: the builder on the real stdlib docs, the committed files, and a real lm-eval run."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mygo.data.stdlib_corpus import Document, stdlib_documents
from mygo.data.stdlib_mmlu import SOURCE_OF_SUBJECT, SUBJECTS, build_questions, first_sentence, main
from tests.helpers import tiny_llama

REPO = Path(__file__).resolve().parents[1]
TASKS_DIR = REPO / "configs" / "eval_tasks"
TASK_DIR = TASKS_DIR / "stdlib_mmlu"
SPLITS = ("dev", "test")
SUBTASKS = [f"stdlib_mmlu_{subject}" for subject in SUBJECTS]
# The committed files were built on this Python; other versions ship different docstrings.
BUILT_ON = (3, 11)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return stdlib_documents()


@pytest.fixture(scope="module")
def splits(documents: list[Document]) -> dict[str, list[dict[str, Any]]]:
    return build_questions(documents)


def _by_id(documents: list[Document]) -> dict[str, Document]:
    source_subject = {source: subject for subject, source in SOURCE_OF_SUBJECT.items()}
    return {f"{source_subject[d.source]}/{d.title}": d for d in documents}


def _load_dataset_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"stdlib_mmlu_dataset_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------ builder
def test_records_are_mmlu_format_with_four_distinct_quotable_choices(splits: dict[str, list[dict[str, Any]]]) -> None:
    for split in SPLITS:
        for record in splits[split]:
            assert set(record) == {"id", "subject", "question", "choices", "answer"}
            assert record["subject"] in SUBJECTS
            assert record["id"].startswith(f"{record['subject']}/")
            assert record["question"].endswith("?")
            assert len(record["choices"]) == 4 and len(set(record["choices"])) == 4
            assert all(isinstance(c, str) and 25 <= len(c) <= 220 for c in record["choices"])
            assert isinstance(record["answer"], int) and 0 <= record["answer"] < 4
    counts = {split: Counter(r["subject"] for r in splits[split]) for split in SPLITS}
    assert counts["dev"] == dict.fromkeys(SUBJECTS, 5)
    assert all(counts["test"][subject] == 100 for subject in ("functions", "classes", "modules"))
    assert counts["test"]["topics"] >= 15  # only ~80 pydoc topics exist, and many open with a grammar or list


def test_answer_is_the_asked_docs_first_sentence_and_distractors_do_not_name_it(
    documents: list[Document], splits: dict[str, list[dict[str, Any]]]
) -> None:
    documents_by_id = _by_id(documents)
    sentences = {first_sentence(d) for d in documents}
    for record in splits["dev"] + splits["test"]:
        document = documents_by_id[record["id"]]
        right = record["choices"][record["answer"]]
        assert right == first_sentence(document)
        assert right in " ".join(document.text.split())
        short_name = document.title.rpartition(".")[2].lower()
        if record["subject"] != "topics":
            assert f"`{document.title}`" in record["question"]
        for index, choice in enumerate(record["choices"]):
            assert choice in sentences  # every choice is some document's real first sentence
            if index != record["answer"]:
                assert re.search(rf"(?<![\w.]){re.escape(short_name)}(?!\w)", choice.lower()) is None, record


def test_answer_positions_are_balanced(splits: dict[str, list[dict[str, Any]]]) -> None:
    for split in SPLITS:
        for subject in SUBJECTS:
            positions = Counter(r["answer"] for r in splits[split] if r["subject"] == subject)
            assert max(positions.values()) - min(positions.get(i, 0) for i in range(4)) <= 1, (split, subject)
        overall = Counter(r["answer"] for r in splits[split])
        assert max(overall.values()) - min(overall.get(i, 0) for i in range(4)) <= 1, split


def test_dev_and_test_never_ask_about_the_same_document(splits: dict[str, list[dict[str, Any]]]) -> None:
    dev_ids = [r["id"] for r in splits["dev"]]
    test_ids = [r["id"] for r in splits["test"]]
    assert len(set(dev_ids)) == len(dev_ids) and len(set(test_ids)) == len(test_ids)
    assert not set(dev_ids) & set(test_ids)


def test_builder_is_deterministic_and_seeded(
    documents: list[Document], splits: dict[str, list[dict[str, Any]]]
) -> None:
    assert build_questions(documents) == splits
    assert build_questions(documents, seed=1)["dev"] != splits["dev"]


# ---------------------------------------------------------------------------------------- committed files
def test_committed_files_are_valid_and_loadable_by_subject() -> None:
    for split in SPLITS:
        lines = (TASK_DIR / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        assert lines == [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records]
        assert all(len(set(r["choices"])) == 4 and 0 <= r["answer"] < 4 for r in records)
    # lm-eval passes the task's metadata along with dataset_kwargs; the loader ignores what it does not use.
    loader = _load_dataset_module(TASK_DIR / "dataset.py")
    dataset = loader.load(subject="topics", version=1.0)
    assert set(dataset) == set(SPLITS)
    assert set(dataset["test"]["subject"]) == {"topics"}
    assert dataset["dev"][0] == next(r for r in _read_jsonl(TASK_DIR / "dev.jsonl") if r["subject"] == "topics")


def test_loader_names_a_missing_file(tmp_path: Path) -> None:
    shutil.copy(TASK_DIR / "dataset.py", tmp_path / "dataset.py")
    loader = _load_dataset_module(tmp_path / "dataset.py")
    with pytest.raises(FileNotFoundError, match=r"dev\.jsonl"):
        loader.load(subject="functions")


@pytest.mark.skipif(
    sys.version_info[:2] != BUILT_ON, reason=f"the committed files hold Python {BUILT_ON}'s docs, which differ"
)
def test_committed_files_equal_what_the_builder_makes(tmp_path: Path) -> None:
    main(["--output", str(tmp_path)])
    for split in SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (TASK_DIR / f"{split}.jsonl").read_bytes(), split


@pytest.mark.slow
# ------------------------------------------------------------------------------------------------ lm-eval
def test_lm_eval_runs_the_group_from_another_directory(
    documents: list[Document], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from mygo.builtin.tokenizer import train_bpe_tokenizer

    # Relative paths in the task (its `!function` loader, the JSONL files) must not depend on the working directory.
    monkeypatch.chdir(tmp_path)
    tokenizer = train_bpe_tokenizer((d.text for d in documents[:300]), vocab_size=512)
    model = tiny_llama(len(tokenizer))

    task_manager = TaskManager(include_path=str(TASKS_DIR))
    assert {"stdlib_mmlu", *SUBTASKS} <= set(task_manager.all_tasks)
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8),
        tasks=["stdlib_mmlu"],
        num_fewshot=1,
        limit=3,
        task_manager=task_manager,
        log_samples=False,
    )
    assert results is not None
    assert results["group_subtasks"] == {"stdlib_mmlu": SUBTASKS}
    assert set(results["results"]) == {"stdlib_mmlu", *SUBTASKS}
    for name in ["stdlib_mmlu", *SUBTASKS]:
        for metric in ("acc,none", "acc_norm,none"):
            assert 0.0 <= results["results"][name][metric] <= 1.0, (name, metric)
    assert results["results"]["stdlib_mmlu"]["sample_len"] == 3 * len(SUBTASKS)
