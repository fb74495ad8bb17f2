"""The per-sample quality signals, declared once: what each is, where it is computed, which way is better, and the
selection knob that bounds it when it detects one fault. The score stage stores them, the selector serves them, the
select stage ranks, vetoes and limits by them, and the config schema takes its choices from here
(`mygo.analysis.quality_signals` computes and orients them; docs/stages/select.md says what each buys).

Adding a signal: its row here, its function under `mygo/analysis/` (called by `mygo.analysis.text_signals` or the
scoring pass), and a bump of `score.SIGNALS_VERSION` so that old shards are not continued.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signal:
    name: str
    computed_by: str  # gates | model (the warmed-up router's pass) | text (no model)
    lower_is_better: bool
    fault_limit: str | None = None  # selection.<key> bounding it: a detector of one fault, left out of rank_mean
    needs: str | None = None  # the setting that computes it (off by default)


TABLE = (
    Signal("gate", "gates", lower_is_better=False),  # MyGO's: the quality gates' good ratio
    Signal("nll", "model", lower_is_better=True),  # the answer's mean NLL: the perplexity filter
    Signal("relevance", "model", lower_is_better=False),  # prompt/answer embedding cosine
    Signal("overlap", "text", lower_is_better=False),  # idf-weighted character 4-gram cosine
    Signal("prompt_copy", "text", lower_is_better=True, fault_limit="max_prompt_copy"),  # the question repeated
    Signal("repetition", "text", lower_is_better=True, fault_limit="max_repetition"),  # an answer in a loop
    Signal("ifd", "model", lower_is_better=True, needs="score.ifd"),  # instruction-following difficulty
)
BY_NAME = {signal.name: signal for signal in TABLE}
STORED = tuple(signal.name for signal in TABLE if signal.computed_by != "gates")  # kept by score beside the gates
COMBINED = ("rank_mean", "rank_min")  # of the percentile ranks of several signals
SIGNALS = (*BY_NAME, *COMBINED)  # what selection.quality_signal may name
LOWER_IS_BETTER = frozenset(signal.name for signal in TABLE if signal.lower_is_better)
FAULT_LIMITS = {signal.fault_limit: signal.name for signal in TABLE if signal.fault_limit}  # selection key -> signal
NOT_COMBINED_BY_DEFAULT = frozenset(FAULT_LIMITS.values())  # fault detectors say nothing of most answers
