"""Deduplication of the pool before scoring: exact duplicates, then near duplicates of their answers.

Public pools repeat themselves (the same conversation under new ids, the same answer with a word
changed), and a selection that takes an answer twice wastes its budget. So before anything is scored,
records are grouped and one record per group is kept:

- **exact**: records whose conversations are equal after normalisation: every turn's role and its
  content case-folded (`str.casefold`) with runs of whitespace collapsed to one space and stripped at
  both ends. The id, the source dataset and any other field are ignored. The key is a BLAKE2b digest.
- **near** (`near: true`, among the records exact deduplication kept): records whose answers (the
  assistant turns, normalised as above and joined) have a Jaccard similarity of at least `threshold`
  over their sets of word `shingle`-grams. Candidates come from MinHash LSH (`datasketch`,
  `num_perm` permutations); each candidate pair is then checked on the shingle sets themselves, so no
  pair below the threshold is ever removed (LSH can only miss pairs, never add any). Answers of fewer
  than `min_words` words are left to exact deduplication: a short answer ("yes", "(B)", a number)
  says little without its question, and records that share one are not duplicates.

**Keep rule**: the first record in pool order (datasets in the configured order, then files, then
lines) is kept; each later record is removed when it duplicates a record kept before it (for near
duplicates: the earliest kept record it is similar enough to). Groups are therefore stars around a
kept record, never chains, and the result does not depend on anything but the pool and the settings.

Settings live in `dataset.dedup` and so are part of the run's config (its reuse key and the score's
work-directory key); the pool's digest stays the digest of its files. A config without a `dedup`
block (runs made before deduplication existed) deduplicates nothing, as those runs did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
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

    def groups_jsonl(self, ids: Sequence) -> str:
        """The groups, one JSON line each, by record id: `{"kind", "kept", "removed", ["jaccard"]}`.

        Exact groups come first; a record kept by exact deduplication may still be removed by near
        deduplication, so its id can be `kept` in an exact group and `removed` in a near one."""
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


def shingle_sets(word_lists: Sequence[Sequence[str]], size: int) -> list[np.ndarray]:
    """Each word list's sorted distinct 32-bit hashes of its word `size`-grams (one gram of all its words
    when it has fewer), computed for the whole batch at once."""
    lengths = np.fromiter((len(words) for words in word_lists), dtype=np.int64, count=len(word_lists))
    if not lengths.sum():
        return [np.zeros(0, dtype=np.uint32) for _ in word_lists]
    # pandas' SipHash of each word: vectorised, and deterministic across processes (unlike hash()).
    word = pd.util.hash_array(np.array([w for words in word_lists for w in words], dtype=object))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    count = len(word) - size + 1
    combined = np.zeros(max(count, 0), dtype=np.uint64)
    for position in range(size):  # wrapping uint64 arithmetic is the hash
        combined += word[position : position + max(count, 0)] * _POSITION_MULTIPLIERS[position]
    record = np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)[: max(count, 0)]
    within = np.arange(max(count, 0)) - np.repeat(starts, lengths)[: max(count, 0)]
    valid = within <= (np.repeat(lengths, lengths)[: max(count, 0)] - size)  # grams that stay inside their record
    keys = [(record[valid] << np.uint64(32)) | (combined[valid] >> np.uint64(32))]
    for index in np.flatnonzero((lengths > 0) & (lengths < size)):  # short answers: one gram of all their words
        gram = (word[starts[index] : starts[index] + lengths[index]] * _POSITION_MULTIPLIERS[: lengths[index]]).sum()
        keys.append(np.array([(np.uint64(index) << np.uint64(32)) | (gram >> np.uint64(32))], dtype=np.uint64))
    unique = np.unique(np.concatenate(keys))  # sorted by record, then hash; duplicates gone
    bounds = np.searchsorted(unique >> np.uint64(32), np.arange(len(lengths) + 1, dtype=np.uint64))
    hashes = (unique & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return [hashes[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]


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
def _conversations(records: datasets.Dataset | Sequence[dict]) -> Iterator[list[dict]]:
    if isinstance(records, datasets.Dataset):  # read in batches: the whole column at once is a second pool
        for batch in records.select_columns(["messages"]).iter(batch_size=_BATCH):
            yield from batch["messages"]
    else:
        for record in records:
            yield record["messages"]


class ExactFilter:
    """Passes on each conversation's first occurrence, as (row, messages), and records the later ones."""

    def __init__(self) -> None:
        self.first: dict[bytes, int] = {}
        self.removed: dict[int, list[int]] = {}

    def __call__(self, conversations: Iterable[Sequence[dict]]) -> Iterator[tuple[int, Sequence[dict]]]:
        for row, messages in enumerate(conversations):
            original = self.first.setdefault(conversation_key(messages), row)
            if original == row:
                yield row, messages
            else:
                self.removed.setdefault(original, []).append(row)

    def groups(self) -> list[DedupGroup]:
        return [DedupGroup("exact", row, tuple(rows)) for row, rows in sorted(self.removed.items())]


