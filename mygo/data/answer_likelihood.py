"""The local answer-likelihood lm-eval tasks' data and score (`configs/eval_tasks/`: stdlib_qa and the out-of-domain
reference_qa tasks), written once so that their figures compare.

lm-eval's `loglikelihood` output type gives one log-likelihood per answer and no token count, and its built-in
`perplexity` is per answer, not per token; so the answer's bytes normalise it (bits per byte, as for lm-eval's
`loglikelihood_rolling` tasks), which also keeps targets with different tokenizers comparable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets

SPLITS = ("dev", "validation", "test")


def read_split(path: Path, rebuild: str) -> list[dict]:
    """One split's committed JSONL records; a missing file names the command that builds it."""
    if not path.is_file():
        raise FileNotFoundError(f"task data file {path} is missing; build it with `{rebuild}`")
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load_splits(directory: Path, rebuild: str) -> datasets.DatasetDict:
    """`dev` (few-shot examples), `validation` and `test` from `<directory>/<split>.jsonl`."""
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(read_split(directory / f"{split}.jsonl", rebuild)) for split in SPLITS}
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
