"""The demo pool's conversation templates: questions and clean answers in the style of each LESS source.

Every question and answer is built from a prepared stdlib document (`Corpus`); a template returns the
conversation with its topic (the module, or language-reference topic, of the document it is about), or None
when the document it drew cannot make a good sample, and the builder draws again.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mygo.data.stdlib_corpus import Document
from mygo.data.stdlib_text import SENTENCE_BREAK, prose_paragraphs, topic_heading

# Dolly-style answers keep adding paragraphs until they say at least this much.
LEAD_CHARS = 200
COT_SUFFIX = "Let's think step by step."

Message = dict[str, str]
Drawn = tuple[str, list[Message]]  # (topic, messages)
Template = Callable[["Corpus", random.Random, int], "Drawn | None"]

_SENTENCE_END = re.compile(r"[.!?](?=\s)")


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
    def topic(self) -> str:
        """What a sample about this document is about: its module, or the heading of a language-reference topic."""
        return self.module or self.title

    @property
    def first_sentence(self) -> str:
        return SENTENCE_BREAK.split(self.paragraphs[0])[0]


def _quotable(paragraphs: Sequence[str]) -> tuple[str, ...]:
    sentences = (s for p in paragraphs for s in SENTENCE_BREAK.split(p))
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


def _prepare(document: Document, class_titles: set[str]) -> _Doc | None:
    paragraphs = prose_paragraphs(document.text)
    if not paragraphs:
        return None
    kind, module = _kind_and_module(document, class_titles)
    if kind in ("function", "method", "class") and not module:
        return None
    title = topic_heading(document) if kind == "topic" else document.title
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


class Corpus:
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


def _about(doc: _Doc, messages: list[Message] | None) -> Drawn | None:
    return None if messages is None else (doc.topic, messages)


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


def _dolly_open_qa(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.docs)
    return _about(doc, _turns((rng.choice(_OPEN_QA[doc.kind]).format(name=doc.name), _lead(doc, limit))))


def _dolly_summarize(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.docs)
    return _about(doc, _turns((rng.choice(_SUMMARIZE).format(name=doc.name), _truncate(doc.first_sentence, limit))))


def _dolly_summarize_passage(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.multi_paragraph)
    passage = _truncate("\n\n".join(doc.paragraphs), limit)
    return _about(
        doc, _turns((rng.choice(_SUMMARIZE_PASSAGE).format(passage=passage), _truncate(doc.first_sentence, limit)))
    )


def _dolly_returns(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.returning)
    passage = _truncate("\n\n".join(doc.paragraphs), limit)
    answer = next((s for s in SENTENCE_BREAK.split(passage) if s.startswith("Return")), None)
    if answer is None:  # the returns sentence fell past the cut
        return None
    return _about(doc, _turns((rng.choice(_RETURNS).format(name=doc.name, passage=passage), answer)))


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


def _flan_module_of(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.members)
    return _about(doc, _flan(rng, rng.choice(_MODULE_OF).format(name=doc.name), doc.module))


def _flan_complete(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.quotable)
    words = rng.choice(doc.sentences).split()
    cut = rng.randint(max(1, len(words) // 3), max(1, 2 * len(words) // 3))
    head, rest = " ".join(words[:cut]), _truncate(" ".join(words[cut:]), limit)
    return _about(doc, _flan(rng, rng.choice(_COMPLETE).format(head=head), rest))


def _flan_title(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.docs)
    return _about(doc, _flan(rng, rng.choice(_TITLE).format(passage=_truncate(doc.paragraphs[0], limit)), doc.title))


def _flan_which_doc(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.quotable)
    other = corpus.other(rng, doc, corpus.quotable, _has_sentences)
    sentence = rng.choice(doc.sentences)
    if other is None or sentence in other.sentences:
        return None
    a, b = (doc, other) if rng.random() < 0.5 else (other, doc)
    return _about(doc, _flan(rng, rng.choice(_WHICH_DOC).format(a=a.name, b=b.name, sentence=sentence), doc.title))


def _flan_classify(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    doc = rng.choice(corpus.coded)
    return _about(doc, _flan(rng, rng.choice(_CLASSIFY).format(passage=_truncate(doc.paragraphs[0], limit)), doc.kind))


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


def _cot_describes(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
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
    return _about(
        doc, _cot(rng.choice(_DESCRIBES).format(name=doc.name, statement=statement), steps, conclusion, limit)
    )


def _cot_which_of_two(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
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
    return _about(doc, _cot(question, steps, f"({'A' if a is doc else 'B'})", limit))


def _cot_module(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
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
    return _about(doc, _cot(rng.choice(_COT_MODULE).format(name=doc.name), steps, doc.module, limit))


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


def _oasst_children(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    """Ask about a module or class, then about one or two of its functions, classes or methods."""
    parent = rng.choice(corpus.parents)
    children = corpus.children[parent.title]
    picked = rng.sample(children, min(len(children), rng.choice((1, 2))))
    pairs = [(rng.choice(_OPEN_QA[parent.kind]).format(name=parent.name), _lead(parent, limit))]
    pairs += [(rng.choice(_CHILD_QA).format(name=child.name), _lead(child, limit)) for child in picked]
    if len(pairs) == 2 and rng.random() < 0.5:
        pairs.append((rng.choice(_ONE_SENTENCE), _truncate(picked[0].first_sentence, limit)))
    return _about(parent, _oasst(rng, *pairs))


def _oasst_detail(corpus: Corpus, rng: random.Random, limit: int) -> Drawn | None:
    """Ask about anything with more than one paragraph, then for more detail, sometimes for a summary."""
    doc = rng.choice(corpus.multi_paragraph)
    pairs = [
        (rng.choice(_OPEN_QA[doc.kind]).format(name=doc.name), _truncate(doc.paragraphs[0], limit)),
        (rng.choice(_MORE), _lead(doc, limit, start=1)),
    ]
    if rng.random() < 0.4:
        pairs.append((rng.choice(_ONE_SENTENCE), _truncate(doc.first_sentence, limit)))
    return _about(doc, _oasst(rng, *pairs))


TEMPLATES: dict[str, tuple[Template, ...]] = {
    "cot": (_cot_describes, _cot_describes, _cot_which_of_two, _cot_module),
    "dolly": (_dolly_open_qa, _dolly_open_qa, _dolly_summarize, _dolly_summarize_passage, _dolly_returns),
    "flan_v2": (_flan_module_of, _flan_complete, _flan_title, _flan_which_doc, _flan_classify),
    "oasst1": (_oasst_children, _oasst_children, _oasst_detail),
}


# Public for the held-out answer-likelihood task (`mygo.data.stdlib_qa`), which asks in the dolly style.
OPEN_QA = _OPEN_QA
lead = _lead