def near_groups(answers: Iterable[tuple[int, Sequence[str]]], settings: DedupSettings) -> list[DedupGroup]:
    """Near-duplicate groups among (row, answer words) given in pool order; rows in no group are kept.

    Streaming: each answer is looked up among the answers kept so far and, when none is similar
    enough, kept and indexed itself, so a removed record is always within the threshold of its kept one.
    Shingles and MinHashes are computed a batch at a time in numpy; the LSH index is datasketch's.
    """
    from datasketch import LeanMinHash, MinHashLSH  # imported here: only near deduplication needs it

    lsh_threshold = max(settings.threshold - LSH_MARGIN, 0.05)
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=settings.num_perm, weights=LSH_WEIGHTS)
    shingles: dict[int, np.ndarray] = {}  # kept rows' shingle sets, for checking LSH's candidates exactly
    removed: dict[int, list[tuple[int, float]]] = {}
    for batch in _batches(((row, words) for row, words in answers if len(words) >= settings.min_words), _SKETCH_BATCH):
        sets = shingle_sets([words for _, words in batch], settings.shingle)
        signatures = minhash_values(sets, settings.num_perm)
        for (row, _), hashes, signature in zip(batch, sets, signatures, strict=True):
            minhash = LeanMinHash(seed=1, hashvalues=signature, scheme="affine32")
            similar = [(other, jaccard(hashes, shingles[other])) for other in lsh.query(minhash)]
            similar = [(other, value) for other, value in similar if value >= settings.threshold]
            if similar:
                original, value = min(similar)  # the earliest kept record it duplicates
                removed.setdefault(original, []).append((row, value))
            else:
                lsh.insert(row, minhash, check_duplication=False)
                shingles[row] = hashes
    return [
        DedupGroup("near", row, tuple(r for r, _ in pairs), tuple(v for _, v in pairs))
        for row, pairs in sorted(removed.items())
    ]


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def deduplicate(records: datasets.Dataset | Sequence[dict], settings: DedupSettings) -> DedupReport:
    """Group the records (a pool's `records`, or dicts with `messages`) and keep one per group; see the module.

    One pass in pool order: a record that survives exact deduplication goes straight on to near."""
    started = time.perf_counter()
    count = len(records)
    if not settings.enabled:
        return DedupReport(settings, count, np.arange(count, dtype=np.int64))
    conversations = tqdm(_conversations(records), total=count, desc="dedup pool", unit="record", mininterval=5)
    exact = ExactFilter()
    unique = exact(conversations)
    if settings.near:
        near = near_groups(((row, answer_words(messages)) for row, messages in unique), settings)
    else:
        near = []
        deque(unique, maxlen=0)  # run the filter for its groups
    groups = exact.groups() + near
    gone = {row for group in groups for row in group.removed}
    kept = np.asarray([row for row in range(count) if row not in gone], dtype=np.int64)
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
