"""How much an answer repeats itself: the `repetition` signal.

Degenerate repetition, a phrase looped to the end of the answer, is the best-known failure of generated text,
and pretraining-data pipelines filter it by the share of repeated word n-grams (Gopher's quality rules, Rae et
al., 2021). Per assistant turn: the share of its word 3-grams that occur more than once in it; a record gets its
worst turn. A restatement repeats a phrase once and stays low (clean answers in the demo pool peak near 0.6
only when a short answer repeats its first sentence); a loop repeats it to the end and nears 1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_N = 3  # word 3-grams: a repeated pair of words is ordinary prose, a repeated triple already a pattern


def repeated_share(text: str) -> float:
    """The share of the text's word 3-grams that occur more than once in it (0 with fewer than two 3-grams)."""
    words = _WORD.findall(text.lower())
    grams = Counter(zip(*(words[i:] for i in range(_N)), strict=False))
    total = sum(grams.values())
    if total < 2:
        return 0.0
    return sum(count for count in grams.values() if count > 1) / total


def answer_repetition(conversations: Sequence[Sequence[dict]]) -> np.ndarray:
    """Per conversation, the highest `repeated_share` over its assistant turns (0 without one)."""
    return np.array(
        [
            max((repeated_share(m["content"]) for m in messages if m["role"] == "assistant"), default=0.0)
            for messages in conversations
        ],
        dtype=np.float64,
    )
