"""Arms of a comparison (the selection, its controls), each evaluated over seeds: means, standard errors, deltas.

Pure: metric dictionaries in, numbers out. The standard error is over seeds (sample standard deviation over
sqrt(n)); with one seed there is none, so a difference from one seed is reported without a claim of
significance. Deltas pair the arms seed by seed (the same fine-tuning seed, so the seed's own luck cancels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# eval/<task>/<split>/<metric>: the figures an evaluate run logs (subject accuracies and stderrs left out)
EVAL_DEPTH = 3
# The headline figures, printed in summaries and plotted: accuracy for choice tasks; for likelihood tasks bits per
# byte pooled over every answer byte (`bits_per_byte`: the steadiest over training seeds, README "Does the
# selection help?") and per answer (`bpb`, with a standard error over answers).
HEADLINE_METRICS = ("/acc", "/bits_per_byte", "/bpb")


def eval_figures(metrics: dict[str, float]) -> dict[str, float]:
    """An evaluate run's headline figures: `eval/<task>/<split>/<metric>` without the per-subject and stderr ones."""
    return {
        key: value
        for key, value in metrics.items()
        if key.startswith("eval/") and key.count("/") == EVAL_DEPTH and not key.endswith("_stderr")
    }


@dataclass(frozen=True)
class Estimate:
    mean: float
    stderr: float  # NaN with fewer than two values
    n: int

    def text(self, digits: int = 4) -> str:
        if math.isnan(self.stderr):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.stderr:.{digits}f}"

    def ratio(self) -> float:
        """The mean in standard errors (how far from zero a delta is); NaN without a standard error."""
        if math.isnan(self.stderr):
            return math.nan
        if self.stderr == 0:
            return math.copysign(math.inf, self.mean) if self.mean else 0.0
        return self.mean / self.stderr


def estimate(values: list[float]) -> Estimate:
    n = len(values)
    if n == 0:
        raise ValueError("no values to estimate from")
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, math.nan, n)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    stderr = math.sqrt(variance / n)
    # equal values can leave float dust (1e-17) that would read as a difference of 1e15 standard errors
    if stderr <= 1e-12 * max(1.0, abs(mean)):
        stderr = 0.0
    return Estimate(mean, stderr, n)


def arm_estimates(arms: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, Estimate]]:
    """arm -> seed -> figures  =>  arm -> figure -> estimate over the seeds that logged it."""
    out: dict[str, dict[str, Estimate]] = {}
    for arm, by_seed in arms.items():
        keys = sorted({key for figures in by_seed.values() for key in figures})
        out[arm] = {key: estimate([f[key] for f in by_seed.values() if key in f]) for key in keys}
    return out


def paired_deltas(arms: dict[str, dict[int, dict[str, float]]], of: str, against: str) -> dict[str, Estimate]:
    """figure -> estimate of (arm `of` minus arm `against`), paired by seed.

    An arm with a single entry (the base model, evaluated once) pairs with every seed of the other."""
    mine, theirs = arms[of], arms[against]
    deltas: dict[str, Estimate] = {}
    for key in sorted({k for figures in mine.values() for k in figures}):
        differences = []
        for seed, figures in mine.items():
            other = theirs.get(seed) if len(theirs) > 1 else next(iter(theirs.values()), None)
            if other is not None and key in figures and key in other:
                differences.append(figures[key] - other[key])
        if differences:
            deltas[key] = estimate(differences)
    return deltas


def lower_is_better(figure: str) -> bool:
    """Likelihood figures (bits per byte, NLL, perplexity) fall as the model gets better; accuracies rise."""
    metric = figure.rsplit("/", 1)[-1]
    return metric in {"bpb", "nll", "bits_per_byte", "perplexity", "word_perplexity", "byte_perplexity"}


# Figures over groups of tasks, logged by evaluate beside each task's own (and so compared over seeds like them).
OUT_OF_DOMAIN = "out_of_domain"  # the mean over the out-of-domain tasks
ALL_DOMAINS = "all_domains"  # the mean of the in-domain mean and the out-of-domain mean: each side weighs half
DOMAIN_METRICS = ("bits_per_byte", "bpb", "nll", "acc")


def _group_mean(metrics: dict[str, float], tasks: list[str], split: str, metric: str) -> float | None:
    """The mean of `eval/<task>/<split>/<metric>` over `tasks`; None unless every task logged it (a mean over some
    of them would read as the whole group's)."""
    values = [metrics.get(f"eval/{task}/{split}/{metric}") for task in tasks]
    if not values or any(value is None for value in values):
        return None
    return sum(values) / len(values)


def domain_means(metrics: dict[str, float], in_domain: list[str], out_of_domain: list[str]) -> dict[str, float]:
    """`eval/out_of_domain/<split>/<metric>` over the out-of-domain tasks, and `eval/all_domains/<split>/<metric>`:
    the in-domain tasks' mean and the out-of-domain mean, weighed alike, so that a setting chosen on it cannot win
    by fitting the pool's own domain alone."""
    splits = sorted({key.split("/")[2] for key in eval_figures(metrics)})
    means: dict[str, float] = {}
    for split in splits:
        for metric in DOMAIN_METRICS:
            outside = _group_mean(metrics, out_of_domain, split, metric)
            if outside is None:
                continue
            means[f"eval/{OUT_OF_DOMAIN}/{split}/{metric}"] = outside
            inside = _group_mean(metrics, in_domain, split, metric)
            if inside is not None:
                means[f"eval/{ALL_DOMAINS}/{split}/{metric}"] = (inside + outside) / 2
    return means
