"""Choose a subset of the scored pool: round robin across clusters (the method) or two baselines.

Round robin is what makes the subset diverse as well as good: every cluster gives its best sample before any
cluster gives its second, so a large cluster of similar high-quality samples cannot crowd out the others.
The baselines isolate the two ingredients: `quality_topk` (quality only) and `random` (neither).

`select_by_source` splits the budget over the pool's sources first (`SOURCE_BALANCES`, per-source caps) and
runs the strategy within each source on its share; clusters stay global, so a source's round robin visits
the clusters its rows fall in.

Everything is vectorised over rows (sorts and bincounts), so 270k rows select in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mygo.analysis.coverage import Text, covering_picks

STRATEGIES = ("round_robin", "quality_topk", "random")
# In which order a cluster gives its members to round robin: best quality first (MyGO), or in a seeded random
# order (quality then only filters, through `quality_floor`: a likelihood-based signal ranks short, easy answers
# first, so best-first fills a budget with what teaches least), or the member that best covers its cluster with the
# least repeated text (`mygo.analysis.coverage`; needs the features, and the text embedding for novelty).
WITHIN_CLUSTER = ("quality", "random", "coverage")
# How many picks each cluster gets: the same number (MyGO's round robin: rare kinds of data count as much as
# common ones), or a number proportional to its size (stratified sampling: every cluster is covered, but a small
# cluster of outliers, where broken samples gather, gets no more than its share).
CLUSTER_QUOTAS = ("equal", "proportional")
# How the budget is split over sources (a record's `dataset`): not at all (the strategy over the whole pool), by
# each source's share of the pool, or the same for every source (what a small source cannot fill goes to the
# others).
SOURCE_BALANCES = ("none", "proportional", "equal")


@dataclass
class Selection:
    indices: np.ndarray  # [count] int64 row indices into the pool, in the order they were chosen
    rounds: np.ndarray  # [n] int64: the round in which each row was chosen (0-based), -1 if not chosen
    strategy: str


@dataclass(frozen=True)
class Order:
    """How a strategy orders and spreads its picks: `select`'s settings beyond the rows, their quality and clusters.

    `seed`: the random baseline's draw, and round robin's order under `within_cluster="random"`; `within_cluster`
    (`WITHIN_CLUSTER`) and `cluster_quota` (`CLUSTER_QUOTAS`): round robin's; `features` ([n, d], the clustering's)
    and `text` ([n, t]): what `within_cluster="coverage"` covers and compares; `ground` ((features [N, d], rows [m],
    labels [m]) of the whole pool, not sliced by `of_rows`): what its picks represent instead of the rows
    themselves."""

    seed: int = 0
    within_cluster: str = "quality"
    cluster_quota: str = "equal"
    features: np.ndarray | None = None
    text: Text | None = None
    ground: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def of_rows(self, rows: np.ndarray) -> Order:
        """The same order for a subset of the rows: the per-row arrays sliced to them."""
        return replace(
            self,
            features=None if self.features is None else self.features[rows],
            text=None if self.text is None else self.text[rows],
        )

    def select(self, strategy: str, quality: np.ndarray, labels: np.ndarray, count: int) -> Selection:
        return select(
            strategy,
            quality,
            labels,
            count=count,
            seed=self.seed,
            within_cluster=self.within_cluster,
            cluster_quota=self.cluster_quota,
            features=self.features,
            text=self.text,
            ground=self.ground,
        )


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
    percentage: float | None = None,
    seed: int = 0,
    within_cluster: str = "quality",
    cluster_quota: str = "equal",
    count: int | None = None,
    features: np.ndarray | None = None,
    text: Text | None = None,
    ground: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Choose `count` rows (or target_count(n, percentage): give one of them) with `strategy`; the same inputs and
    seed give the same selection.

    quality: [n] higher is better; labels: [n] cluster ids >= 0, or -1 for HDBSCAN noise (see `round_robin`).
    `seed` is used by `random`, and by round robin with `within_cluster="random"`; `cluster_quota` is round
    robin's (`CLUSTER_QUOTAS`). `within_cluster="coverage"` needs `features` ([n, d], the clustering's) and takes
    `text` ([n, t] unit rows of `mygo.analysis.coverage.text_embedding`; None: coverage alone) and `ground` (see
    `covering_round_robin`).
    """
    if (percentage is None) == (count is None):
        raise ValueError(f"give one of percentage and count, got percentage={percentage}, count={count}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not valid; choose one of {list(STRATEGIES)}")
    if within_cluster not in WITHIN_CLUSTER:
        raise ValueError(f"within_cluster={within_cluster!r} is not valid; choose one of {list(WITHIN_CLUSTER)}")
    if cluster_quota not in CLUSTER_QUOTAS:
        raise ValueError(f"cluster_quota={cluster_quota!r} is not valid; choose one of {list(CLUSTER_QUOTAS)}")
    quality, labels = _check_inputs(quality, labels)
    if count is None:
        count = target_count(len(quality), percentage)
    elif not 1 <= count <= len(quality):
        raise ValueError(f"count={count} must be in [1, n={len(quality)}]")
    if strategy == "round_robin":
        if within_cluster == "coverage":
            return covering_round_robin(labels, count, cluster_quota, features, text, seed, ground)
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


