"""An offline MMLU-style multiple-choice task built from the Python standard library's own documentation.

The embedded default has to be evaluated with lm-eval on machines with no dataset hub, so its benchmark must be
made from text already on disk: the same stdlib docs the demo instruction pool is built from (`stdlib_corpus`).
Each question asks what a function, class, module or pydoc topic is; the four choices are the first sentences of
its own documentation and of three other documents of the same subject. The records use MMLU's format
(`question`, `choices`, `answer`, plus `subject` and `id`), so lm-eval scores them like MMLU.

The docs differ between Python versions, so the generated files are committed under
`configs/eval_tasks/stdlib_mmlu/` and scores stay comparable wherever the evaluation runs; this builder
documents how they were made and rebuilds them:

    python -m mygo.data.stdlib_mmlu --output configs/eval_tasks/stdlib_mmlu
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mygo.atomic import atomic_path
from mygo.data.stdlib_corpus import Document, stdlib_documents
from mygo.data.stdlib_text import SENTENCE_BREAK, prose_paragraphs, topic_heading

SUBJECTS = ("functions", "classes", "modules", "topics")
SOURCE_OF_SUBJECT = {
    "functions": "function_doc",  # module-level functions and methods alike
    "classes": "class_doc",
    "modules": "module_doc",
    "topics": "pydoc_topic",
}
NUM_CHOICES = 4
MIN_CHOICE_CHARS = 25
MAX_CHOICE_CHARS = 220
# Word overlap above which a distractor could pass for a second right answer (ntpath.join vs posixpath.join).
MAX_DISTRACTOR_OVERLAP = 0.5
# Signatures ("get_code(fullname) -> code object."), doctests, assignments, e-mail and web addresses.
_CODE_LIKE = re.compile(r"^[\w.]+\(|->|>>>|=|\{|\}|@|https?:|::")
_ABBREVIATION_END = re.compile(r"\b(?:e\.?g|i\.?e|cf|vs|approx)\.$", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9_]+")
_QUOTED = re.compile(r"[\"'“`]+([^\"'”`]+)[\"'”`]+")


# ------------------------------------------------------------------------------------------------ questions
def first_sentence(document: Document) -> str | None:
    """The opening sentence of the document's first prose paragraph, whitespace collapsed; None if it has none."""
    paragraphs = prose_paragraphs(document.text)
    return SENTENCE_BREAK.split(paragraphs[0])[0] if paragraphs else None


def _is_quotable(sentence: str) -> bool:
    """Whole prose a reader can compare: quotable length, no code, not a lead-in to a list or a grammar."""
    return (
        MIN_CHOICE_CHARS <= len(sentence) <= MAX_CHOICE_CHARS
        and len(sentence.split()) >= 4
        # A capital, or a quoted or emphasised word starting it ('"pass" is a null operation').
        and (sentence[0].isupper() or (sentence[0] in '"*`' and sentence[1:2].isalpha()))
        and not sentence.endswith((":", ",", ";"))
        # Cut at an abbreviation's full stop: "Convert the name of an extension (eg."
        and sentence.count("(") == sentence.count(")")
        and _ABBREVIATION_END.search(sentence) is None
        and _CODE_LIKE.search(sentence) is None
    )


def _is_capitalised(word: str) -> bool:
    return word.isalpha() and word.istitle() and word != "Python"


def _question(subject: str, document: Document) -> str:
    if subject == "functions":
        return f"What does `{document.title}` do?"
    if subject == "classes":
        return f"What is `{document.title}`?"
    if subject == "modules":
        return f"What is the `{document.title}` module for?"
    # Headings are capitalised ("Special Attributes"); mid-sentence they read as words ("special attributes").
    # Acronyms, quoted names ('"dict"') and "Python" keep their case.
    words = topic_heading(document).split(" ")
    name = " ".join(w.lower() if _is_capitalised(w.strip("(),")) else w for w in words)
    return f"What does the Python documentation say about {name}?"


def _names(subject: str, document: Document) -> tuple[str, ...]:
    """How a sentence could name the asked-about thing: its dotted name and last part, or a topic's words."""
    if subject != "topics":
        return tuple(dict.fromkeys((document.title, document.title.rpartition(".")[2])))
    heading = topic_heading(document)
    return tuple(dict.fromkeys((document.title, heading, *_QUOTED.findall(heading))))


def _mentions(sentence: str, names: Sequence[str]) -> bool:
    lowered = sentence.lower()
    return any(re.search(rf"(?<![\w.]){re.escape(name.lower())}(?!\w)", lowered) for name in names)


def _overlap(a: str, b: str) -> float:
    words_a, words_b = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(words_a & words_b) / max(1, len(words_a | words_b))


