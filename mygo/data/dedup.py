"""Deduplication of the pool before scoring: exact duplicates, then near duplicates of their answers.

Public pools repeat themselves (the same conversation under new ids, the same answer with a word
changed), and a selection that takes an answer twice wastes its budget. So before anything is scored,
records are grouped and one record per group is kept:

- **exact**: records whose conversations are equal after normalisation: every turn's role and its
  content case-folded (`str.casefold`) with runs of whitespace collapsed to one space and stripped at
  both ends. The id, the source dataset and any other field are ignored. The key is a BLAKE2b digest.
- **near** (`near: true`, among the records exact deduplication kept): records whose answers (the
  assistant turns, normalised as above and joined) have a Jaccard similarity of at least `threshold`
  over their sets of word `shingle`-grams. Candidates are answers whose MinHash signatures (`num_perm`
  permutations, datasketch's) agree on a whole band, in the bands datasketch's `MinHashLSH` would use;
  each candidate pair is then checked on the shingle sets themselves, so no pair below the threshold is
  ever removed (LSH can only miss pairs, never add any). Answers of fewer
  than `min_words` words are left to exact deduplication: a short answer ("yes", "(B)", a number)
  says little without its question, and records that share one are not duplicates.

**Keep rule**: the first record in pool order (datasets in the configured order, then files, then
lines) is kept; each later record is removed when it duplicates a record kept before it (for near
duplicates: the earliest kept record it is similar enough to). Groups are therefore stars around a
kept record, never chains, and the result does not depend on anything but the pool and the settings.

**Scale**: one pass over the pool hashes every conversation (the exact keys, 16 bytes a record) and writes each
compared answer's shingle set and band hashes to a temporary directory; the groups are then found from those files,
one band at a time (answers that share a band with no other are never looked at again). Memory follows the batch
and the candidates, not the pool, and the groups are those of a datasketch LSH index queried and filled in pool
order, which is how this module worked before (checked equal on a planted pool of 270k records).

Settings live in `dataset.dedup` and so are part of the run's config (its reuse key and the score's
work-directory key); the pool's digest stays the digest of its files. A config without a `dedup`
block (runs made before deduplication existed) deduplicates nothing, as those runs did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mygo.atomic import atomic_path

logger = logging.getLogger(__name__)

DEDUP_VERSION = 1  # bump when what counts as a duplicate changes: cached results are keyed by it
GROUPS_ARTIFACT = "dedup/groups.jsonl"
# The LSH index is built for a threshold LSH_MARGIN below dedup.threshold, its bands chosen with these
# (false positive, false negative) weights: every candidate is checked on the shingle sets, so a false positive
# costs one check and a false negative a duplicate kept. At 128 permutations and 0.8 that finds 98.6% of pairs at
# the threshold and 99.9% at 0.85 (an index at 0.8 with datasketch's default weights 0.5/0.5: 40% and 69%), and
# proposes 0.4% of pairs at similarity 0.3.
LSH_MARGIN = 0.05
LSH_WEIGHTS = (0.05, 0.95)
_BATCH = 10_000  # records read from the pool at a time
_SKETCH_BATCH = 1_000  # answers hashed at a time: [shingles, num_perm] uint32 is the memory that takes
# Odd 64-bit multipliers, one per position in a shingle, so that "a b" and "b a" hash differently.
_POSITION_MULTIPLIERS = np.random.default_rng(20240622).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


@dataclass(frozen=True)
class DedupSettings:
    """What counts as a duplicate (`dataset.dedup` in the config)."""

    enabled: bool = True
    near: bool = True
    threshold: float = 0.8  # Jaccard similarity of answer shingle sets at or above which records are near duplicates
    num_perm: int = 128  # MinHash permutations: more is a sharper LSH filter and slower hashing
    shingle: int = 5  # words per shingle
    min_words: int = 10  # shorter answers are not compared for near duplicates

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"dedup.threshold must be in (0, 1], got {self.threshold}")
        if not 1 <= self.shingle <= len(_POSITION_MULTIPLIERS):
            raise ValueError(f"dedup.shingle must be in [1, {len(_POSITION_MULTIPLIERS)}], got {self.shingle}")
        if self.num_perm < 2 or self.min_words < 1:
            raise ValueError(f"dedup.num_perm must be >= 2 and dedup.min_words >= 1, got {self}")

    @classmethod
    def from_config(cls, dataset_cfg) -> DedupSettings:
        """The dataset config's `dedup` block; none at all (an older run's config) means no deduplication."""
        block = dataset_cfg.get("dedup") if hasattr(dataset_cfg, "get") else None
        if block is None:
            return cls(enabled=False)
        return cls(**{name: block[name] for name in cls.__dataclass_fields__ if name in block})


@dataclass(frozen=True)
class DedupGroup:
    """One kept record and the records removed as its duplicates (row numbers in pool order)."""

    kind: str  # exact | near
    kept: int
    removed: tuple[int, ...]
    jaccard: tuple[float, ...] = ()  # near: each removed record's answer similarity to the kept one


@dataclass
class DedupReport:
    settings: DedupSettings
    num_records: int
    kept: np.ndarray  # row numbers of the records kept, ascending
    groups: list[DedupGroup] = field(default_factory=list)
    seconds: float = 0.0

    def removed(self, kind: str) -> int:
        return sum(len(group.removed) for group in self.groups if group.kind == kind)

    @property
    def exact_removed(self) -> int:
        return self.removed("exact")

    @property
    def near_removed(self) -> int:
        return self.removed("near")

    def metrics(self) -> dict[str, float]:
        return {
            "dedup/exact_removed": float(self.exact_removed),
            "dedup/near_removed": float(self.near_removed),
            "dedup/kept": float(len(self.kept)),
            "dedup/groups": float(len(self.groups)),
            "dedup/seconds": self.seconds,
        }

    def groups_jsonl(self, ids: Sequence | datasets.Dataset) -> str:
        """The groups, one JSON line each, by record id: `{"kind", "kept", "removed", ["jaccard"]}`. `ids`: each
        row's id, or the pool's records (only the grouped rows' ids are read).

        Exact groups come first; a record kept by exact deduplication may still be removed by near
        deduplication, so its id can be `kept` in an exact group and `removed` in a near one."""
        if isinstance(ids, datasets.Dataset):
            rows = sorted({row for group in self.groups for row in (group.kept, *group.removed)})
            ids = dict(zip(rows, ids.select(rows)["id"], strict=True))
        lines = []
        for group in self.groups:
            line = {"kind": group.kind, "kept": ids[group.kept], "removed": [ids[row] for row in group.removed]}
            if group.jaccard:
                line["jaccard"] = [round(value, 4) for value in group.jaccard]
            lines.append(json.dumps(line, ensure_ascii=False) + "\n")
        return "".join(lines)

    def to_json(self) -> dict:
        return {
            "version": DEDUP_VERSION,
            "settings": asdict(self.settings),
            "num_records": self.num_records,
            "kept": self.kept.tolist(),
            "groups": [asdict(group) for group in self.groups],
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict) -> DedupReport:
        groups = [
            DedupGroup(g["kind"], g["kept"], tuple(g["removed"]), tuple(g.get("jaccard", ()))) for g in data["groups"]
        ]
        kept = np.asarray(data["kept"], dtype=np.int64)
        return cls(DedupSettings(**data["settings"]), data["num_records"], kept, groups, data["seconds"])


# -------------------------------------------------------------------------------------------- keys
def normalise(text: str) -> str:
    """Case-folded, whitespace runs collapsed to one space, stripped: what both kinds of duplicate compare."""
    return " ".join(text.casefold().split())


def conversation_key(messages: Sequence[dict]) -> bytes:
    """The exact-duplicate key: every turn's role and normalised content, in order."""
    text = "\x1e".join(f"{message['role']}\x1f{normalise(message['content'])}" for message in messages)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def answer_words(messages: Sequence[dict]) -> list[str]:
    """The normalised words of the conversation's assistant turns, in order."""
    return " ".join(m["content"] for m in messages if m["role"] == "assistant").casefold().split()


def word_gram_hashes(word_lists: Sequence[Sequence[str]], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(list of each gram, its 64-bit hash, position of its first word): every `size`-word gram of each list, in
    order, vectorised over the whole batch; a list shorter than `size` has none."""
    lengths = np.fromiter((len(words) for words in word_lists), dtype=np.int64, count=len(word_lists))
    count = int(lengths.sum()) - size + 1
    if count < 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    # pandas' SipHash of each word: vectorised, and deterministic across processes (unlike hash()).
    word = pd.util.hash_array(np.array([w for words in word_lists for w in words], dtype=object))
    combined = np.zeros(count, dtype=np.uint64)
    for position in range(size):  # wrapping uint64 arithmetic is the hash
        combined += word[position : position + count] * _POSITION_MULTIPLIERS[position]
    owner = np.repeat(np.arange(len(lengths)), lengths)[:count]
    start = np.arange(count) - np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)[:count]
    inside = start <= np.repeat(lengths, lengths)[:count] - size  # grams that stay within their list
    return owner[inside], combined[inside], start[inside]


def shingle_sets(word_lists: Sequence[Sequence[str]], size: int) -> list[np.ndarray]:
    """Each word list's sorted distinct 32-bit hashes of its word `size`-grams (one gram of all its words
    when it has fewer), computed for the whole batch at once."""
    owner, combined, _ = word_gram_hashes(word_lists, size)
    keys = [(owner.astype(np.uint64) << np.uint64(32)) | (combined >> np.uint64(32))]
    for index, words in enumerate(word_lists):  # short answers: one gram of all their words
        if 0 < len(words) < size:
            word = pd.util.hash_array(np.array(words, dtype=object))
            gram = (word * _POSITION_MULTIPLIERS[: len(words)]).sum()
            keys.append(np.array([(np.uint64(index) << np.uint64(32)) | (gram >> np.uint64(32))], dtype=np.uint64))
    unique = np.unique(np.concatenate(keys))  # sorted by record, then hash; duplicates gone
    bounds = np.searchsorted(unique >> np.uint64(32), np.arange(len(word_lists) + 1, dtype=np.uint64))
    hashes = (unique & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return [hashes[bounds[i] : bounds[i + 1]] for i in range(len(word_lists))]


def shingle_hashes(words: Sequence[str], size: int) -> np.ndarray:
    """One word list's sorted distinct shingle hashes (`shingle_sets` of one)."""
    return shingle_sets([words], size)[0]


def minhash_values(sets: Sequence[np.ndarray], num_perm: int) -> np.ndarray:
    """[len(sets), num_perm] MinHash signatures, equal to datasketch's `MinHash(num_perm, seed=1)` fed each set
    through `update_batch` with an identity hashfunc (its affine32 scheme), for a batch at once."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations
    flat = np.concatenate(sets)
    # MurmurHash3's finalizer first, as datasketch applies it before its affine permutations.
    flat = flat ^ (flat >> np.uint32(16))
    flat = flat * np.uint32(0x85EBCA6B)
    flat = flat ^ (flat >> np.uint32(13))
    flat = flat * np.uint32(0xC2B2AE35)
    flat = flat ^ (flat >> np.uint32(16))
    permuted = a[:, None] * flat[None, :] + b[:, None]  # [num_perm, shingles], mod 2^32: rows reduce contiguously
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in sets])[:-1]]).astype(np.int64)
    return np.minimum.reduceat(permuted, offsets, axis=1).T


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity of two sorted distinct hash arrays."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


# -------------------------------------------------------------------------------------------- grouping
def band_ranges(settings: DedupSettings) -> list[tuple[int, int]]:
    """The signature slices of the LSH bands: datasketch's `MinHashLSH` choice for LSH_MARGIN below the threshold
    with LSH_WEIGHTS (at 128 permutations and 0.8: 18 bands of 7)."""
    from datasketch import MinHashLSH  # only near deduplication needs it

    threshold = max(settings.threshold - LSH_MARGIN, 0.05)
    return list(MinHashLSH(threshold=threshold, num_perm=settings.num_perm, weights=LSH_WEIGHTS).hashranges)


def band_hashes(signatures: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """[bands, rows] uint64: each band's slice of each signature hashed to one number (equal slices, equal hashes;
    unequal ones collide with probability about 2^-64)."""
    width = max(end - start for start, end in ranges)
    multipliers = np.random.default_rng(20240623).integers(1, 2**63, size=width, dtype=np.uint64) | np.uint64(1)
    hashes = np.empty((len(ranges), len(signatures)), dtype=np.uint64)
    for band, (start, end) in enumerate(ranges):  # wrapping uint64 arithmetic is the hash
        hashes[band] = (signatures[:, start:end].astype(np.uint64) * multipliers[: end - start]).sum(axis=1)
    return hashes


class _Sketches:
    """Pass one's output for near deduplication, kept on disk: each compared answer's pool row, its shingle set and
    its band hashes (one file per band), in pool order. Memory holds one batch, the rows and the set offsets."""

    def __init__(self, directory: Path, bands: int) -> None:
        self.directory, self.bands = directory, bands
        self.rows: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self._shingles = (directory / "shingles.u32").open("wb")
        self._bands = [(directory / f"band{band}.u64").open("wb") for band in range(bands)]

    def add(self, rows: Sequence[int], sets: Sequence[np.ndarray], hashes: np.ndarray) -> None:
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.lengths.append(np.fromiter((len(one) for one in sets), dtype=np.int64, count=len(sets)))
        self._shingles.write(np.concatenate(sets).astype(np.uint32).tobytes())
        for handle, values in zip(self._bands, hashes, strict=True):
            handle.write(values.tobytes())

    def close(self) -> tuple[np.ndarray, np.ndarray]:
        """(pool rows [m], shingle offsets [m + 1]) once everything is written."""
        for handle in (self._shingles, *self._bands):
            handle.close()
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        return rows, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def array(self, name: str, dtype) -> np.ndarray:
        path = self.directory / name
        return np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype=dtype)


def _sketch_pool(records: datasets.Dataset | Sequence[dict], settings: DedupSettings, sketches: _Sketches | None):
    """Pass one over the pool: every conversation's exact key ([n, 2] uint64), and the answers long enough for
    near deduplication hashed into `sketches` a batch at a time."""
    ranges = band_ranges(settings) if sketches is not None else []
    keys = np.empty((len(records), 2), dtype=np.uint64)  # 16 bytes a record, filled in place
    pending: list[tuple[int, list[str]]] = []

    def flush() -> None:
        sets = shingle_sets([words for _, words in pending], settings.shingle)
        sketches.add([row for row, _ in pending], sets, band_hashes(minhash_values(sets, settings.num_perm), ranges))
        pending.clear()

    conversations = tqdm(_conversations(records), total=len(records), desc="dedup pool", unit="record", mininterval=5)
    for row, messages in enumerate(conversations):
        keys[row] = np.frombuffer(conversation_key(messages), dtype=np.uint64)
        if sketches is not None:
            words = answer_words(messages)
            if len(words) >= settings.min_words:
                pending.append((row, words))
                if len(pending) == _SKETCH_BATCH:
                    flush()
    if pending:
        flush()
    return keys


def _conversations(records: datasets.Dataset | Sequence[dict]) -> Iterator[list[dict]]:
    if isinstance(records, datasets.Dataset):  # read in batches: the whole column at once is a second pool
        for batch in records.select_columns(["messages"]).iter(batch_size=_BATCH):
            yield from batch["messages"]
    else:
        for record in records:
            yield record["messages"]


def exact_groups(keys: np.ndarray) -> list[DedupGroup]:
    """Groups of rows with equal keys ([n, 2]): the first row kept, the later ones removed, by kept row."""
    order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: equal keys stay in pool order
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], (ordered[1:] != ordered[:-1]).any(axis=1)]))
    sizes = np.diff(np.concatenate([starts, [len(order)]]))
    groups = [
        DedupGroup("exact", int(order[start]), tuple(order[start + 1 : start + size].tolist()))
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True)
    ]
    return sorted(groups, key=lambda group: group.kept)


def near_groups(
    sketches: _Sketches, rows: np.ndarray, offsets: np.ndarray, compared: np.ndarray, settings: DedupSettings
) -> list[DedupGroup]:
    """Near-duplicate groups among the sketched answers at positions `compared` (those exact deduplication kept).

    The same groups as a MinHash LSH index queried and filled in pool order (datasketch's bands, `band_ranges`):
    an answer is removed when an answer kept before it shares a band with it and is similar enough (the earliest
    such one), else kept. Only answers that share a band with another are looked at, one band's hashes at a time,
    so memory follows the candidates, not the pool."""
    shingles = sketches.array("shingles.u32", np.uint32)
    positions, buckets, next_bucket = [], [], 0
    for band in range(sketches.bands):
        values = sketches.array(f"band{band}.u64", np.uint64)[compared]
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        sizes = np.diff(np.concatenate([starts, [len(order)]]))
        shared = sizes > 1
        members = np.repeat(starts[shared], sizes[shared]) + _offsets_within(sizes[shared])
        positions.append(compared[order[members]])
        buckets.append(next_bucket + np.repeat(np.arange(shared.sum()), sizes[shared]))
        next_bucket += int(shared.sum())
    positions = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    if not len(positions):  # no two answers share a band
        return []
    buckets = np.concatenate(buckets)
    order = np.argsort(positions, kind="stable")
    positions, buckets = positions[order], buckets[order]
    bounds = np.flatnonzero(np.concatenate([[True], positions[1:] != positions[:-1], [True]]))

    def hashes(position: int) -> np.ndarray:
        return shingles[offsets[position] : offsets[position + 1]]

    kept: dict[int, list[int]] = {}  # bucket -> positions kept so far in it
    removed: dict[int, list[tuple[int, float]]] = {}
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        position, own = int(positions[start]), buckets[start:end].tolist()
        candidates = sorted({other for bucket in own for other in kept.get(bucket, ())})
        similar = [(other, jaccard(hashes(position), hashes(other))) for other in candidates]
        similar = [(other, value) for other, value in similar if value >= settings.threshold]
        if similar:
            original, value = min(similar)  # the earliest kept record it duplicates
            removed.setdefault(int(rows[original]), []).append((int(rows[position]), value))
        else:
            for bucket in own:
                kept.setdefault(bucket, []).append(position)
    return [
        DedupGroup("near", row, tuple(r for r, _ in pairs), tuple(v for _, v in pairs))
        for row, pairs in sorted(removed.items())
    ]


def _offsets_within(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ..., size - 1 for each size, concatenated."""
    total = int(sizes.sum())
    return np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _removed_mask(groups: Sequence[DedupGroup], count: int) -> np.ndarray:
    gone = np.zeros(count, dtype=bool)
    gone[[row for group in groups for row in group.removed]] = True
    return gone


def deduplicate(records: datasets.Dataset | Sequence[dict], settings: DedupSettings) -> DedupReport:
    """Group the records (a pool's `records`, or dicts with `messages`) and keep one per group; see the module.

    One pass over the pool hashes every conversation (exact keys) and every long enough answer (shingles, MinHash
    bands, written to a temporary directory); the groups are then found from the hashes alone."""
    started = time.perf_counter()
    count = len(records)
    if not settings.enabled:
        return DedupReport(settings, count, np.arange(count, dtype=np.int64))
    with tempfile.TemporaryDirectory(prefix="mygo-dedup-") as directory:
        sketches = _Sketches(Path(directory), len(band_ranges(settings))) if settings.near else None
        try:
            keys = _sketch_pool(records, settings, sketches)
        finally:
            rows, offsets = sketches.close() if sketches is not None else (None, None)
        groups = exact_groups(keys)
        gone = _removed_mask(groups, count)
        if sketches is not None:
            near = near_groups(sketches, rows, offsets, np.flatnonzero(~gone[rows]), settings)
            gone |= _removed_mask(near, count)
            groups += near
    kept = np.flatnonzero(~gone).astype(np.int64)
    report = DedupReport(settings, count, kept, groups, time.perf_counter() - started)
    logger.info(
        "dedup: %d of %d records kept (%d exact, %d near duplicates removed) in %.1fs",
        len(kept),
        count,
        report.exact_removed,
        report.near_removed,
        report.seconds,
    )
    return report


def deduplicate_cached(
    records: datasets.Dataset, pool_digest: str, settings: DedupSettings, cache_dir: str | Path
) -> DedupReport:
    """`deduplicate`, its result kept under `cache_dir` by the pool's digest and the settings: warmup and
    score of the same pool (and every process of a multi-GPU launch after the first) read it back."""
    if not settings.enabled:
        return deduplicate(records, settings)
    key = json.dumps([DEDUP_VERSION, pool_digest, len(records), asdict(settings)], sort_keys=True)
    path = Path(cache_dir) / f"dedup-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        report = DedupReport.from_json(json.loads(path.read_text()))
        logger.info("dedup: reusing %s (%d of %d records kept)", path, len(report.kept), report.num_records)
        return report
    report = deduplicate(records, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report.to_json()))
    return report
