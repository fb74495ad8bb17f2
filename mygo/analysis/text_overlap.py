"""How much an answer's text shares with its prompt's: the `overlap` and `prompt_copy` signals.

An answer to a question nearly always repeats some of it (its names, its terms, its numbers); an answer that
shares nothing with its instruction answers another one, or is no text at all. The measure is the cosine between
the character 4-gram profiles of the two texts (within word boundaries, hashed, sublinear counts), which needs
no model: it sees spelling, so identifiers and inflections match where a small model's embeddings would not.

Overlap rewards what the answer shares with its prompt, so the answer that shares most, the question repeated
back, scores best. `prompt_copy` catches that case: the Jaccard similarity of the character 4-gram *sets* of each
assistant turn and the user turn it answers, 1 for a copy. It is symmetric on purpose: an answer to a
multiple-choice question is contained in its prompt, and an answer to a short question may contain all of it,
but only a copy is both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from mygo.labels import IGNORE_INDEX

# Character 4-grams within word boundaries, hashed (collisions are negligible at 2**20 for texts this short).
_GRAMS = {"analyzer": "char_wb", "ngram_range": (4, 4), "n_features": 2**20, "alternate_sign": False, "norm": None}
_VECTORIZER = HashingVectorizer(**_GRAMS)  # counts
_SETS = HashingVectorizer(**_GRAMS, binary=True)  # present or not


def _profiles(texts: Sequence[str]):
    counts = _VECTORIZER.transform(texts).tocsr().astype(np.float64)
    counts.data = 1.0 + np.log(counts.data)  # sublinear: a repeated n-gram counts, but not linearly
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    return counts, norms


def prompt_answer_overlap(prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Per pair, the cosine in [0, 1] of the prompt's and the answer's character 4-gram profiles; NaN where
    either is empty (no word at all)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if not len(prompts):
        return np.zeros(0, dtype=np.float64)
    prompt, prompt_norm = _profiles(prompts)
    answer, answer_norm = _profiles(answers)
    dot = np.asarray(prompt.multiply(answer).sum(axis=1)).ravel()
    both = (prompt_norm > 0) & (answer_norm > 0)
    cosine = np.full(len(prompts), np.nan)
    cosine[both] = dot[both] / (prompt_norm[both] * answer_norm[both])
    return cosine


def answer_overlap(tokenizer, sequences: list[list[int]], labels: list[list[int]]) -> np.ndarray:
    """Per row, the `overlap` signal of its prompt and answer texts: the tokens without and with a label,
    decoded (by any tokenizer with `decode(ids, skip_special_tokens=...)`) without the chat template's special
    tokens."""
    prompts, answers = [], []
    for sequence, row in zip(sequences, labels, strict=True):
        answer = [token for token, label in zip(sequence, row, strict=False) if label != IGNORE_INDEX]
        prompt = [token for token, label in zip(sequence, row, strict=False) if label == IGNORE_INDEX]
        prompts.append(tokenizer.decode(prompt, skip_special_tokens=True))
        answers.append(tokenizer.decode(answer, skip_special_tokens=True))
    return prompt_answer_overlap(prompts, answers)


def answered_turns(messages: Sequence[dict]) -> Iterator[tuple[str, str]]:
    """(question, answer) for each assistant turn that follows a user turn: the answer and the last user turn
    before it (system and tool turns are context, not the question)."""
    question = None
    for message in messages:
        if message["role"] == "user":
            question = message["content"]
        elif message["role"] == "assistant" and question is not None:
            yield question, message["content"]


def prompt_copy(conversations: Sequence[Sequence[dict]]) -> np.ndarray:
    """Per conversation, the highest Jaccard similarity over its assistant turns between the character 4-gram
    sets of the turn and of the user turn it answers: 1 for an answer that repeats its question, near 0 for one
    that shares a few names with it; 0 where no assistant turn answers a user turn."""
    questions, answers, owners = [], [], []
    for row, messages in enumerate(conversations):
        for question, answer in answered_turns(messages):
            questions.append(question)
            answers.append(answer)
            owners.append(row)
    copy = np.zeros(len(conversations), dtype=np.float64)
    if not owners:
        return copy
    question_sets = _SETS.transform(questions).tocsr()
    answer_sets = _SETS.transform(answers).tocsr()
    shared = np.asarray(question_sets.multiply(answer_sets).sum(axis=1)).ravel()
    union = np.asarray(question_sets.sum(axis=1)).ravel() + np.asarray(answer_sets.sum(axis=1)).ravel() - shared
    similarity = np.divide(shared, union, out=np.zeros_like(shared, dtype=np.float64), where=union > 0)
    np.maximum.at(copy, np.asarray(owners), similarity)
    return copy
