"""Held-out instruction/answer pairs from the stdlib docs, for an evaluation scored by answer likelihood.

Multiple choice between four documentation sentences (`stdlib_mmlu`) is chance for the tiny target, so it
cannot tell one selection from another. The likelihood of a reference answer moves with every bit the model
learns: this task asks about documents in the demo pool's own style (the dolly open-QA questions, answered
with the document's opening paragraphs) and lm-eval scores the answer's log-likelihood given the question.

The documents are held out from the demo pool: none is named by, or quoted in, any record of the default
pool (`configs/dataset/demo.yaml`), so a fine-tuned model can only do better by generalising what the
pool taught (the answer style, the docs' vocabulary), and worse by learning its noise. Larger pools draw
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
from mygo.data.demo_pool.templates import OPEN_QA, Corpus, lead
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


def build_pairs(
    documents: Sequence[Document],
    pool: dict[str, Any] = DEFAULT_POOL,
    dev: int = 5,
    validation: int = 150,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """{"dev", "validation", "test"}: question/answer records about documents no pool record names or quotes."""
    text = pool_text(documents, pool)
    held_out = []
    for doc in Corpus(documents).docs:
        answer = lead(doc, MAX_ANSWER_CHARS)
        sentences = SENTENCE_BREAK.split(answer)
        # Quoted whole, or cut short as cot's quotes are (a sentence's opening words).
        quoted = any(s in text or s[:QUOTE_PREFIX_CHARS] in text for s in sentences)
        if doc.title in text or quoted or len(answer) < 40:
            continue
        held_out.append((doc, answer))
    rng = random.Random(seed)
    rng.shuffle(held_out)
    records = [
        {
            "id": f"{doc.kind}/{doc.title}",
            "kind": doc.kind,
            "question": rng.choice(OPEN_QA[doc.kind]).format(name=doc.name),
            "answer": answer,
        }
        for doc, answer in held_out
    ]
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