def _noise_last(labels: np.ndarray) -> np.ndarray:
    """Round robin's groups: the cluster ids, with HDBSCAN noise (-1) one extra group after every cluster."""
    return np.where(labels < 0, labels.max() + 1, labels)


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
    group = _noise_last(labels)
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


def covering_round_robin(
    labels: np.ndarray,
    count: int,
    quota: str,
    features: np.ndarray | None,
    text: Text | None,
    seed: int,
    ground: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Round robin in which each cluster's turn gives the member that best covers it (`covering_picks`); the
    quotas are round robin's (`quota`: equal, or by size), clusters visited by id, HDBSCAN noise last.

    `ground` ((the pool's features, the rows of it to represent, their labels), a superset of these rows, e.g. the
    pool less its vetoes when these rows are a quality band): what the picks cover, and under
    `quota="proportional"` what a cluster's share follows (as far as its rows can fill it), so a cluster the band
    has thinned keeps its place in the selection."""
    if features is None or len(features) != len(labels):
        raise ValueError("within_cluster='coverage' needs the clustering's features, one row per sample")
    if ground is None:
        group, ground_group = _noise_last(labels), None
    else:  # one id for HDBSCAN noise in both
        noise = int(max(labels.max(initial=-1), ground[2].max(initial=-1))) + 1
        group, ground_group = np.where(labels < 0, noise, labels), np.where(ground[2] < 0, noise, ground[2])
    names, sizes = np.unique(group, return_counts=True)
    if quota == "proportional" and ground is not None:
        shares = apportion_capped(count, _counts_of(names, ground_group).astype(np.float64), sizes)
    elif quota == "proportional":
        shares = _apportion(count, sizes)
    else:
        shares = apportion_capped(count, np.ones(len(sizes)), sizes)
    quotas = dict(zip(names.tolist(), shares.tolist(), strict=True))
    ground = None if ground is None else (ground[0], ground[1], ground_group)
    chosen, picked_rounds = covering_picks(features, group, quotas, text, seed, ground=ground)
    rounds = np.full(len(labels), -1, dtype=np.int64)
    rounds[chosen] = picked_rounds
    return Selection(chosen, rounds, "round_robin")


def select_by_source(
    strategy: str,
    quality: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    count: int,
    balance: str = "none",
    caps: dict[str, int] | None = None,
    pool_sources: np.ndarray | None = None,
    order: Order | None = None,
) -> Selection:
    """`count` rows, the budget split over `sources` ([n] names) by `balance` and `caps` (source -> most rows),
    the strategy (`select`, in `order`) run within each source on its share.

    `pool_sources`: the sources of the whole pool when these rows are part of it (a quality band): proportional
    budgets follow the pool's shares, not the band's. With `balance="none"` and no cap this is `select` itself;
    with caps, the strategy runs over the sources still under their cap until none is over, and each capped
    source gets its cap, chosen by the strategy within it. Rows are in the order chosen: by round, then source.
    """
    if balance not in SOURCE_BALANCES:
        raise ValueError(f"balance={balance!r} is not valid; choose one of {list(SOURCE_BALANCES)}")
    sources = np.asarray(sources).astype(str)
    if sources.shape != np.shape(quality):
        raise ValueError(f"sources shape {sources.shape} does not match quality shape {np.shape(quality)}")
    caps, order = caps or {}, order or Order()
    if balance == "none" and not caps:
        return order.select(strategy, quality, labels, count)
    names, of_row, capacity = source_capacity(sources, caps, count)
    if capacity.sum() < count:
        raise ValueError(f"the source caps allow at most {int(capacity.sum())} of the {count} samples to select")
    if balance == "none":
        budgets, free = _capped_budgets(strategy, quality, labels, of_row, count, capacity, order)
    else:
        pool = sources if pool_sources is None else np.asarray(pool_sources).astype(str)
        weights = np.ones(len(names)) if balance == "equal" else _counts_of(names, pool).astype(np.float64)
        budgets, free = apportion_capped(count, weights, capacity), None
    parts = [free] if free is not None else []
    for source in np.flatnonzero(budgets):
        rows = np.flatnonzero(of_row == source)
        inner = order.of_rows(rows).select(strategy, quality[rows], labels[rows], int(budgets[source]))
        parts.append((rows[inner.indices], inner.rounds[inner.indices]))
    chosen = np.concatenate([rows for rows, _ in parts])
    chosen_rounds = np.concatenate([rounds for _, rounds in parts])
    by_round = np.argsort(chosen_rounds, kind="stable")  # round 0 of every source first
    rounds = np.full(len(sources), -1, dtype=np.int64)
    rounds[chosen] = chosen_rounds
    return Selection(chosen[by_round].astype(np.int64), rounds, strategy)


def source_capacity(sources: np.ndarray, caps: dict[str, int], count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct sources, each row's source (an index into them), and how many each can give: its rows, at most
    its cap (`count` for a source without one)."""
    names, of_row = np.unique(np.asarray(sources).astype(str), return_inverse=True)
    capacity = np.minimum(np.bincount(of_row, minlength=len(names)), [caps.get(str(n), count) for n in names])
    return names, of_row, capacity


def _capped_budgets(
    strategy: str, quality: np.ndarray, labels: np.ndarray, of_row: np.ndarray, count: int, capacity, order: Order
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """No balance, with caps: the strategy over the sources under their cap, again without those it took past
    theirs, until none is over. Returns each capped source's budget (its cap; 0 for the others) and the
    final pass's (rows, rounds) over the uncapped sources."""
    budgets = np.zeros(len(capacity), dtype=np.int64)
    free = np.ones(len(capacity), dtype=bool)
    while (left := count - int(budgets.sum())) > 0:
        rows = np.flatnonzero(free[of_row])
        inner = order.of_rows(rows).select(strategy, quality[rows], labels[rows], left)
        over = free & (np.bincount(of_row[rows[inner.indices]], minlength=len(capacity)) > capacity)
        if not over.any():
            return budgets, (rows[inner.indices], inner.rounds[inner.indices])
        budgets[over], free[over] = capacity[over], False
    return budgets, None


def apportion_capped(count: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """`count` split over groups in proportion to `weights` (largest remainder), none above its `capacity`: what a
    full group cannot take goes to the others, by their weights."""
    weights, capacity = np.asarray(weights, dtype=np.float64), np.asarray(capacity, dtype=np.int64)
    if capacity.sum() < count:
        raise ValueError(f"capacity {int(capacity.sum())} is less than count={count}")
    shares = np.zeros(len(weights), dtype=np.int64)
    while (left := count - int(shares.sum())) > 0:  # each pass fills the count or closes a group: it ends
        open_ = shares < capacity
        shares[open_] += np.minimum(_apportion(left, weights[open_]), capacity[open_] - shares[open_])
    return shares


def _counts_of(names: np.ndarray, values: np.ndarray) -> np.ndarray:
    found, counts = np.unique(values, return_counts=True)
    by_name = dict(zip(found.tolist(), counts.tolist(), strict=True))
    return np.array([by_name.get(name, 0) for name in names.tolist()], dtype=np.int64)


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
