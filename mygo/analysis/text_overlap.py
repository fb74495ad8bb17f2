"""How much an answer's text shares with its context's: the `overlap` and `prompt_copy` signals.

An answer to a question nearly always repeats some of it (its names, its terms, its numbers); an answer that
shares nothing with its instruction answers another one, or is no text at all. The measure is the cosine between
the character 4-gram profiles of the two texts (within word boundaries, hashed, sublinear counts), which needs
no model: it sees spelling, so identifiers and inflections match where a small model's embeddings would not.
The 4-grams are weighted by their inverse document frequency over the pool's messages (`NgramWeights`): sharing
a rare name is evidence that an answer is about its question, sharing "tion" or "the " is not.

`overlap` compares each assistant turn with the whole conversation before it (a follow-up "tell me more" shares
nothing with its answer; the first question does) and a record gets its weakest turn's value: one unrelated
answer makes the conversation a bad example, however good the others.

Overlap rewards what the answer shares with its prompt, so the answer that shares most, the question repeated
back, scores best. `prompt_copy` catches that case: the Jaccard similarity of the character 4-gram *sets* of each
assistant turn and the user turn it answers, 1 for a copy. It is symmetric on purpose: an answer to a
multiple-choice question is contained in its prompt, and an answer to a short question may contain all of it,
but only a copy is both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from mygo.atomic import atomic_path

# Character 4-grams within word boundaries, hashed (collisions are negligible at 2**20 for texts this short).
_GRAMS = {"analyzer": "char_wb", "ngram_range": (4, 4), "n_features": 2**20, "alternate_sign": False, "norm": None}
_VECTORIZER = HashingVectorizer(**_GRAMS)  # counts
_SETS = HashingVectorizer(**_GRAMS, binary=True)  # present or not
_FIT_BATCH = 10_000  # texts hashed at a time while counting document frequencies


class NgramWeights:
    """Inverse document frequencies of the hashed 4-grams over a collection of texts (a pool's messages):
    `log((1 + n) / (1 + df)) + 1`, scikit-learn's smoothed idf, so an unseen 4-gram weighs most and none zero."""

    def __init__(self, document_count: int, document_frequency: np.ndarray):
        if document_frequency.shape != (_GRAMS["n_features"],):
            raise ValueError(f"document frequencies of {document_frequency.shape} features; expected one per hash")
        self.document_count = int(document_count)
        self.document_frequency = document_frequency.astype(np.int64)
        self.idf = np.log((1.0 + document_count) / (1.0 + self.document_frequency)) + 1.0

    @classmethod
    def fit(cls, texts: Iterable[str]) -> NgramWeights:
        frequency, count, texts = np.zeros(_GRAMS["n_features"], dtype=np.int64), 0, iter(texts)
        while batch := list(islice(texts, _FIT_BATCH)):
            present = _SETS.transform(batch).tocsr()
            frequency += np.bincount(present.indices, minlength=len(frequency))
            count += len(batch)
        return cls(count, frequency)

    @classmethod
    def uniform(cls) -> NgramWeights:
        """Every 4-gram weighs the same: the plain cosine of sublinear counts."""
        return cls(0, np.zeros(_GRAMS["n_features"], dtype=np.int64))

    def save(self, path: Path) -> Path:
        seen = np.flatnonzero(self.document_frequency)  # sparse on disk: most hashes never occur
        with atomic_path(path) as temporary, open(temporary, "wb") as file:
            np.savez_compressed(
                file, document_count=self.document_count, indices=seen, frequency=self.document_frequency[seen]
            )
        return path

    @classmethod
    def load(cls, path: Path) -> NgramWeights:
        try:
            with np.load(path, allow_pickle=False) as stored:
                frequency = np.zeros(_GRAMS["n_features"], dtype=np.int64)
                frequency[stored["indices"]] = stored["frequency"]
                return cls(int(stored["document_count"]), frequency)
        except (OSError, KeyError, ValueError, IndexError) as error:
            raise ValueError(f"{path}: not a file of 4-gram weights ({error})") from error


def _profiles(texts: Sequence[str], weights: NgramWeights) -> tuple[csr_matrix, np.ndarray]:
    """Unit rows of idf-weighted sublinear counts, and which rows have any 4-gram at all."""
    counts = _VECTORIZER.transform(texts).tocsr().astype(np.float64)
    counts.data = (1.0 + np.log(counts.data)) * weights.idf[counts.indices]  # a repeated n-gram counts, sublinearly
    return normalize(counts), np.diff(counts.indptr) > 0


def prompt_answer_overlap(
    prompts: Sequence[str], answers: Sequence[str], weights: NgramWeights | None = None
) -> np.ndarray:
    """Per pair, the cosine in [0, 1] of the prompt's and the answer's character 4-gram profiles (weighted by
    `weights`, uniform without); NaN where either is empty (no word at all)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    if not len(prompts):
        return np.zeros(0, dtype=np.float64)
    weights = weights or NgramWeights.uniform()
    prompt, prompt_has = _profiles(prompts, weights)
    answer, answer_has = _profiles(answers, weights)
    cosine = np.asarray(prompt.multiply(answer).sum(axis=1)).ravel()
    return np.where(prompt_has & answer_has, np.clip(cosine, 0.0, 1.0), np.nan)


def message_texts(conversations: Iterable[Sequence[dict]]) -> Iterator[str]:
    """Every message's text: the documents `NgramWeights` counts 4-grams over."""
    for messages in conversations:
        for message in messages:
            yield message["content"]


def contexts_and_answers(messages: Sequence[dict]) -> Iterator[tuple[str, str]]:
    """(the conversation before it, the turn) for each assistant turn that has anything before it."""
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and index:
            yield "\n".join(m["content"] for m in messages[:index]), message["content"]


def _pairs_of(conversations, pairs) -> tuple[list[str], list[str], list[int]]:
    """The (text, answer) pairs that `pairs` finds in each conversation, flattened, with each pair's row."""
    firsts, answers, owners = [], [], []
    for row, messages in enumerate(conversations):
        for first, answer in pairs(messages):
            firsts.append(first)
            answers.append(answer)
            owners.append(row)
    return firsts, answers, owners


def answer_overlap(conversations: Sequence[Sequence[dict]], weights: NgramWeights) -> np.ndarray:
    """Per conversation, the lowest over its assistant turns of the turn's overlap with the conversation before
    it; NaN where no turn has text on both sides."""
    contexts, answers, owners = _pairs_of(conversations, contexts_and_answers)
    lowest = np.full(len(conversations), np.inf)
    if owners:
        per_turn = prompt_answer_overlap(contexts, answers, weights)
        known = ~np.isnan(per_turn)
        np.minimum.at(lowest, np.asarray(owners)[known], per_turn[known])
    return np.where(np.isinf(lowest), np.nan, lowest)


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
    questions, answers, owners = _pairs_of(conversations, answered_turns)
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
