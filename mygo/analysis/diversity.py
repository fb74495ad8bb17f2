"""How diverse a selection is, measured against the pool it was drawn from (arrays only).

MyGO's round robin exists to keep a small selection *omnigenous*; these measures say whether it does, in the
same terms for any selection, so that a run's selection can be compared with a random and a quality top-k
selection of the same size:

- cluster entropy: the entropy of the selection's cluster shares over the pool's (1: as spread as the pool;
  above 1: more even than the pool, as round robin aims for; near 0: a few clusters);
- coverage distance: mean cosine distance from pool samples to their nearest selected sample in the feature
  space the clustering used (lower: every part of the pool has a selected neighbour);
- source mix: each source's share of the selection, and the total variation distance to the pool's shares;
- distinct bigrams: distinct word bigrams over all word bigrams of the selected answers (lexical variety);
- topic coverage: the share of the pool's topics that occur in the selection (pools that name topics).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from mygo.analysis.coverage import unit_rows

MIN_SELECTED = 2  # one sample has no spread to measure
COVERAGE_SAMPLE = 20_000  # pool samples the coverage distance is averaged over (all of a smaller pool)
_CHUNK = 2048  # pool rows per similarity block: bounds memory to chunk x selected floats
_WORD = re.compile(r"\w+")


def entropy(labels: np.ndarray) -> float:
    """Shannon entropy (nats) of the label shares."""
    _, counts = np.unique(labels, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log(shares)).sum())


def cluster_entropy_ratio(labels: np.ndarray, selected: np.ndarray) -> float | None:
    """Entropy of the selection's cluster shares over the pool's; None for a pool of one cluster (nothing to
    spread over). HDBSCAN noise (-1) counts as one group, as round robin treats it."""
    pool = entropy(labels)
    return entropy(labels[selected]) / pool if pool > 0 else None


def coverage_rows(n: int, seed: int = 0, size: int = COVERAGE_SAMPLE) -> np.ndarray:
    """The pool rows coverage is measured on: all of them, or a fixed seeded sample of `size` (the same for
    every selection of a pool, whatever its settings, so that their distances compare)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def coverage_distance(features: np.ndarray, selected: np.ndarray, rows: np.ndarray) -> float:
    """Mean over `rows` of the cosine distance (1 - cosine similarity) to the nearest selected sample.

    A matrix product per block of rows rather than a neighbour index: the selected set is a few percent of the
    pool, so blocks of [chunk, selected] similarities are small and BLAS does the work."""
    chosen = unit_rows(features[selected])
    nearest = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), _CHUNK):
        block = unit_rows(features[rows[start : start + _CHUNK]])
        nearest[start : start + len(block)] = (block @ chosen.T).max(axis=1)
    return float(np.mean(1.0 - np.clip(nearest, -1.0, 1.0)))


def shares(values: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Share of each value among the rows in `mask` (all rows without one)."""
    chosen = values if mask is None else values[mask]
    names, counts = np.unique(chosen.astype(str), return_counts=True)
    return {str(name): float(count) / len(chosen) for name, count in zip(names, counts, strict=True)}


def mix_distance(values: np.ndarray, selected: np.ndarray) -> float:
    """Total variation distance between the selection's and the pool's shares of `values` (0: the same mix)."""
    pool, chosen = shares(values), shares(values, selected)
    return 0.5 * sum(abs(chosen.get(name, 0.0) - share) for name, share in pool.items())


def topic_coverage(topics: Sequence[object], selected: np.ndarray) -> float | None:
    """Share of the pool's topics that occur in the selection; None when no sample names a topic (a missing
    topic is None or NaN, and only named topics count)."""
    named = np.array([isinstance(topic, str) for topic in topics], dtype=bool)
    if not named.any():
        return None
    values = np.asarray(topics, dtype=object)
    pool = set(values[named])
    return len(set(values[named & selected])) / len(pool)


def distinct_bigram_ratio(texts: Iterable[str]) -> float | None:
    """Distinct word bigrams over all word bigrams (lower-cased words, within each text); None without any."""
    distinct: set[tuple[str, str]] = set()
    total = 0
    for text in texts:
        words = _WORD.findall(text.lower())
        distinct.update(zip(words, words[1:], strict=False))
        total += max(0, len(words) - 1)
    return len(distinct) / total if total else None


def diversity_metrics(
    selected: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray,
    rows: np.ndarray,
    sources: np.ndarray,
    answers: Iterable[str],
    topics: Sequence[object] | None = None,
) -> dict[str, float]:
    """Every measure of one selection (a boolean mask over the pool), unprefixed: `cluster_entropy`,
    `coverage_distance`, `source_mix_distance`, `source_share/<source>`, `distinct_bigrams`, `topic_coverage`.
    A measure that is undefined here (one cluster, no bigram, no topics) is left out."""
    selected = np.asarray(selected, dtype=bool)
    if selected.sum() < MIN_SELECTED:
        raise ValueError(f"a selection of {int(selected.sum())} sample(s) has no diversity to measure")
    measured: dict[str, float | None] = {
        "cluster_entropy": cluster_entropy_ratio(labels, selected),
        "coverage_distance": coverage_distance(features, selected, rows),
        "source_mix_distance": mix_distance(sources, selected),
        "distinct_bigrams": distinct_bigram_ratio(answers),
        "topic_coverage": topic_coverage(topics, selected) if topics is not None else None,
    }
    chosen = shares(sources, selected)
    measured |= {f"source_share/{name}": chosen.get(name, 0.0) for name in shares(sources)}
    return {name: float(value) for name, value in measured.items() if value is not None}
