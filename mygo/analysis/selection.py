"""Choose a subset of the scored pool: round robin across clusters (the method) or two baselines.

Round robin is what makes the subset diverse as well as good: every cluster gives its best sample before any
cluster gives its second, so a large cluster of similar high-quality samples cannot crowd out the others.
The baselines isolate the two ingredients: `quality_topk` (quality only) and `random` (neither).

Everything is vectorised over rows (sorts and bincounts), so 270k rows select in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES = ("round_robin", "quality_topk", "random")
# In which order a cluster gives its members to round robin: best quality first (MyGO), or in a seeded random
# order (quality then only filters, through `quality_floor`: a likelihood-based signal ranks short, easy answers
# first, so best-first fills a budget with what teaches least).
WITHIN_CLUSTER = ("quality", "random")
# How many picks each cluster gets: the same number (MyGO's round robin: rare kinds of data count as much as
# common ones), or a number proportional to its size (stratified sampling: every cluster is covered, but a small
# cluster of outliers, where broken samples gather, gets no more than its share).
CLUSTER_QUOTAS = ("equal", "proportional")


@dataclass
class Selection:
    indices: np.ndarray  # [count] int64 row indices into the pool, in the order they were chosen
    rounds: np.ndarray  # [n] int64: the round in which each row was chosen (0-based), -1 if not chosen
    strategy: str


def target_count(n: int, percentage: float) -> int:
    """round(n * percentage), at least 1."""
    if not 0 < percentage <= 1:
        raise ValueError(f"percentage must be in (0, 1], got {percentage}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return max(1, round(n * percentage))


def select(
    strategy: str,
    quality: np.ndarray,
    labels: np.ndarray,
    percentage: float,
    seed: int = 0,
    within_cluster: str = "quality",
    cluster_quota: str = "equal",
) -> Selection:
    """Choose target_count(n, percentage) rows with `strategy`; the same inputs and seed give the same selection.

    quality: [n] higher is better; labels: [n] cluster ids >= 0, or -1 for HDBSCAN noise (see `round_robin`).
    `seed` is used by `random`, and by round robin with `within_cluster="random"`; `cluster_quota` is round
    robin's (`CLUSTER_QUOTAS`).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not valid; choose one of {list(STRATEGIES)}")
    if within_cluster not in WITHIN_CLUSTER:
        raise ValueError(f"within_cluster={within_cluster!r} is not valid; choose one of {list(WITHIN_CLUSTER)}")
    if cluster_quota not in CLUSTER_QUOTAS:
        raise ValueError(f"cluster_quota={cluster_quota!r} is not valid; choose one of {list(CLUSTER_QUOTAS)}")
    quality, labels = _check_inputs(quality, labels)
    count = target_count(len(quality), percentage)
    if strategy == "round_robin":
        if within_cluster == "random":  # a cluster's members in a seeded random order: quality is not a ranking
            order = np.random.default_rng(seed).permutation(len(quality)).astype(np.float64)
            selection = round_robin(-order, labels, count, cluster_quota)
            return Selection(selection.indices, selection.rounds, strategy)
        return round_robin(quality, labels, count, cluster_quota)
    if strategy == "quality_topk":
        chosen = _by_quality(quality, np.arange(len(quality)))[:count]
    else:
        chosen = np.random.default_rng(seed).choice(len(quality), size=count, replace=False).astype(np.int64)
    return Selection(chosen, _rounds(len(quality), chosen, 0), strategy)


def round_robin(quality: np.ndarray, labels: np.ndarray, count: int, quota: str = "equal") -> Selection:
    """Round r takes the r-th best member (by quality; ties by row index) of every cluster that has one.

    Within a round clusters are visited by id. HDBSCAN noise (label -1) is one extra group visited last: its
    points are neither dropped (they may be good, just unusual) nor each made a cluster of its own (which
    would put all of them in round 0). The last round is usually partial: it takes that round's candidates
    best quality first, so where it stops depends on quality rather than on cluster ids.

    `quota="proportional"`: a group leaves the rounds once it has its share of `count` (by its size, largest
    remainders rounded up), so the selection's cluster mix is the pool's.
    """
    quality, labels = _check_inputs(quality, labels)
    n = len(quality)
    if not 1 <= count <= n:
        raise ValueError(f"count={count} must be in [1, n={n}]")
    group = np.where(labels < 0, labels.max() + 1, labels)  # noise after every cluster
    order = np.lexsort((np.arange(n), -quality, group))  # by group, best first, then row index
    sorted_group = group[order]
    group_start = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[group_start, n])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(group_start, sizes)  # position within its group = its round
    if quota == "proportional":
        chosen = np.flatnonzero(rank < _apportion(count, sizes)[np.searchsorted(np.unique(group), group)])
        chosen = chosen[np.lexsort((group[chosen], rank[chosen]))]
        rounds = np.full(n, -1, dtype=np.int64)
        rounds[chosen] = rank[chosen]
        return Selection(chosen.astype(np.int64), rounds, "round_robin")
    per_round = np.cumsum(np.bincount(rank))
    full_rounds = int(np.searchsorted(per_round, count, side="right"))
    full = np.flatnonzero(rank < full_rounds)
    chosen = full[np.lexsort((group[full], rank[full]))]  # by round, then cluster id
    if len(chosen) < count:
        candidates = np.flatnonzero(rank == full_rounds)
        best = candidates[np.lexsort((group[candidates], -quality[candidates]))][: count - len(chosen)]
        chosen = np.concatenate([chosen, best])
    rounds = np.full(n, -1, dtype=np.int64)
    rounds[chosen] = rank[chosen]
    return Selection(chosen.astype(np.int64), rounds, "round_robin")


def _apportion(count: int, sizes: np.ndarray) -> np.ndarray:
    """`count` split over groups in proportion to `sizes`, by largest remainder (ties: the larger group first)."""
    exact = count * sizes / sizes.sum()
    shares = np.floor(exact).astype(np.int64)
    extra = np.lexsort((-sizes, -(exact - shares)))[: count - shares.sum()]
    shares[extra] += 1
    return shares


def _check_inputs(quality: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    quality = np.asarray(quality, dtype=np.float64)
    labels = np.asarray(labels)
    if quality.ndim != 1 or len(quality) == 0:
        raise ValueError(f"quality must be a non-empty [n] array, got shape {quality.shape}")
    if labels.shape != quality.shape:
        raise ValueError(f"labels shape {labels.shape} does not match quality shape {quality.shape}")
    if not np.isfinite(quality).all():
        raise ValueError("quality contains NaN or infinite values")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < -1:
        raise ValueError("labels must be integers >= -1 (-1 = noise)")
    return quality, labels.astype(np.int64, copy=False)


def _by_quality(quality: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """rows sorted best quality first, ties by row index."""
    return rows[np.lexsort((rows, -quality[rows]))].astype(np.int64)


def _rounds(n: int, chosen: np.ndarray, round_: int) -> np.ndarray:
    rounds = np.full(n, -1, dtype=np.int64)
    rounds[chosen] = round_
    return rounds
