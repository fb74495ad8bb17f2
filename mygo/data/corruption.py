"""Generic corruptions of encoded conversations, applied on the fly to teach the quality gate what bad data is.

A self-supervised target for the gate, in the spirit of ELECTRA's replaced-token detection: part of
every warmup batch is corrupted, and the gate learns to send the answer tokens of corrupted samples
to the trash expert while clean answers keep the MoE output. The corruptions are generic operations
on token ids of the answer (the positions that carry labels), chosen from first principles of what
breaks an instruction/answer pair, not from any pool's own noise:

- `token_substitution`: a random share of answer tokens replaced by random vocabulary tokens (garbage);
- `token_permutation`: answer tokens in a random order (right words, no syntax);
- `answer_swap`: the answer of another sample of the batch (fluent, but not an answer to this prompt);
- `span_repetition`: a short span of the answer repeated to its length (degenerate output);
- `truncation`: the answer cut short after a few tokens (unfinished output).

Every sample is kept (labels of a corrupted sample are masked, so the LM loss never learns from it)
and gains `quality_targets`: 1 on the answer tokens of a clean sample, 0 on those of a corrupted one,
-100 (ignored) elsewhere: prompt tokens say nothing about the answer's quality.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mygo.data.chat import IGNORE_INDEX


@dataclass(frozen=True)
class Vocabulary:
    size: int
    special_ids: frozenset[int]  # never produced by a corruption, never moved (EOS ends a turn)

    def random_tokens(self, rng: np.random.Generator, count: int) -> np.ndarray:
        tokens = rng.integers(0, self.size, size=count)
        special = np.isin(tokens, list(self.special_ids))
        while special.any():
            tokens[special] = rng.integers(0, self.size, size=int(special.sum()))
            special = np.isin(tokens, list(self.special_ids))
        return tokens


def _answer_positions(labels: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """Positions of answer content: labelled tokens other than the special ones (EOS) that end turns."""
    return np.flatnonzero((labels != IGNORE_INDEX) & ~np.isin(labels, list(vocabulary.special_ids)))


# A corruption maps (input_ids, answer positions, rng, donor answer tokens, vocabulary) to new input_ids of
# the same length and the positions to drop (None: none).
Corruption = Callable[
    [np.ndarray, np.ndarray, np.random.Generator, np.ndarray, Vocabulary], tuple[np.ndarray, np.ndarray | None]
]


def token_substitution(ids, positions, rng, donor, vocabulary):
    chosen = positions[rng.random(len(positions)) < rng.uniform(0.3, 1.0)]
    if len(chosen) == 0:
        chosen = positions[rng.integers(len(positions), size=1)]
    ids = ids.copy()
    ids[chosen] = vocabulary.random_tokens(rng, len(chosen))
    return ids, None


def token_permutation(ids, positions, rng, donor, vocabulary):
    ids = ids.copy()
    ids[positions] = ids[positions][rng.permutation(len(positions))]
    return ids, None


def answer_swap(ids, positions, rng, donor, vocabulary):
    ids = ids.copy()
    ids[positions] = np.resize(donor, len(positions))  # the donor's answer, cut or repeated to this length
    return ids, None


def span_repetition(ids, positions, rng, donor, vocabulary):
    width = int(rng.integers(1, min(3, len(positions)) + 1))
    start = int(rng.integers(0, len(positions) - width + 1))
    ids = ids.copy()
    ids[positions] = np.resize(ids[positions[start : start + width]], len(positions))
    return ids, None


def truncation(ids, positions, rng, donor, vocabulary):
    # Keep the first few tokens of the last answer; what ends the turn (the EOS) follows at once.
    breaks = np.flatnonzero(np.diff(positions) > 1)
    last_answer = positions[breaks[-1] + 1 :] if len(breaks) else positions
    keep = int(rng.integers(1, max(1, len(last_answer) // 3) + 1))
    if keep >= len(last_answer):  # too short to cut: garbage instead
        return token_substitution(ids, positions, rng, donor, vocabulary)
    return ids, last_answer[keep:]


CORRUPTIONS: dict[str, Corruption] = {
    "token_substitution": token_substitution,
    "token_permutation": token_permutation,
    "answer_swap": answer_swap,
    "span_repetition": span_repetition,
    "truncation": truncation,
}


def check_corruptions(fraction: float, kinds: Sequence[str]) -> None:
    """The corruption settings (`corruption.fraction`, `corruption.kinds`), or an error naming the bad one."""
    if not 0 < fraction < 1:
        raise ValueError(f"corruption.fraction must be in (0, 1), got {fraction}")
    unknown = [kind for kind in kinds if kind not in CORRUPTIONS]
    if unknown or not kinds:
        raise ValueError(f"corruption.kinds: {unknown or 'empty'} not valid; choose from {list(CORRUPTIONS)}")


def corrupt_sample(
    input_ids: Sequence[int],
    labels: Sequence[int],
    kind: str,
    rng: np.random.Generator,
    donor: np.ndarray,
    vocabulary: Vocabulary,
) -> tuple[list[int], list[int], list[float]]:
    """(input_ids, labels, quality_targets) of the sample corrupted by `kind`; unchanged when it has no answer."""
    ids, labels = np.asarray(input_ids), np.asarray(labels)
    positions = _answer_positions(labels, vocabulary)
    if len(positions) == 0:
        return clean_sample(input_ids, labels)
    corrupted, dropped = CORRUPTIONS[kind](ids, positions, rng, donor, vocabulary)
    answer = labels != IGNORE_INDEX
    if dropped is not None:
        corrupted, answer = np.delete(corrupted, dropped), np.delete(answer, dropped)
    targets = np.where(answer, 0.0, float(IGNORE_INDEX))
    return corrupted.tolist(), [IGNORE_INDEX] * len(corrupted), targets.tolist()


def clean_sample(input_ids: Sequence[int], labels: Sequence[int]) -> tuple[list[int], list[int], list[float]]:
    labels = list(labels)
    targets = [1.0 if label != IGNORE_INDEX else float(IGNORE_INDEX) for label in labels]
    return list(input_ids), labels, targets


def corrupt_batch(
    features: Sequence[dict],
    fraction: float,
    kinds: Sequence[str],
    rng: np.random.Generator,
    vocabulary: Vocabulary,
) -> tuple[list[dict], list[str | None]]:
    """Each sample corrupted with probability `fraction` by a kind drawn uniformly; returns the samples
    (input_ids, labels, quality_targets) and the kind applied to each (None: clean)."""
    answers = [np.asarray(f["input_ids"])[_answer_positions(np.asarray(f["labels"]), vocabulary)] for f in features]
    out, applied = [], []
    for index, feature in enumerate(features):
        kind = kinds[int(rng.integers(len(kinds)))] if rng.random() < fraction else None
        others = [i for i in range(len(features)) if i != index and len(answers[i])]
        if kind == "answer_swap" and not others:
            kind = None
        if kind is None:
            ids, labels, targets = clean_sample(feature["input_ids"], feature["labels"])
        else:
            donor = answers[others[int(rng.integers(len(others)))]] if others else answers[index]
            ids, labels, targets = corrupt_sample(feature["input_ids"], feature["labels"], kind, rng, donor, vocabulary)
        out.append({"input_ids": ids, "labels": labels, "quality_targets": targets})
        applied.append(kind)
    return out, applied
