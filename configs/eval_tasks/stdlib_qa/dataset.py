"""Loader and scorer for the stdlib_qa lm-eval task: committed JSONL splits, answers scored by likelihood.

lm-eval's `loglikelihood` output type gives one log-likelihood per answer and no token count, and its
built-in `perplexity` is per answer, not per token; so the answer's bytes normalise it (bits per byte, as
for lm-eval's `loglikelihood_rolling` tasks), which also keeps targets with different tokenizers comparable.
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
            f"stdlib_qa data file {path} is missing; "
            f"build it with `python -m mygo.data.stdlib_qa --output {path.parent}`"
        )
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load(**_: object) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(_read(DATA_DIR / f"{split}.jsonl")) for split in SPLITS}
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
