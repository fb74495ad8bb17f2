"""The selection policy: what may be picked from a scored pool and how, from `selection.*` of the select config.

In the order it acts:
- the budget: `count`, `tokens` (of the trained turns) or `percentage` of the pool, split over sources by
  `source_balance` and `source_caps`;
- quality: the `quality_signal` per sample (`mygo.analysis.quality_signals`), ranked within its source under
  `quality_within: source`;
- vetoes: each of `veto_signals` keeps its worst `veto_share` out, each of `outlier_signals` what lies more than
  `outlier_z` robust standard deviations below its source's median, and each fault limit (`max_prompt_copy`,
  `max_repetition`: `mygo.signal_table.FAULT_LIMITS`) what its detector reads at least that much of;
- the band: the `quality_floor` share of the pool, worst first, and the `quality_ceiling` share, best first, are
  never picked (of the pool, or of each cluster: `floor_scope`);
- the strategy over what is left (`mygo.analysis.selection`): round robin across clusters, in an order within them
  (`within_cluster`) and with quotas (`cluster_quota`), or the quality top-k and random baselines.

The select stage reads the pool, clusters it and records; this module decides. A control arm is a policy too
(`configs/control/`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mygo.analysis.coverage import Text
from mygo.analysis.quality_signals import SIGNALS, STORED, rank_within, robust_z_within, signal_values
from mygo.analysis.score_shards import RouterData
from mygo.analysis.selection import STRATEGIES, Order, Selection, select_by_source, source_capacity, target_count
from mygo.signal_table import FAULT_LIMITS

logger = logging.getLogger(__name__)

# What the covering order (`within_cluster: coverage`) represents: the rows it may pick from (the band less the
# vetoes), or the pool less the vetoes, picking from the band: the band then decides what is picked and the pool
# where, so that the hard and novel parts of the pool, which a band of middle likelihood thins, keep their share.
COVERS = ("band", "pool")


@dataclass(frozen=True)
class SelectionPolicy:
    percentage: float = 0.05
    count: int | None = None
    tokens: int | None = None
    source_balance: str = "none"
    source_caps: dict[str, float | int] = field(default_factory=dict)
    strategy: str = "round_robin"
    seed: int = 42
    quality_signal: str = "nll"
    rank_mean_of: tuple[str, ...] | None = None
    quality_within: str = "pool"
    quality_floor: float = 0.0
    quality_ceiling: float = 0.0
    veto_signals: tuple[str, ...] = ()
    veto_share: float = 0.0
    outlier_signals: tuple[str, ...] = ()
    outlier_z: float = 2.0
    fault_limits: dict[str, float] = field(default_factory=dict)  # selection key (max_prompt_copy) -> limit
    floor_scope: str = "pool"
    within_cluster: str = "quality"
    cluster_quota: str = "equal"
    cover: str = "band"
    target_share: float = 0.5

    @classmethod
    def of(cls, cfg: DictConfig) -> SelectionPolicy:
        """The policy of a select config (`cfg.selection`); a key that a config made before it existed lacks takes
        its default, which is what that config did. Bad settings are errors naming the key."""
        options = OmegaConf.to_container(cfg.selection, resolve=True)
        known = {f.name for f in fields(cls)} - {"fault_limits"}
        values = {key: value for key, value in options.items() if key in known}
        for key in ("rank_mean_of", "veto_signals", "outlier_signals"):
            if key in values:
                values[key] = tuple(values[key] or ()) or (None if key == "rank_mean_of" else ())
        values["source_caps"] = dict(values.get("source_caps") or {})
        values["fault_limits"] = {key: options[key] for key in FAULT_LIMITS if options.get(key) is not None}
        policy = cls(**values)
        policy.check()
        return policy

    def check(self) -> None:
        if self.count is not None and self.tokens is not None:
            raise ValueError(
                f"selection.count={self.count} and selection.tokens={self.tokens} are both set: a budget is a "
                "count or tokens (or selection.percentage when neither is)"
            )
        if not 0 < self.percentage <= 1:
            raise ValueError(f"selection.percentage must be in (0, 1], got {self.percentage}")
        if not 0 <= self.target_share <= 1:
            raise ValueError(f"selection.target_share must be in [0, 1], got {self.target_share}")
        for name, cap in self.source_caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int | float) or not (0 <= cap <= 1 or isinstance(cap, int)):
                raise ValueError(
                    f"selection.source_caps.{name} must be a fraction of the selection in [0, 1] (a float) or a "
                    f"count >= 0 (an int), got {cap!r}"
                )
            if cap < 0:
                raise ValueError(f"selection.source_caps.{name} must be >= 0, got {cap!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"selection.strategy={self.strategy!r} is not valid; choose one of {list(STRATEGIES)}")
        if not 0 <= self.quality_floor < 1:
            raise ValueError(f"selection.quality_floor must be in [0, 1), got {self.quality_floor}")
        if not 0 <= self.quality_ceiling < 1 - self.quality_floor:
            raise ValueError(
                f"selection.quality_ceiling must be in [0, 1 - quality_floor), got {self.quality_ceiling}"
                f" with quality_floor={self.quality_floor}"
            )
        if self.cover not in COVERS:
            raise ValueError(f"selection.cover={self.cover!r} is not valid; choose one of {list(COVERS)}")
        if self.quality_signal not in SIGNALS:
            signal = self.quality_signal
            raise ValueError(f"selection.quality_signal={signal!r} is not valid; choose one of {list(SIGNALS)}")
        for key in ("veto_signals", "outlier_signals"):
            for name in getattr(self, key):
                if name not in STORED:
                    raise ValueError(
                        f"selection.{key} names {name!r}; a veto is a stored signal, one of {list(STORED)}"
                    )

    # ------------------------------------------------------------------------------------------ the budget
    def budget(self, sources: np.ndarray, count: int | None = None) -> tuple[int, dict[str, int]]:
        """The number to select (`count`, else the settings') and the caps (source -> most samples) for a pool whose
        rows have these `sources`; a budget the pool cannot fill is an error naming its key (checked before
        clustering, so it fails fast)."""
        count = self.selection_count(len(sources)) if count is None else count
        caps = self.caps(count, sources)
        if (room := _room(sources, caps, count)) < count:
            raise ValueError(
                f"selection.source_caps={caps} allow at most {room} samples of this pool, fewer than the {count} to "
                "select; raise a cap or lower the budget"
            )
        return count, caps

    def selection_count(self, n: int) -> int:
        """`selection.count` when set (then `selection.percentage` is not used), else the percentage of the `n`
        samples in the scored pool."""
        if self.count is None:
            return target_count(n, self.percentage)
        if self.count > n:
            raise ValueError(f"selection.count={self.count} is larger than the pool: the score run has {n} samples")
        return int(self.count)

    def caps(self, count: int, sources: np.ndarray) -> dict[str, int]:
        """`selection.source_caps` as source -> most samples: a float is a fraction of the selection (`count`,
        rounded down: a cap is never passed), an int a number of samples. A name that is not a source of the pool
        is an error."""
        known = sorted(set(np.asarray(sources).astype(str).tolist()))
        unknown = sorted(str(name) for name in self.source_caps if str(name) not in known)
        if unknown:
            raise ValueError(
                f"selection.source_caps names {unknown}, not a source of this pool; its sources are {known}"
            )
        return {
            str(name): int(cap) if isinstance(cap, int) else int(np.floor(cap * count))
            for name, cap in self.source_caps.items()
        }

    # ------------------------------------------------------------------------------------- quality and vetoes
    def quality(self, data: RouterData) -> np.ndarray:
        """The quality signal per sample, higher is better; under `quality_within: source`, its percentile rank
        within the sample's source dataset."""
        quality = signal_values(self.quality_signal, data.sample_quality, data.signals, self.rank_mean_of)
        if self.quality_within == "source":
            return rank_within(quality, data.index["dataset"].to_numpy())
        return quality

    def vetoes(self, data: RouterData) -> dict[str, np.ndarray]:
        """Per veto, the rows it keeps out, whatever the band.

        The band ranks by one signal (a likelihood), which cannot see what another signal sees: a fluent answer to
        another question has a fine NLL, and shares nothing with its own prompt (`overlap`). A sample must pass
        every detector, so each of `veto_signals` vetoes its own worst `veto_share` (ranked within sources as
        quality is); averaging ranks instead would pull a sample that one detector flags and the others like into
        the middle of the band. A fault limit is a threshold, not a share: a pool that holds no copies or loops
        loses nothing to it, and overlap, which ranks a copy best, cannot veto one. Each of `outlier_signals`
        (as `outlier_<signal>`) cuts what lies more than `outlier_z` robust standard deviations below the median
        of its source: a tail cut by how far out a sample lies rather than a share, so that hard but sound
        samples, which a quality floor takes out with the garbage, stay."""
        masks = {}
        by_source = self.quality_within == "source"
        groups = data.index["dataset"].to_numpy() if by_source else np.zeros(len(data.index))
        if self.veto_signals and self.veto_share:
            for name in self.veto_signals:
                values = signal_values(name, data.sample_quality, data.signals)
                masks[name] = rank_within(values, groups) <= self.veto_share
        for name in self.outlier_signals:
            values = signal_values(name, data.sample_quality, data.signals)
            masks[f"outlier_{name}"] = robust_z_within(values, groups) < -self.outlier_z
        for key, limit in self.fault_limits.items():
            signal = FAULT_LIMITS[key]
            if signal not in data.signals:
                raise ValueError(
                    f"selection.{key}={limit} needs the {signal} signal, which this score run did not store"
                    f" (it has {sorted(data.signals)}): score again, or set selection.{key}=null"
                )
            masks[key] = np.asarray(data.signals[signal]) >= limit
        return masks

    # --------------------------------------------------------------------------------------------- choosing
    def order(
        self,
        features: np.ndarray | None = None,
        text: Text | None = None,
        labels: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
    ) -> Order:
        """Round robin's order; under `cover: pool` the covering order represents the pool less the vetoes (rows
        not `excluded`, with their cluster `labels`) rather than the band alone."""
        ground = None
        if self.cover == "pool" and features is not None and labels is not None:
            rows = np.arange(len(labels)) if excluded is None else np.flatnonzero(~excluded)
            ground = (features, rows, labels[rows])  # the pool's features themselves: no copy
        return Order(self.seed, self.within_cluster, self.cluster_quota, features, text, ground)

    def choose(
        self,
        quality: np.ndarray,
        labels: np.ndarray,
        sources: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
        features: np.ndarray | None = None,
        text: Text | None = None,
        tokens: np.ndarray | None = None,
        ranked: np.ndarray | None = None,
    ) -> Selection:
        """`pick` within the budget: `selection.count` or `percentage` samples, or under `selection.tokens` the
        strategy's records in its order, each that still fits the budget in tokens (`tokens`, [n]): round robin's
        rounds, quality's ranks and a random draw all come best first, and a record too long for what is left is
        passed over for the next that fits, so the total ends a few tokens under the budget and arms of one budget
        match. The strategy is asked for enough records to pass the budget (an estimate from the mean, doubled
        until they do). `ranked`: rows in a target's order (`mygo.stages.targeting.similarity_order`), taken
        first to last in place of the strategy and the band (the vetoes are out of it already)."""
        if self.tokens is None:
            return self.pick(quality, labels, sources, excluded, features, text, ranked=ranked)
        if tokens is None or len(tokens) != len(quality):
            raise ValueError("selection.tokens needs each sample's tokens (selection.tokenizer counts them)")
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.sum() < self.tokens:
            raise ValueError(f"selection.tokens={self.tokens} is more than the pool's {int(tokens.sum())} tokens")
        count = min(len(quality), max(1, int(np.ceil(1.2 * self.tokens / max(tokens.mean(), 1)))))
        while True:
            chosen = self.pick(quality, labels, sources, excluded, features, text, count, ranked)
            total = np.cumsum(tokens[chosen.indices])
            if total[-1] >= self.tokens or count == len(quality):
                break
            count = min(len(quality), 2 * count)
        keep = np.zeros(len(chosen.indices), dtype=bool)
        taken = 0
        for position, row in enumerate(chosen.indices):  # in order, each record that still fits
            if taken + tokens[row] <= self.tokens:
                keep[position], taken = True, taken + int(tokens[row])
            if taken == self.tokens:
                break
        rounds = chosen.rounds.copy()
        rounds[chosen.indices[~keep]] = -1
        return Selection(chosen.indices[keep], rounds, chosen.strategy)

    def pick(
        self,
        quality: np.ndarray,
        labels: np.ndarray,
        sources: np.ndarray | None = None,
        excluded: np.ndarray | None = None,
        features: np.ndarray | None = None,
        text: Text | None = None,
        count: int | None = None,
        ranked: np.ndarray | None = None,
    ) -> Selection:
        """The strategy over the samples in the quality band, less the vetoes (`excluded`, [n] bool): `count`
        samples (None: the settings' count or percentage).

        By a likelihood signal the ceiling's share is what the model predicts best already (short, formulaic,
        known answers), which teaches least (the middle of the perplexity range prunes best: Marion et al., 2023).
        Filter first, then diversify: round robin would otherwise give a cluster made of bad samples as many picks
        as any other.

        `sources` ([n] source names; all one source when None): the budget is split over them (proportional shares
        are the whole pool's, not the band's). `features` and `text` ([n, ...]) are what `within_cluster: coverage`
        covers and compares. A band too small for the budget, or for the caps, is ignored (vetoes included) with a
        warning; caps that the whole pool cannot fill are an error naming `selection.source_caps`."""
        sources = np.full(len(quality), "pool") if sources is None else np.asarray(sources).astype(str)
        count, caps = self.budget(sources, count)
        if ranked is not None:  # a target's order: its first `target_share` of the count, the rest untargeted
            aimed = np.asarray(ranked[: round(self.target_share * count)], dtype=np.int64)
            rounds = np.full(len(quality), -1, dtype=np.int64)
            rounds[aimed] = np.arange(len(aimed))
            if len(aimed) == count:
                return Selection(aimed, rounds, "target")
            taken = np.zeros(len(quality), dtype=bool)
            taken[aimed] = True
            rest = self.pick(
                quality,
                labels,
                sources,
                taken | (False if excluded is None else excluded),
                features,
                text,
                count - len(aimed),
            )
            rounds[rest.indices] = len(aimed) + rest.rounds[rest.indices]
            return Selection(np.concatenate([aimed, rest.indices]), rounds, f"target+{rest.strategy}")
        order = self.order(features, text, labels, excluded)
        floor, ceiling = self.quality_floor, self.quality_ceiling
        band = within_band(quality, labels, floor, ceiling, self.floor_scope) if floor or ceiling else None
        # What may be picked, strictest first: the band less the vetoes, then the band alone, then the whole pool.
        candidates = []
        if excluded is not None and excluded.any():
            allowed = np.flatnonzero(~excluded)
            vetoed_band = allowed if band is None else band[~excluded[band]]
            where = "pool" if band is None else "band"
            limits = ", ".join(FAULT_LIMITS)
            candidates.append((f"the {where} less the vetoes (selection.veto_signals, {limits})", vetoed_band))
        if band is not None:
            candidates.append((f"selection.quality_floor={floor} and quality_ceiling={ceiling}", band))
        for what, eligible in candidates:
            room = _room(sources[eligible], caps, count)
            if room >= count:
                inner = select_by_source(
                    self.strategy,
                    quality[eligible],
                    labels[eligible],
                    sources[eligible],
                    count,
                    self.source_balance,
                    caps,
                    pool_sources=sources,
                    order=order.of_rows(eligible),
                )
                rounds = np.full(len(quality), -1, dtype=np.int64)
                rounds[eligible[inner.indices]] = inner.rounds[inner.indices]
                return Selection(eligible[inner.indices], rounds, inner.strategy)
            within = " within selection.source_caps" if caps else ""
            logger.warning("%s leave %d < %d samples%s: ignored", what, room, count, within)
        return select_by_source(self.strategy, quality, labels, sources, count, self.source_balance, caps, order=order)


def vetoed(masks: dict[str, np.ndarray]) -> np.ndarray | None:
    """The rows any of the vetoes (`SelectionPolicy.vetoes`) keeps out, [n] bool; None without a veto."""
    return np.logical_or.reduce(list(masks.values())) if masks else None


def within_band(quality: np.ndarray, labels: np.ndarray, floor: float, ceiling: float, scope: str) -> np.ndarray:
    """Rows between the `floor` and `1 - ceiling` quantiles of quality: of the whole pool, or of each row's cluster.

    Per cluster, every kind of sample loses its own worst: a likelihood signal rates whole tasks (long answers,
    reasoning) as harder than others, and a pool-wide floor would drop those tasks rather than the bad samples."""
    keep = np.zeros(len(quality), dtype=bool)
    groups = (
        [np.ones(len(quality), dtype=bool)] if scope == "pool" else [labels == label for label in np.unique(labels)]
    )
    for rows in groups:
        low, high = np.quantile(quality[rows], [floor, 1.0 - ceiling])
        keep[rows] = (quality[rows] >= low) & (quality[rows] <= high)
    return np.flatnonzero(keep)


def _room(sources: np.ndarray, caps: dict[str, int], count: int) -> int:
    """How many samples these rows can give under the caps."""
    return int(source_capacity(sources, caps, count)[2].sum())
