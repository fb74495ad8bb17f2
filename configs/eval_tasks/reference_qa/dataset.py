"""Loader and scorer for the out-of-domain lm-eval tasks (debian_qa, man_qa, perldiag_qa): answers scored by likelihood.

Each task's committed JSONL splits lie in `<task>/` beside this file (built by `mygo.data.reference_qa`); the
scoring is stdlib_qa's, so the tasks' figures compare with it: lm-eval's `loglikelihood` output gives one
log-likelihood per answer and no token count, so the answer's bytes normalise it (bits per byte), which also
keeps targets with different tokenizers comparable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets

DATA_DIR = Path(__file__).resolve().parent
SPLITS = ("dev", "validation", "test")


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(
            f"reference_qa data file {path} is missing; "
            f"build it with `python -m mygo.data.reference_qa --output {path.parent.parent}`"
        )
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load(task: str, **_: object) -> datasets.DatasetDict:
    """The splits of one task; lm-eval passes the YAML's `dataset_kwargs` (and its `metadata`) as keywords."""
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(_read(DATA_DIR / task / f"{split}.jsonl")) for split in SPLITS}
    )


def process_results(doc: dict, results: list[tuple[float, bool]]) -> dict[str, object]:
    """Per answer: bits per byte and NLL (nats, averaged with standard errors); pooled bits per byte."""
    loglikelihood, _ = results[0]
    size = len(doc["answer"].encode("utf-8"))
    return {
        "bpb": -loglikelihood / size / math.log(2),
        "nll": -loglikelihood,
        "bits_per_byte": (loglikelihood, size),
    }
