"""An offline demo pool: LESS-format instruction data built from the stdlib docs, with known injected noise.

The selector is meant to run on the LESS training pool (cot, dolly, flan_v2, oasst1), which has to be downloaded.
The demo pool stands in for it on machines with no network: the same four folders, the same one-JSON-object-per-line
records with `messages`, and real English text, because every question and clean answer is built from the Python
standard library's own documentation (`stdlib_corpus`), styled after the source it imitates.

A known fraction of the records is corrupted on purpose (random characters, shuffled words, an answer to another
question, one repeated word, an answer cut off after a few words) and marked in `mygo_noise`. Selection never reads
that field; only the evaluation of the selector does, to measure how much of the noise a selection keeps out.
Noise corrupts the last assistant turn only, so a noisy multi-turn conversation starts out fine and then goes wrong;
the questions always stay clean.

Layout: `<dir>/<source>/<source>_data.jsonl` for each source, then `<dir>/manifest.json`, written last, so a
directory with a manifest is complete. The same arguments give the same bytes on the same Python version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mygo.data.stdlib_corpus import Document, stdlib_documents

logger = logging.getLogger(__name__)

DEMO_POOL_VERSION = 1
DEMO_SOURCES = ("cot", "dolly", "flan_v2", "oasst1")
NOISE_KINDS = ("random_chars", "shuffled_words", "mismatched_answer", "repeated_token", "cut_off_answer")
MANIFEST_NAME = "manifest.json"
MIN_SAMPLES = 20
MIN_ANSWER_CHARS = 40
# Shuffling or cutting a two-word answer would leave it (nearly) as it was, so these kinds go to longer answers.
WORD_NOISE_KINDS = frozenset({"shuffled_words", "cut_off_answer"})
MIN_WORDS_FOR_WORD_NOISE = 6
# Dolly-style answers keep adding paragraphs until they say at least this much.
LEAD_CHARS = 200
COT_SUFFIX = "Let's think step by step."

Message = dict[str, str]
Template = Callable[["_Corpus", random.Random, int], "list[Message] | None"]

_UNDERLINE = re.compile(r"([-=*~^#+])\1{2,}")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'`(*])")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,12}(?![A-Za-z])")


@dataclass
class DemoPoolReport:
    output_dir: Path
    num_samples: int
    counts_by_source: dict[str, int]
    counts_by_noise: dict[str, int]


@dataclass(frozen=True)
class DemoRecord:
    """One pool line plus what was lost to the noise, so tests can check a corruption against its original."""

    record: dict[str, Any]  # exactly what is written: dataset, id, messages, mygo_noise
    clean_answer: str  # the last assistant turn before any corruption (equal to it in clean records)


# --------------------------------------------------------------------------------------------------- text
@dataclass(frozen=True)
class _Doc:
    title: str  # dotted name, or the heading of a pydoc topic
    kind: str  # topic | module | class | function | method
    module: str  # the defining module; the title itself for modules, "" for topics
    paragraphs: tuple[str, ...]  # prose only, whitespace collapsed
    sentences: tuple[str, ...]  # whole sentences of quotable length

    @property
    def name(self) -> str:
        """How questions refer to it: code in backticks, topic headings as words."""
        if self.kind != "topic":
            return f"`{self.title}`"
        heading = self.title
        return heading[0].lower() + heading[1:] if heading[1:2].islower() else heading

    @property
    def first_sentence(self) -> str:
        return _SENTENCE_BREAK.split(self.paragraphs[0])[0]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _blocks(text: str) -> Iterator[list[str]]:
    """Blank-line separated blocks, without reST/pydoc headings (a line over an underline) and rules."""
    lines = text.splitlines()
    block: list[str] = []
    for i, line in enumerate(lines):
        is_heading = i + 1 < len(lines) and _UNDERLINE.fullmatch(lines[i + 1].strip()) is not None
        if not line.strip() or is_heading or _UNDERLINE.fullmatch(line.strip()):
            if block:
                yield block
            block = []
        else:
            block.append(line)
    if block:
        yield block


def _prose(block: list[str], first: bool) -> str | None:
    """The block as one line of prose, or None for code, grammar, nested lists and fragments."""
    text = _collapse(" ".join(block))
    if len({len(line) - len(line.lstrip()) for line in block}) > 1 or ">>>" in text or "::=" in text:
        return None
    if len(text.split()) < 4:
        return None
    # A docstring's summary line often has no full stop; anywhere else that marks a signature or a label.
    return text if first or text.endswith((".", "!", "?", ":")) else None


def _paragraphs(text: str) -> tuple[str, ...]:
    found = []
    for index, block in enumerate(_blocks(text)):
        if (paragraph := _prose(block, first=index == 0)) is not None:
            found.append(paragraph)
    return tuple(found)


def _quotable(paragraphs: Sequence[str]) -> tuple[str, ...]:
    sentences = (s for p in paragraphs for s in _SENTENCE_BREAK.split(p))
    return tuple(s for s in sentences if 30 <= len(s) <= 300 and len(s.split()) >= 6 and s.endswith((".", "!", "?")))


def _kind_and_module(document: Document, class_titles: set[str]) -> tuple[str, str]:
    parent = document.title.rpartition(".")[0]
    if document.source == "pydoc_topic":
        return "topic", ""
    if document.source == "module_doc":
        return "module", document.title
    if document.source == "class_doc":
        return "class", parent
    # Methods are named module.Class.method; a class without a long enough docstring is not in the corpus,
    # so its capitalised name is the fallback sign.
    if parent in class_titles or parent.rpartition(".")[2][:1].isupper():
        return "method", parent.rpartition(".")[0]
    return "function", parent


def _topic_heading(document: Document) -> str:
    lines = document.text.splitlines()
    if len(lines) > 1 and _UNDERLINE.fullmatch(lines[1].strip()):
        return lines[0].strip()
    return document.title


def _prepare(document: Document, class_titles: set[str]) -> _Doc | None:
    paragraphs = _paragraphs(document.text)
    if not paragraphs:
        return None
    kind, module = _kind_and_module(document, class_titles)
    if kind in ("function", "method", "class") and not module:
        return None
    title = _topic_heading(document) if kind == "topic" else document.title
    return _Doc(title, kind, module, paragraphs, _quotable(paragraphs))


def _truncate(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a sentence if that keeps half of them, else after a word."""
    text = text.strip()
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]]
    space = window.rfind(" ")
    return text[:space].rstrip() if space > 0 else text[:limit]


