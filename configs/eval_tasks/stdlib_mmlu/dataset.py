"""Loader for the stdlib_mmlu lm-eval task: the committed dev/test JSONL files beside this module, by subject.

lm-eval calls it as `custom_dataset(**metadata, **dataset_kwargs)`, so besides `subject` it receives the
task's metadata (`version`, and whatever a caller adds); those are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

DATA_DIR = Path(__file__).resolve().parent
SPLITS = ("dev", "test")


def _read(path: Path, subject: str) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"stdlib_mmlu data file {path} is missing; build it with "
            f"`python -m mygo.data.stdlib_mmlu --output {path.parent}`"
        )
    with path.open(encoding="utf-8") as file:
        return [record for line in file if line.strip() and (record := json.loads(line))["subject"] == subject]


def load(subject: str, **_: object) -> datasets.DatasetDict:
    """`dev` and `test` splits holding only `subject`'s records, in file order (few-shot takes the first)."""
    splits = {split: _read(DATA_DIR / f"{split}.jsonl", subject) for split in SPLITS}
    if not all(splits.values()):
        raise ValueError(f"stdlib_mmlu has no records for subject {subject!r} in {DATA_DIR}")
    return datasets.DatasetDict({split: datasets.Dataset.from_list(records) for split, records in splits.items()})
