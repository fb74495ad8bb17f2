"""The signals read from a record's text rather than from the model: what the score stage stores and the served
selector returns beside the model's, computed in one place so that the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mygo.analysis.repetition import answer_repetition
from mygo.analysis.text_overlap import NgramWeights, answer_overlap, prompt_copy


def text_signals(conversations: Sequence[Sequence[dict]], weights: NgramWeights) -> dict[str, np.ndarray]:
    """Per conversation, `overlap` (4-grams weighted by `weights`, the scored pool's idf), `prompt_copy` and
    `repetition`."""
    return {
        "overlap": answer_overlap(conversations, weights),
        "prompt_copy": prompt_copy(conversations),
        "repetition": answer_repetition(conversations),
    }