class _Corpus:
    """The prepared documents, indexed the ways the templates pick them."""

    def __init__(self, documents: Sequence[Document]) -> None:
        class_titles = {d.title for d in documents if d.source == "class_doc"}
        self.docs = [doc for d in documents if (doc := _prepare(d, class_titles)) is not None]
        self.coded = [d for d in self.docs if d.kind != "topic"]
        self.members = [d for d in self.docs if d.kind in ("class", "function", "method")]
        self.quotable = [d for d in self.docs if d.sentences]
        self.multi_paragraph = [d for d in self.docs if len(d.paragraphs) >= 2]
        self.returning = [d for d in self.members if any(s.startswith("Return") for s in d.sentences)]
        # Children of a module (its classes and functions) and of a class (its methods), for follow-up questions.
        self.children: dict[str, list[_Doc]] = {}
        for doc in self.members:
            parent = doc.title.rpartition(".")[0]
            self.children.setdefault(parent, []).append(doc)
            if doc.kind == "method" and doc.module != parent:
                self.children.setdefault(doc.module, []).append(doc)
        self.parents = [d for d in self.docs if d.kind in ("module", "class") and d.title in self.children]
        by_kind: dict[str, list[_Doc]] = {}
        for doc in self.docs:
            by_kind.setdefault(doc.kind, []).append(doc)
        self.by_kind = by_kind

    def other(self, rng: random.Random, doc: _Doc, pool: Sequence[_Doc], fits: Callable[[_Doc], bool]) -> _Doc | None:
        """Another document from `pool` (all of which `fit`), often from the same module, for a harder contrast."""
        siblings = [d for d in self.children.get(doc.module, ()) if d.title != doc.title and fits(d)]
        other = rng.choice(siblings) if siblings and rng.random() < 0.5 else rng.choice(pool)
        return None if other.title == doc.title else other


def _has_sentences(doc: _Doc) -> bool:
    return bool(doc.sentences)


def _lead(doc: _Doc, limit: int, start: int = 0) -> str:
    """The opening paragraphs from `start`, enough to read as an answer, cut to `limit`."""
    taken: list[str] = []
    for paragraph in doc.paragraphs[start:]:
        taken.append(paragraph)
        if sum(map(len, taken)) >= LEAD_CHARS:
            break
    return _truncate("\n\n".join(taken), limit)


