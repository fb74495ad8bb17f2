"""How much an answer's text shares with its prompt's: the `overlap` quality signal.

An answer to a question nearly always repeats some of it (its names, its terms, its numbers); an answer that
shares nothing with its instruction answers another one, or is no text at all. The measure is the cosine between
the character 4-gram profiles of the two texts (within word boundaries, hashed, sublinear counts), which needs
no model: it sees spelling, so identifiers and inflections match where a small model's embeddings would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer

from mygo.labels import IGNORE_INDEX

_VECTORIZER = HashingVectorizer(
    analyzer="char_wb",
    ngram_range=(4, 4),
    n_features=2**20,
    alternate_sign=False,
    norm=None,
    lowercase=True,
)


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
