"""lm-eval's hooks for the out-of-domain tasks (debian_qa, man_qa, perldiag_qa): each task's committed splits in
`<task>/` beside this file (built by `mygo.data.reference_qa`), scored as stdlib_qa is (mygo.data.answer_likelihood)."""

from __future__ import annotations

from pathlib import Path

import datasets

from mygo.data.answer_likelihood import load_splits, process_results  # noqa: F401 - process_results: the YAML's

DATA_DIR = Path(__file__).resolve().parent


def load(task: str, **_: object) -> datasets.DatasetDict:
    """The splits of one task; lm-eval passes the YAML's `dataset_kwargs` (and its `metadata`) as keywords."""
    return load_splits(DATA_DIR / task, f"python -m mygo.data.reference_qa --output {DATA_DIR}")