def _turns(*pairs: tuple[str, str], system: str | None = None) -> list[Message]:
    messages = [{"role": "system", "content": system}] if system else []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


# ---------------------------------------------------------------------------------------------- dolly
_OPEN_QA = {
    "module": (
        "What is the {name} module in Python for?",
        "What can I do with Python's {name} module?",
        "Tell me about the {name} module of the Python standard library.",
    ),
    "class": ("What is {name} in Python?", "What is the class {name} used for?", "Explain the Python class {name}."),
    "function": (
        "What does {name} do in Python?",
        "What is {name} used for?",
        "Explain what the function {name} from the Python standard library does.",
    ),
    "method": ("What does the method {name} do?", "In Python, what is {name} used for?", "Explain what {name} does."),
    "topic": (
        "What does the Python language reference say about {name}?",
        "Explain {name} in Python.",
        "Tell me about {name} in Python.",
    ),
}
_SUMMARIZE = (
    "Summarize the documentation of {name} in one sentence.",
    "Give me a one-sentence summary of what the Python documentation says about {name}.",
    "In one sentence, what is {name}?",
)
_SUMMARIZE_PASSAGE = (
    "Summarize this passage from the Python documentation in one sentence:\n\n{passage}",
    "{passage}\n\nWhat is the main point of this text? Answer in one sentence.",
)
_RETURNS = (
    "Read the documentation of {name} below and tell me what it returns.\n\n{passage}",
    "{passage}\n\nBased on this reference text, what does {name} return?",
)


def _dolly_open_qa(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.docs)
    return _turns((rng.choice(_OPEN_QA[doc.kind]).format(name=doc.name), _lead(doc, limit)))


def _dolly_summarize(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.docs)
    return _turns((rng.choice(_SUMMARIZE).format(name=doc.name), _truncate(doc.first_sentence, limit)))


def _dolly_summarize_passage(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.multi_paragraph)
    passage = _truncate("\n\n".join(doc.paragraphs), limit)
    return _turns((rng.choice(_SUMMARIZE_PASSAGE).format(passage=passage), _truncate(doc.first_sentence, limit)))


def _dolly_returns(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.returning)
    passage = _truncate("\n\n".join(doc.paragraphs), limit)
    answer = next((s for s in _SENTENCE_BREAK.split(passage) if s.startswith("Return")), None)
    if answer is None:  # the returns sentence fell past the cut
        return None
    return _turns((rng.choice(_RETURNS).format(name=doc.name, passage=passage), answer))


# -------------------------------------------------------------------------------------------- flan_v2
_FLAN_SYSTEMS = (
    "You are an AI assistant. Provide a short, direct answer.",
    "You are a helpful assistant. Answer with only the requested word or phrase.",
    "You are an AI assistant that follows instructions extremely well.",
)
_MODULE_OF = (
    "Which Python module does {name} belong to?",
    "Q: In which module of the Python standard library is {name} defined?\nA:",
    "{name} is part of which Python module? Answer with the module name only.",
)
_COMPLETE = (
    "Complete the sentence: {head}",
    "Continue this sentence from the Python documentation:\n\n{head}",
    "Finish the following text.\n\n{head}",
)
_TITLE = (
    "Give a title for this text:\n\n{passage}",
    "What is the best title for this passage from the Python documentation?\n\n{passage}\n\nTitle:",
    "Read the text and name the Python object or topic it documents.\n\n{passage}",
)
_WHICH_DOC = (
    "Is this sentence from the documentation of {a} or {b}?\n\n{sentence}",
    'Sentence: "{sentence}"\n\nWas this sentence written about {a} or about {b}?',
)
_CLASSIFY = (
    "What does this documentation describe: a module, a class, a function or a method?\n\n{passage}\n\n"
    "OPTIONS:\n- module\n- class\n- function\n- method",
    "{passage}\n\nIs the text above the documentation of a module, a class, a function or a method?",
)


def _flan(rng: random.Random, question: str, answer: str) -> list[Message]:
    # Some FLAN v2 records in the Tulu mix carry a system prompt; most do not.
    return _turns((question, answer), system=rng.choice(_FLAN_SYSTEMS) if rng.random() < 0.3 else None)


