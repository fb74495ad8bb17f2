"""Per-sample quality signals from one scoring pass, each oriented so that higher means better.

- `gate`: MyGO's own: the quality gates' mean good_ratio over the answer tokens, averaged over layers;
- `nll`: the warmed-up model's mean negative log-likelihood of the answer tokens (the perplexity filter);
  lower NLL is better, so the signal is -nll;
- `ifd`: instruction-following difficulty (Li et al., 2024): NLL of the answer given the instruction over
  NLL of the answer alone. An answer the instruction does not help predict (IFD near or above 1) is not
  an answer to it; the signal is -ifd. Computed only when `score.ifd` is on (one more decoder pass);
  a sample with no answer token left (truncated away) has no NLL or IFD: it ranks below every other;
- `relevance`: the cosine between what the prompt and the answer are about (their mean input embeddings,
  centred): a fluent answer to another question has a fine NLL and no relation to its instruction;
- `overlap`: the cosine between the character 4-gram profiles of each answer and the conversation before it,
  4-grams weighted by their idf over the pool (`mygo.analysis.text_overlap`), the weakest turn's: what the texts
  share on the surface, rare names and terms most, without a model;
- `prompt_copy`: the Jaccard similarity of the 4-gram sets of an answer and the question it answers
  (`mygo.analysis.text_overlap.prompt_copy`), 1 for the question repeated back, which overlap ranks best. A
  detector of one fault, for `selection.max_prompt_copy`; the signal is -prompt_copy;
- `repetition`: the share of an answer's word 3-grams that occur more than once in it
  (`mygo.analysis.repetition`), near 1 for a phrase looped to the end. A detector of one fault too, for
  `selection.max_repetition`; the signal is -repetition;
- `rank_mean`: the mean of the percentile ranks of several signals (`rank_mean_of`, default all computed but
  the fault detectors prompt_copy and repetition, which say nothing of the answers without the fault: nearly all);
- `rank_min`: the lowest of those ranks: a sample is as good as the detector that likes it least, so what one
  signal flags is not averaged away by the others' approval (a fluent answer to another question: fine NLL,
  no overlap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from mygo.signal_table import COMBINED, LOWER_IS_BETTER, NOT_COMBINED_BY_DEFAULT, SIGNALS, STORED

__all__ = ["COMBINED", "SIGNALS", "STORED", "available_signals", "rank_within", "robust_z_within", "signal_values"]


def available_signals(gate: np.ndarray, stored: dict[str, np.ndarray]) -> list[str]:
    """The signals one can select by: gate, those stored (for at least one sample), and the combinations of two or
    more."""
    names = ["gate"] + [name for name in STORED if name in stored and np.isfinite(stored[name]).any()]
    return names + (list(COMBINED) if len(names) > 1 else [])


def signal_values(
    name: str, gate: np.ndarray, stored: dict[str, np.ndarray], rank_mean_of: Sequence[str] | None = None
) -> np.ndarray:
    """Signal `name` per sample, higher is better; an unavailable signal is an error naming those there are."""
    available = available_signals(gate, stored)
    if name not in available:
        raise ValueError(
            f"selection.quality_signal={name!r} was not computed by the score run; it has {available}"
            + (" (ifd needs score.ifd=true)" if name == "ifd" else "")
        )
    if name == "gate":
        return np.asarray(gate, dtype=np.float64)
    if name in STORED:
        values = np.asarray(stored[name], dtype=np.float64) * (-1.0 if name in LOWER_IS_BETTER else 1.0)
        finite = np.isfinite(values)
        return np.where(finite, values, values[finite].min() - 1.0)  # no answer left: below every other
    singles = [n for n in available if n not in COMBINED]
    parts = list(rank_mean_of) if rank_mean_of else [n for n in singles if n not in NOT_COMBINED_BY_DEFAULT]
    if set(parts) & set(COMBINED) or len(parts) < 2:
        raise ValueError(f"selection.rank_mean_of={parts} must name two or more of {singles}")
    ranks = [rankdata(signal_values(part, gate, stored)) / len(gate) for part in parts]
    return np.mean(ranks, axis=0) if name == "rank_mean" else np.min(ranks, axis=0)


def rank_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value's percentile rank (0, 1] among the values of its group.

    A likelihood signal judges a task's format as much as a sample: short answers (FLAN) and reasoning (CoT)
    have a higher NLL than open QA, clean or not, so over the whole pool the best are one source's easiest.
    Ranked within its source, every source offers its own best, and a bad sample is bad for its kind."""
    values = np.asarray(values, dtype=np.float64)
    ranks = np.empty(len(values), dtype=np.float64)
    for group in np.unique(groups):
        rows = groups == group
        ranks[rows] = rankdata(values[rows]) / rows.sum()
    return ranks


def all_signal_values(gate: np.ndarray, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: signal_values(name, gate, stored) for name in available_signals(gate, stored)}


MAD_TO_SD = 1.4826  # the median absolute deviation of a normal distribution, in standard deviations


def robust_z_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value's distance from its group's median in robust standard deviations (the median absolute deviation
    scaled to a normal's sd). Unlike a rank, it says how far out a sample lies, not where it stands: a group without
    outliers has none beyond a few sd, whatever its size. A group whose values barely vary (MAD 0) has none."""
    values = np.asarray(values, dtype=np.float64)
    z = np.zeros(len(values))
    for group in np.unique(groups):
        members = groups == group
        center = np.median(values[members])
        spread = MAD_TO_SD * np.median(np.abs(values[members] - center))
        if spread > 0:
            z[members] = (values[members] - center) / spread
    return z
