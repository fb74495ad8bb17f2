"""The demo pool's injected noise: how a clean answer is corrupted, and which records get which kind.

`NOISE_KINDS` are the default pool's five. `HELDOUT_NOISE_KINDS` are five more that nothing in the project is tuned
on (`dataset=demo_heldout`): the kinds real instruction pools hold beside garbled text, which fluent-text signals
and answer-prompt overlap can miss: refusals, content-free boilerplate, the question echoed back, the right answer
in the wrong script, and an answer whose names and numbers belong to another record.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence

NOISE_KINDS = ("random_chars", "shuffled_words", "mismatched_answer", "repeated_token", "cut_off_answer")
HELDOUT_NOISE_KINDS = ("refusal", "boilerplate", "echoed_question", "wrong_script", "wrong_facts")
ALL_NOISE_KINDS = NOISE_KINDS + HELDOUT_NOISE_KINDS
# Kinds that copy from another record's answer (the donor).
DONOR_NOISE_KINDS = frozenset({"mismatched_answer", "wrong_facts"})
# Shuffling or cutting a two-word answer would leave it (nearly) as it was, so these kinds go to longer answers.
WORD_NOISE_KINDS = frozenset({"shuffled_words", "cut_off_answer", "wrong_facts"})
MIN_WORDS_FOR_WORD_NOISE = 6

_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,12}(?![A-Za-z])")


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


_REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, I cannot answer this question.",
    "As an AI language model, I am not able to provide that information.",
    "I apologize, but I am unable to assist with this request.",
    "Unfortunately, I can't provide an answer to that.",
    "I'm not able to help with this. Is there something else I can do for you?",
)
_BOILERPLATE = (
    ("Great question!", "Thanks for asking!", "That is a very good question.", "Sure, happy to help!"),
    (
        "There are many factors to consider here, and the answer depends on your situation.",
        "It is important to keep several things in mind when thinking about this.",
        "This is a topic that many people find interesting and worth exploring further.",
        "The details can vary, so it is always a good idea to look into it carefully.",
    ),
    (
        "I hope this helps!",
        "Let me know if you have any other questions.",
        "Feel free to ask if anything is unclear.",
        "Good luck, and have a great day!",
    ),
)
# The Latin letters written in Cyrillic (a transliteration): the answer as a user of another script might get it.
_CYRILLIC = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "абцдефгхийклмнопярстуввхызАБЦДЕФГХИЙКЛМНОПЯРСТУВВХЫЗ",
)
_FACT = re.compile(r"\b(?:\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+|[a-z]+_[a-z_]+)\b")


def _boilerplate(rng: random.Random) -> str:
    return " ".join(rng.choice(part) for part in _BOILERPLATE)


def _wrong_facts(answer: str, donor: str, rng: random.Random) -> str:
    """The answer's names and numbers replaced by the donor's (its content words, where it has too few)."""
    facts = _FACT.findall(donor) or _WORD.findall(donor) or ["None"]
    pattern = _FACT if _FACT.search(answer) else _WORD
    replaced = pattern.sub(lambda match: rng.choice([f for f in facts if f != match.group()] or facts), answer)
    if replaced == answer:  # no name or number to change: one word is not a wrong fact, so take half of them
        words = answer.split()
        for position in rng.sample(range(len(words)), max(1, len(words) // 2)):
            words[position] = rng.choice(facts)
        replaced = " ".join(words)
    return replaced


def assign_noise(
    answers: Sequence[str], num_noisy: int, rng: random.Random, kinds: Sequence[str] = NOISE_KINDS
) -> dict[int, str]:
    """Record index -> noise kind: kinds round-robin, records in random order, so noise spreads over sources."""
    order = rng.sample(range(len(answers)), len(answers))
    long_order = iter([i for i in order if len(answers[i].split()) >= MIN_WORDS_FOR_WORD_NOISE])
    any_order = iter(order)
    kinds = sorted((kinds[i % len(kinds)] for i in range(num_noisy)), key=lambda k: k not in WORD_NOISE_KINDS)
    assigned: dict[int, str] = {}
    for kind in kinds:  # word-level kinds first, while long answers are left
        fresh = (i for i in (long_order if kind in WORD_NOISE_KINDS else any_order) if i not in assigned)
        index = next(fresh, None)
        if index is None:
            index = next(i for i in any_order if i not in assigned)
        assigned[index] = kind
    return assigned


def donor_answer(
    index: int, sources: Sequence[str], answers: Sequence[str], clean: Sequence[int], rng: random.Random
) -> str:
    """A clean answer from another record, preferably of the same source so it looks the part."""
    same = [i for i in clean if sources[i] == sources[index]]
    for pool in (same, clean, range(len(answers))):
        options = [i for i in pool if i != index and answers[i] != answers[index]]
        if options:
            return answers[rng.choice(options)]
    return answers[(index + 1) % len(answers)]


def corrupt(kind: str, answer: str, donor: str, rng: random.Random, limit: int, question: str = "") -> str:
    """The noisy answer of `kind` for a clean `answer` (`donor`: another record's answer; `question`: the prompt)."""
    if kind == "refusal":
        return rng.choice(_REFUSALS)
    if kind == "boilerplate":
        return _boilerplate(rng)
    if kind == "echoed_question":
        return question[:limit].strip() or answer
    if kind == "wrong_script":
        return answer.translate(_CYRILLIC)
    if kind == "wrong_facts":
        return _wrong_facts(answer, donor, rng)[:limit]
    if kind == "random_chars":
        return _random_chars(answer, rng, limit)
    if kind == "shuffled_words":
        return _shuffled_words(answer, rng)
    if kind == "mismatched_answer":
        return donor
    if kind == "repeated_token":
        return _repeated_token(answer, rng, limit)
    return _cut_off(answer, rng)
