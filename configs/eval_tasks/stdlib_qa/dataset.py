"""lm-eval's hooks for stdlib_qa: the committed splits beside this file (built by `mygo.data.stdlib_qa`), answers
scored by their likelihood in bits per byte (mygo.data.answer_likelihood)."""

from __future__ import annotations

from pathlib import Path

import datasets

from mygo.data.answer_likelihood import load_splits, process_results  # noqa: F401 - process_results: the YAML's

DATA_DIR = Path(__file__).resolve().parent


def load(**_: object) -> datasets.DatasetDict:
    return load_splits(DATA_DIR, f"python -m mygo.data.stdlib_qa --output {DATA_DIR}")
