"""Held-out instruction/answer pairs from the stdlib docs, for an evaluation scored by answer likelihood.

Multiple choice between four documentation sentences (`stdlib_mmlu`) is chance for the tiny target, so it
cannot tell one selection from another. The likelihood of a reference answer moves with every bit the model
learns: this task is clean single-turn instructions in the demo pool's own styles (cot's reasoning, dolly's
questions and summaries, FLAN's short answers), written by the pool's generator about held-out documents,
and lm-eval scores the answer's log-likelihood given the instruction.

The documents are held out from the demo pool: none is named by, or quoted in, any record of the default
pool (`configs/dataset/demo.yaml`), so a fine-tuned model can only do better by generalising what the
pool taught (the tasks, their answer styles, the docs' vocabulary), and worse by learning its noise. Larger pools draw
on more documents; the check is against the default one. Splits: `dev` (few-shot examples), `validation`
(what sweeps and `main` choose on) and `test` (scored once, for the final figure). Rebuild with

    python -m mygo.data.stdlib_qa --output configs/eval_tasks/stdlib_qa
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mygo.data.demo_pool.build import generate_demo_records
from mygo.data.demo_pool.templates import Corpus, lead
from mygo.data.stdlib_corpus import Document, stdlib_documents
from mygo.data.stdlib_mmlu import write_splits
from mygo.data.stdlib_text import SENTENCE_BREAK

# The default demo pool (configs/dataset/demo.yaml): the records the held-out documents must stay out of.
DEFAULT_POOL = {"num_samples": 4000, "noise_fraction": 0.15, "seed": 0, "max_answer_chars": 600}
MAX_ANSWER_CHARS = 400
QUOTE_PREFIX_CHARS = 40


def pool_text(documents: Sequence[Document], pool: dict[str, Any] = DEFAULT_POOL) -> str:
    """Every message of every record of the pool, clean and noisy alike, as one text."""
    records = generate_demo_records(documents, **pool)
    return "\n".join(m["content"] for r in records for m in r.record["messages"])


def held_out_documents(documents: Sequence[Document], pool: dict[str, Any] = DEFAULT_POOL) -> list[Document]:
    """The documents that no record of the pool names or quotes (whole sentences, or cot's opening words)."""
    text = pool_text(documents, pool)
    kept = set()
    for doc in Corpus(documents).docs:
        answer = lead(doc, MAX_ANSWER_CHARS)
        sentences = SENTENCE_BREAK.split(answer)
        quoted = any(s in text or s[:QUOTE_PREFIX_CHARS] in text for s in sentences)
        if doc.title not in text and not quoted and len(answer) >= 40:
            kept.add(doc.title)
    return [d for d in documents if d.title in kept]


def build_pairs(
    documents: Sequence[Document],
    pool: dict[str, Any] = DEFAULT_POOL,
    dev: int = 5,
    validation: int = 250,
    size: int = 500,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """{"dev", "validation", "test"}: single-turn instructions in the pool's clean styles about held-out documents.

    The demo pool's own generator writes them, noise-free, from the held-out documents alone: so they are what
    a clean record of the pool would be, for documents the pool never shows. Kept: one user turn and its answer
    (lm-eval's prompt is one user turn; system-prompted and multi-turn records are left out)."""
    held_out = held_out_documents(documents, pool)
    generated = generate_demo_records(held_out, 3 * size, 0.0, seed + 1, MAX_ANSWER_CHARS)
    records, seen = [], set()
    for item in generated:
        messages = item.record["messages"]
        if [m["role"] for m in messages] != ["user", "assistant"] or messages[0]["content"] in seen:
            continue
        seen.add(messages[0]["content"])
        records.append(
            {
                "id": f"{item.record['dataset']}/{len(records)}",
                "kind": item.record["dataset"],
                "question": messages[0]["content"],
                "answer": messages[1]["content"],
            }
        )
    random.Random(seed).shuffle(records)
    records = records[:size]
    return {"dev": records[:dev], "validation": records[dev : dev + validation], "test": records[dev + validation :]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="directory for the split JSONL files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = build_pairs(stdlib_documents(), seed=args.seed)
    for split, path in write_splits(splits, args.output).items():
        print(f"{path}: {len(splits[split])} records {dict(Counter(r['kind'] for r in splits[split]))}")


if __name__ == "__main__":
    main()