def _flan_module_of(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.members)
    return _flan(rng, rng.choice(_MODULE_OF).format(name=doc.name), doc.module)


def _flan_complete(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    words = rng.choice(rng.choice(corpus.quotable).sentences).split()
    cut = rng.randint(max(1, len(words) // 3), max(1, 2 * len(words) // 3))
    head, rest = " ".join(words[:cut]), _truncate(" ".join(words[cut:]), limit)
    return _flan(rng, rng.choice(_COMPLETE).format(head=head), rest)


def _flan_title(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.docs)
    return _flan(rng, rng.choice(_TITLE).format(passage=_truncate(doc.paragraphs[0], limit)), doc.title)


def _flan_which_doc(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.quotable)
    other = corpus.other(rng, doc, corpus.quotable, _has_sentences)
    sentence = rng.choice(doc.sentences)
    if other is None or sentence in other.sentences:
        return None
    a, b = (doc, other) if rng.random() < 0.5 else (other, doc)
    return _flan(rng, rng.choice(_WHICH_DOC).format(a=a.name, b=b.name, sentence=sentence), doc.title)


def _flan_classify(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.coded)
    return _flan(rng, rng.choice(_CLASSIFY).format(passage=_truncate(doc.paragraphs[0], limit)), doc.kind)


# ------------------------------------------------------------------------------------------------ cot
_DESCRIBES = (
    'Does the following statement describe {name} from the Python standard library?\n\nStatement: "{statement}"',
    'Is this a description of {name}? "{statement}"',
)
_WHICH_OF_TWO = ('Which of these does the following: "{task}"\n(A) {a}\n(B) {b}',)
_COT_MODULE = (
    "In which module is {name} defined?",
    "Which module of the standard library do I import to use {name}?",
)


def _cot(question: str, steps: list[str], conclusion: str, limit: int) -> list[Message] | None:
    """Question plus 'think step by step'; the answer keeps the conclusion and the last steps that fit.

    Only at very small `limit`s does no step fit; the conclusion then stands alone rather than being cut.
    """
    final = f"So the answer is {conclusion}."
    if len(final) > limit:
        return None
    while steps and len(" ".join([*steps, final])) > limit:
        steps = steps[1:]
    return _turns((f"{question}\n\n{COT_SUFFIX}", " ".join([*steps, final])))


def _cot_describes(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.quotable)
    quote = _truncate(doc.first_sentence, max(limit // 3, 20))
    steps = [f'The documentation of {doc.name} begins: "{quote}"']
    if rng.random() < 0.5:
        statement = rng.choice(doc.sentences)
        if statement != doc.first_sentence:
            steps.append(f'Further on, it says: "{statement}"')
        steps.append(f"That is the statement, so the statement describes {doc.name}.")
        conclusion = "yes"
    else:
        other = corpus.other(rng, doc, corpus.quotable, _has_sentences)
        if other is None:
            return None
        statement = rng.choice(other.sentences)
        if statement in doc.sentences:
            return None
        steps.append(f"The statement is not part of it; it comes from the documentation of {other.name}.")
        conclusion = "no"
    return _cot(rng.choice(_DESCRIBES).format(name=doc.name, statement=statement), steps, conclusion, limit)


def _cot_which_of_two(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.members)
    other = corpus.other(rng, doc, corpus.by_kind[doc.kind], lambda d: d.kind == doc.kind)
    if other is None or other.first_sentence == doc.first_sentence:
        return None
    a, b = (doc, other) if rng.random() < 0.5 else (other, doc)
    question = _WHICH_OF_TWO[0].format(task=_truncate(doc.first_sentence, limit), a=a.name, b=b.name)
    quote = _truncate(other.first_sentence, max(limit // 3, 20))
    steps = [
        f"The documentation of {doc.name} starts with exactly this description.",
        f'{other.name} is documented differently: "{quote}"',
        f"So {doc.name} is the one that does it, and it is option {'A' if a is doc else 'B'}.",
    ]
    return _cot(question, steps, f"({'A' if a is doc else 'B'})", limit)


def _cot_module(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    doc = rng.choice(corpus.members)
    last = doc.title.rpartition(".")[2]
    parent = doc.title.rpartition(".")[0]
    steps = [f"The documented name is {doc.name}, a dotted path."]
    if doc.kind == "method":
        steps.append(f"Its last part, `{last}`, is a method of the class `{parent}`.")
        steps.append(f"What comes before the class, `{doc.module}`, is the module that defines it.")
    else:
        steps.append(f"Its last part, `{last}`, is the {doc.kind} itself.")
        steps.append(f"What comes before it, `{doc.module}`, is the module that defines it.")
    return _cot(rng.choice(_COT_MODULE).format(name=doc.name), steps, doc.module, limit)


# --------------------------------------------------------------------------------------------- oasst1
_OASST_SYSTEMS = (
    "You are a helpful assistant.",
    "You are a friendly assistant who knows the Python standard library well.",
)
_CHILD_QA = (
    "What does {name} do?",
    "And what is {name} for?",
    "Can you explain {name} as well?",
)
_MORE = ("Can you go into more detail?", "Interesting, tell me more.", "What else should I know about it?")
_ONE_SENTENCE = ("Can you sum that up in one sentence?", "Thanks! So in short, what is it?")


def _oasst(rng: random.Random, *pairs: tuple[str, str]) -> list[Message]:
    return _turns(*pairs, system=rng.choice(_OASST_SYSTEMS) if rng.random() < 0.25 else None)


def _oasst_children(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    """Ask about a module or class, then about one or two of its functions, classes or methods."""
    parent = rng.choice(corpus.parents)
    children = corpus.children[parent.title]
    picked = rng.sample(children, min(len(children), rng.choice((1, 2))))
    pairs = [(rng.choice(_OPEN_QA[parent.kind]).format(name=parent.name), _lead(parent, limit))]
    pairs += [(rng.choice(_CHILD_QA).format(name=child.name), _lead(child, limit)) for child in picked]
    if len(pairs) == 2 and rng.random() < 0.5:
        pairs.append((rng.choice(_ONE_SENTENCE), _truncate(picked[0].first_sentence, limit)))
    return _oasst(rng, *pairs)


def _oasst_detail(corpus: _Corpus, rng: random.Random, limit: int) -> list[Message] | None:
    """Ask about anything with more than one paragraph, then for more detail, sometimes for a summary."""
    doc = rng.choice(corpus.multi_paragraph)
    pairs = [
        (rng.choice(_OPEN_QA[doc.kind]).format(name=doc.name), _truncate(doc.paragraphs[0], limit)),
        (rng.choice(_MORE), _lead(doc, limit, start=1)),
    ]
    if rng.random() < 0.4:
        pairs.append((rng.choice(_ONE_SENTENCE), _truncate(doc.first_sentence, limit)))
    return _oasst(rng, *pairs)


TEMPLATES: dict[str, tuple[Template, ...]] = {
    "cot": (_cot_describes, _cot_describes, _cot_which_of_two, _cot_module),
    "dolly": (_dolly_open_qa, _dolly_open_qa, _dolly_summarize, _dolly_summarize_passage, _dolly_returns),
    "flan_v2": (_flan_module_of, _flan_complete, _flan_title, _flan_which_doc, _flan_classify),
    "oasst1": (_oasst_children, _oasst_children, _oasst_detail),
}


# ---------------------------------------------------------------------------------------------- noise
def _random_chars(answer: str, rng: random.Random, limit: int) -> str:
    length = min(max(len(answer), 20), limit)
    alphabet = string.ascii_letters + string.digits + string.punctuation
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append("".join(rng.choices(alphabet, k=rng.randint(1, 9))))
    return " ".join(words)[:length].strip()


def _shuffled_words(answer: str, rng: random.Random) -> str:
    words = answer.split()
    shuffled = words[:]
    rng.shuffle(shuffled)
    if shuffled == words:  # a lucky shuffle would not be noise
        shuffled = shuffled[1:] + shuffled[:1]
    return " ".join(shuffled)


def _repeated_token(answer: str, rng: random.Random, limit: int) -> str:
    # A word of the answer itself (dotted names give their parts), so the noise keeps the answer's vocabulary.
    candidates = _WORD.findall(answer) or ["the"]
    token = rng.choice(candidates)
    # As many repeats as the answer had words (at least 8), within the answer limit.
    count = min(max(len(answer.split()), 8), (limit + 1) // (len(token) + 1))
    return " ".join([token] * count)


def _cut_off(answer: str, rng: random.Random) -> str:
    words = answer.split()
    return " ".join(words[: rng.randint(1, max(1, min(3, len(words) - 1)))])


def _assign_noise(answers: Sequence[str], num_noisy: int, rng: random.Random) -> dict[int, str]:
    """Record index -> noise kind: kinds round-robin, records in random order, so noise spreads over sources."""
    order = rng.sample(range(len(answers)), len(answers))
    long_order = iter([i for i in order if len(answers[i].split()) >= MIN_WORDS_FOR_WORD_NOISE])
    any_order = iter(order)
    kinds = sorted(
        (NOISE_KINDS[i % len(NOISE_KINDS)] for i in range(num_noisy)), key=lambda k: k not in WORD_NOISE_KINDS
    )
    assigned: dict[int, str] = {}
    for kind in kinds:  # word-level kinds first, while long answers are left
        fresh = (i for i in (long_order if kind in WORD_NOISE_KINDS else any_order) if i not in assigned)
        index = next(fresh, None)
        if index is None:
            index = next(i for i in any_order if i not in assigned)
        assigned[index] = kind
    return assigned


def _donor(index: int, sources: Sequence[str], answers: Sequence[str], clean: Sequence[int], rng: random.Random) -> str:
    """A clean answer from another record, preferably of the same source so it looks the part."""
    same = [i for i in clean if sources[i] == sources[index]]
    for pool in (same, clean, range(len(answers))):
        options = [i for i in pool if i != index and answers[i] != answers[index]]
        if options:
            return answers[rng.choice(options)]
    return answers[(index + 1) % len(answers)]


def _corrupt(kind: str, answer: str, donor: str, rng: random.Random, limit: int) -> str:
    if kind == "random_chars":
        return _random_chars(answer, rng, limit)
    if kind == "shuffled_words":
        return _shuffled_words(answer, rng)
    if kind == "mismatched_answer":
        return donor
    if kind == "repeated_token":
        return _repeated_token(answer, rng, limit)
    return _cut_off(answer, rng)


# -------------------------------------------------------------------------------------------- records
def _source_counts(num_samples: int) -> dict[str, int]:
    base, extra = divmod(num_samples, len(DEMO_SOURCES))
    return {source: base + (i < extra) for i, source in enumerate(DEMO_SOURCES)}


def _is_valid(messages: list[Message]) -> bool:
    roles = [m["role"] for m in messages]
    return "user" in roles and roles[-1] == "assistant" and all(m["content"].strip() for m in messages)


def _clean_conversations(
    corpus: _Corpus, source: str, count: int, rng: random.Random, limit: int
) -> list[list[Message]]:
    """`count` distinct conversations in the style of `source` (repeats allowed only if the corpus runs dry)."""
    found: list[list[Message]] = []
    seen: set[str] = set()
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100 * count + 1000:  # every template declines: a bug, never a reason to spin forever
            raise RuntimeError(f"could not generate {count} {source} samples ({len(found)} after {attempts} tries)")
        messages = rng.choice(TEMPLATES[source])(corpus, rng, limit)
        if messages is None or not _is_valid(messages):
            continue
        key = json.dumps(messages)
        if key in seen and attempts <= 20 * count:
            continue
        seen.add(key)
        found.append(messages)
    return found


def generate_demo_records(
    documents: Sequence[Document], num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int
) -> list[DemoRecord]:
    """The pool's records in file order (by source, then id); what `build_demo_pool` writes."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars)
    rng = random.Random(seed)
    corpus = _Corpus(documents)
    sources: list[str] = []
    conversations: list[list[Message]] = []
    for source, count in _source_counts(num_samples).items():
        conversations += _clean_conversations(corpus, source, count, rng, max_answer_chars)
        sources += [source] * count
    answers = [messages[-1]["content"] for messages in conversations]

    noise = _assign_noise(answers, round(noise_fraction * num_samples), rng)
    clean = [i for i in range(num_samples) if i not in noise]
    records = []
    first_index = {source: sources.index(source) for source in DEMO_SOURCES}
    for index, (source, messages) in enumerate(zip(sources, conversations, strict=True)):
        kind = noise.get(index)
        if kind is not None:
            donor = _donor(index, sources, answers, clean, rng) if kind == "mismatched_answer" else ""
            corrupted = _corrupt(kind, answers[index], donor, rng, max_answer_chars)
            messages = [*messages[:-1], {"role": "assistant", "content": corrupted}]
        number = index - first_index[source]
        record = {"dataset": source, "id": f"{source}_{number}", "messages": messages, "mygo_noise": kind}
        records.append(DemoRecord(record, answers[index]))
    return records


# -------------------------------------------------------------------------------------------- writing
def _validate(num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < MIN_SAMPLES:
        raise ValueError(f"num_samples must be an integer >= {MIN_SAMPLES}, got {num_samples!r}")
    if not 0 <= noise_fraction < 1:  # also refuses NaN
        raise ValueError(f"noise_fraction must be in [0, 1), got {noise_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if (
        isinstance(max_answer_chars, bool)
        or not isinstance(max_answer_chars, int)
        or max_answer_chars < MIN_ANSWER_CHARS
    ):
        raise ValueError(f"max_answer_chars must be an integer >= {MIN_ANSWER_CHARS}, got {max_answer_chars!r}")


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(), unlike tempfile.mkstemp, leaves the file readable per the umask, as a shared cache needs.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as file:
            file.write(text.encode("utf-8"))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def build_demo_pool(
    output_dir: Path,
    num_samples: int = 4000,
    noise_fraction: float = 0.15,
    seed: int = 0,
    max_answer_chars: int = 600,
) -> DemoPoolReport:
    """Build the pool into `output_dir` (per-source JSONL files, then the manifest) and report its counts."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars)
    output_dir = Path(output_dir)
    records = generate_demo_records(stdlib_documents(), num_samples, noise_fraction, seed, max_answer_chars)
    output_dir.mkdir(parents=True, exist_ok=True)
    # An old manifest would vouch for files that are about to change.
    (output_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for source in DEMO_SOURCES:
        lines = [json.dumps(r.record, ensure_ascii=False) + "\n" for r in records if r.record["dataset"] == source]
        _write_atomic(output_dir / source / f"{source}_data.jsonl", "".join(lines))

    kinds = [r.record["mygo_noise"] for r in records]
    report = DemoPoolReport(
        output_dir=output_dir,
        num_samples=num_samples,
        counts_by_source=_source_counts(num_samples),
        counts_by_noise={kind: kinds.count(kind) for kind in NOISE_KINDS},
    )
    manifest = {
        "format_version": DEMO_POOL_VERSION,
        "python_version": _python_version(),
        "arguments": _arguments(num_samples, noise_fraction, seed, max_answer_chars),
        "counts_by_source": report.counts_by_source,
        "counts_by_noise": report.counts_by_noise,
        "num_noisy": sum(report.counts_by_noise.values()),
        "files": {source: f"{source}/{source}_data.jsonl" for source in DEMO_SOURCES},
    }
    _write_atomic(output_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return report


def _arguments(num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int) -> dict[str, Any]:
    # Normalised, so that noise_fraction=0 and 0.0 name the same pool.
    return {
        "num_samples": int(num_samples),
        "noise_fraction": float(noise_fraction),
        "seed": int(seed),
        "max_answer_chars": int(max_answer_chars),
    }


def demo_pool_dir(cache_root: Path, num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int) -> Path:
    """Where `ensure_demo_pool` keeps a pool: keyed by the arguments, the format and this Python's docs."""
    key = {
        **_arguments(num_samples, noise_fraction, seed, max_answer_chars),
        "format_version": DEMO_POOL_VERSION,
        "python_version": _python_version(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return Path(cache_root) / f"v{DEMO_POOL_VERSION}-{digest}"


def ensure_demo_pool(
    cache_root: Path, num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int
) -> Path:
    """The cached pool for these arguments, built first if its directory has no manifest yet."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars)
    pool_dir = demo_pool_dir(cache_root, num_samples, noise_fraction, seed, max_answer_chars)
    if (pool_dir / MANIFEST_NAME).is_file():
        logger.info("Reusing demo pool at %s", pool_dir)
        return pool_dir
    logger.info("Building demo pool at %s (%d samples, %.0f%% noise)", pool_dir, num_samples, 100 * noise_fraction)
    start = time.perf_counter()
    report = build_demo_pool(pool_dir, num_samples, noise_fraction, seed, max_answer_chars)
    logger.info(
        "Built demo pool in %.1fs: %s, noise %s",
        time.perf_counter() - start,
        report.counts_by_source,
        report.counts_by_noise,
    )
    return pool_dir