class _Candidate:
    """A document that can be asked about: its question, right answer and the names a distractor must avoid."""

    def __init__(self, subject: str, document: Document, sentence: str) -> None:
        self.document = document
        self.sentence = sentence
        self.question = _question(subject, document)
        self.names = _names(subject, document)
        self.short_name = document.title.rpartition(".")[2]

    def accepts(self, other: _Candidate) -> bool:
        """Whether `other`'s sentence is a fair wrong answer to this question."""
        return (
            other.short_name != self.short_name  # another module's `join` may be documented just the same
            and not _mentions(other.sentence, self.names)
            and _overlap(other.sentence, self.sentence) <= MAX_DISTRACTOR_OVERLAP
        )


def _candidates(subject: str, documents: Sequence[Document]) -> list[_Candidate]:
    """The subject's documents with a usable first sentence, shared by no other document and not naming itself."""
    found = []
    for document in documents:
        if document.source == SOURCE_OF_SUBJECT[subject] and (sentence := first_sentence(document)):
            candidate = _Candidate(subject, document, sentence)
            # A sentence that names its own subject would give the answer away, since distractors never do.
            if _is_quotable(sentence) and not _mentions(sentence, candidate.names):
                found.append(candidate)
    # Two documents opening alike (or one title defined twice) would make two choices right, so neither is asked.
    sentences = Counter(c.sentence.lower() for c in found)
    titles = Counter(c.document.title for c in found)
    return [c for c in found if sentences[c.sentence.lower()] == 1 and titles[c.document.title] == 1]


def _distractors(asked: _Candidate, pool: Sequence[_Candidate], rng: random.Random) -> list[_Candidate] | None:
    picked: list[_Candidate] = []
    for other in rng.sample(pool, len(pool)):
        if other is not asked and asked.accepts(other) and all(p.accepts(other) for p in picked):
            picked.append(other)
            if len(picked) == NUM_CHOICES - 1:
                return picked
    return None


def _record(subject: str, asked: _Candidate, distractors: Sequence[_Candidate], answer: int) -> dict[str, Any]:
    choices = [d.sentence for d in distractors]
    choices.insert(answer, asked.sentence)
    return {
        "id": f"{subject}/{asked.document.title}",
        "subject": subject,
        "question": asked.question,
        "choices": choices,
        "answer": answer,
    }


def build_questions(
    documents: Sequence[Document], test_per_subject: int = 100, dev_per_subject: int = 5, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """{"dev": [...], "test": [...]} MMLU-format records, by subject in `SUBJECTS` order.

    Every document is asked about at most once, so dev (the few-shot examples) and test never share one.
    A subject with fewer usable documents than asked for gets all it has, dev first.
    """
    splits: dict[str, list[dict[str, Any]]] = {"dev": [], "test": []}
    for index, subject in enumerate(SUBJECTS):
        # One generator per subject, seeded by name, so a change to one subject leaves the others as they were.
        rng = random.Random(f"{seed}:{subject}")
        pool = _candidates(subject, documents)
        asked: list[tuple[_Candidate, list[_Candidate]]] = []
        for candidate in rng.sample(pool, len(pool)):
            if len(asked) == dev_per_subject + test_per_subject:
                break
            if (distractors := _distractors(candidate, pool, rng)) is not None:
                asked.append((candidate, distractors))
        for split, questions in (("dev", asked[:dev_per_subject]), ("test", asked[dev_per_subject:])):
            # Positions cycle through A-D and are then shuffled: random per question, balanced within the subject;
            # each subject starts the cycle elsewhere, so the leftovers of small splits (5 dev) balance out too.
            positions = [(index + i) % NUM_CHOICES for i in range(len(questions))]
            rng.shuffle(positions)
            splits[split] += [
                _record(subject, *question, answer) for question, answer in zip(questions, positions, strict=True)
            ]
    return splits


# -------------------------------------------------------------------------------------------------- writing
def write_splits(splits: dict[str, list[dict[str, Any]]], output_dir: Path) -> dict[str, Path]:
    """`<output_dir>/<split>.jsonl`, one record a line with sorted keys, so rebuilding gives the same bytes."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, records in splits.items():
        lines = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n" for record in records)
        paths[split] = output_dir / f"{split}.jsonl"
        with atomic_path(paths[split]) as temporary:
            temporary.write_text("".join(lines), encoding="utf-8")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="directory for dev.jsonl and test.jsonl")
    parser.add_argument("--test-per-subject", type=int, default=100)
    parser.add_argument("--dev-per-subject", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = build_questions(stdlib_documents(), args.test_per_subject, args.dev_per_subject, args.seed)
    for split, path in write_splits(splits, args.output).items():
        counts = Counter(record["subject"] for record in splits[split])
        print(f"{path}: {len(splits[split])} records {dict(counts)}")


if __name__ == "__main__":
    main()
