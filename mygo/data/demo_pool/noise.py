"""The demo pool's injected noise: how a clean answer is corrupted, and which records get which kind."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence

NOISE_KINDS = ("random_chars", "shuffled_words", "mismatched_answer", "repeated_token", "cut_off_answer")
# Shuffling or cutting a two-word answer would leave it (nearly) as it was, so these kinds go to longer answers.
WORD_NOISE_KINDS = frozenset({"shuffled_words", "cut_off_answer"})
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


def assign_noise(answers: Sequence[str], num_noisy: int, rng: random.Random) -> dict[int, str]:
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


def corrupt(kind: str, answer: str, donor: str, rng: random.Random, limit: int) -> str:
    if kind == "random_chars":
        return _random_chars(answer, rng, limit)
    if kind == "shuffled_words":
        return _shuffled_words(answer, rng)
    if kind == "mismatched_answer":
        return donor
    if kind == "repeated_token":
        return _repeated_token(answer, rng, limit)
    return _cut_off(answer, rng)
