"""Router data: what scoring keeps of every pool sample, as shards that memory-map.

A shard holds, for a set of pool rows, `quality` [rows, layers] (mean good_ratio over each sample's
real tokens) and `features` [rows, layers, experts] (mean MoE router logits) as `.npy` files, plus
the pool `rows` they belong to. Its `.json` manifest, written last, carries the SHA-256 of each file:
a shard is complete exactly when its manifest exists and the checksums match, so a run killed while
writing leaves nothing that passes for finished, and a corrupt shard is named and scored again.

`index.parquet` lists every pool row (id, source, length, and the injected-noise label when the
pool has one). `load_router_data` puts the shards back in pool order: the quality and signals in memory, the
features (2 KB a sample at 16 layers x 64 experts, 20 GB at ten million) left in the shards' files, read a shard or
a set of rows at a time (`ShardedFeatures`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mygo.atomic import atomic_path

SHARD_FORMAT_VERSION = 2
INDEX_FILE = "index.parquet"
ARRAYS = ("rows", "quality", "features")
SIGNAL_PREFIX = "signal-"  # per-sample quality signals beside the gate's: shard-00000.signal-nll.npy


class RouterDataError(ValueError):
    """Router data on disk is incomplete or corrupt; the message names the shard or file."""


class ShardedFeatures:
    """[samples, layers, experts] router features, in pool order, left in the shards' memory-mapped files.

    `shards()` yields them a shard at a time (what a pass over the pool needs), `features[rows]` gathers rows in
    the order asked, and `np.asarray(features)` reads them all. Each read maps the files anew and lets them go, so
    what stays resident is what the caller keeps."""

    def __init__(self, files: list[Path], rows: list[np.ndarray], samples: int) -> None:
        self.files, self.rows = files, rows
        self.shard_of = np.zeros(samples, dtype=np.int32)  # 8 bytes a sample with the offset: 80 MB at ten million
        self.offset = np.zeros(samples, dtype=np.int32)
        for shard, shard_rows in enumerate(rows):
            self.shard_of[shard_rows] = shard
            self.offset[shard_rows] = np.arange(len(shard_rows), dtype=np.int32)
        first = np.load(files[0], mmap_mode="r")
        self.shape, self.dtype = (samples, *first.shape[1:]), first.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(pool rows, their features in memory), a shard at a time."""
        for path, rows in zip(self.files, self.rows, strict=True):
            yield rows, np.array(np.load(path, mmap_mode="r"))

    def __getitem__(self, rows) -> np.ndarray:
        if np.isscalar(rows):
            return self[np.array([rows])][0]
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) or np.asarray(rows).dtype == bool else rows
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        shards, offsets = self.shard_of[rows], self.offset[rows]
        order = np.lexsort((offsets, shards))  # by shard, each file read forwards
        for part in np.split(order, np.flatnonzero(np.diff(shards[order])) + 1):
            if len(part):
                out[part] = np.load(self.files[shards[part[0]]], mmap_mode="r")[offsets[part]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for rows, block in self.shards():
            out[rows] = block
        return out if dtype is None else out.astype(dtype)


@dataclass
class RouterData:
    index: pd.DataFrame  # one row per pool sample, in pool order
    quality: np.ndarray  # [samples, layers] float32
    features: np.ndarray | ShardedFeatures  # [samples, layers, experts]; from `load_router_data`: left on disk
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [samples] float32 (e.g. nll, ifd)

    @property
    def sample_quality(self) -> np.ndarray:
        """One quality per sample: the mean over layers."""
        return self.quality.mean(axis=1)


def plan_shards(lengths: np.ndarray, shard_size: int) -> list[np.ndarray]:
    """Pool rows per shard, longest samples first: batches of similar length, and memory peaks early."""
    if shard_size < 1:
        raise ValueError(f"score.shard_size must be >= 1, got {shard_size}")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[start : start + shard_size] for start in range(0, len(order), shard_size)]


def _shard_stem(directory: Path, shard: int) -> Path:
    return directory / f"shard-{shard:05d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())


def write_shard(
    directory: Path,
    shard: int,
    rows: np.ndarray,
    quality: np.ndarray,
    features: np.ndarray,
    signals: dict[str, np.ndarray] | None = None,
) -> None:
    """Write one shard: arrays first, the checksummed manifest last."""
    stem = _shard_stem(directory, shard)
    arrays = {"rows": rows.astype(np.int64), "quality": quality.astype(np.float32), "features": features}
    arrays |= {SIGNAL_PREFIX + name: values.astype(np.float32) for name, values in (signals or {}).items()}
    checksums = {}
    for name, array in arrays.items():
        path = stem.with_name(f"{stem.name}.{name}.npy")
        _atomic_save(path, array)
        checksums[name] = _sha256(path)
    manifest = {"format_version": SHARD_FORMAT_VERSION, "samples": len(rows), "sha256": checksums}
    with atomic_path(stem.with_name(stem.name + ".json")) as temporary:
        temporary.write_text(json.dumps(manifest, indent=1))


def shard_problem(directory: Path, shard: int, expected_rows: np.ndarray | None = None) -> str | None:
    """Why the shard is not complete and intact (None when it is)."""
    stem = _shard_stem(directory, shard)
    manifest_path = stem.with_name(stem.name + ".json")
    if not manifest_path.is_file():
        return f"{manifest_path.name} missing (not finished)"
    try:
        manifest = json.loads(manifest_path.read_text())
        checksums = manifest["sha256"]
    except (json.JSONDecodeError, KeyError) as error:
        return f"{manifest_path.name} unreadable: {error}"
    if manifest.get("format_version") != SHARD_FORMAT_VERSION:
        return f"{manifest_path.name} has format version {manifest.get('format_version')}, not {SHARD_FORMAT_VERSION}"
    for name in sorted(set(ARRAYS) | set(checksums)):
        path = stem.with_name(f"{stem.name}.{name}.npy")
        if not path.is_file():
            return f"{path.name} missing"
        if _sha256(path) != checksums.get(name):
            return f"{path.name} does not match its checksum (truncated or corrupt)"
    if expected_rows is not None:
        rows = np.load(stem.with_name(f"{stem.name}.rows.npy"))
        if not np.array_equal(rows, expected_rows):
            return f"{stem.name} holds other pool rows than planned (scored with other settings?)"
    return None


def write_index(directory: Path, index: pd.DataFrame) -> None:
    with atomic_path(directory / INDEX_FILE) as temporary:
        index.to_parquet(temporary, index=False)


def shard_numbers(directory: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1].split(".")[0]) for path in directory.glob("shard-*.json"))


def load_router_data(directory: str | Path) -> RouterData:
    """All shards, checked and put back in pool order; the features stay in the shards' files (`ShardedFeatures`)."""
    directory = Path(directory)
    index_path = directory / INDEX_FILE
    if not index_path.is_file():
        raise RouterDataError(f"{index_path} missing: not router data, or scoring did not finish")
    index = pd.read_parquet(index_path)
    shards = shard_numbers(directory)
    quality = None
    files, shard_rows = [], []
    signals: dict[str, np.ndarray] = {}
    filled = np.zeros(len(index), dtype=bool)
    for shard in shards:
        problem = shard_problem(directory, shard)
        if problem:
            raise RouterDataError(f"{directory}: {problem}")
        stem = _shard_stem(directory, shard)
        rows = np.load(stem.with_name(f"{stem.name}.rows.npy"))
        shard_quality = np.load(stem.with_name(f"{stem.name}.quality.npy"), mmap_mode="r")
        if quality is None:
            quality = np.empty((len(index), *shard_quality.shape[1:]), dtype=np.float32)
        if rows.size and (rows.max() >= len(index) or filled[rows].any()):
            raise RouterDataError(f"{directory}: {stem.name} holds rows outside the index or already filled")
        quality[rows] = shard_quality
        files.append(stem.with_name(f"{stem.name}.features.npy"))
        shard_rows.append(rows)
        names = [name for name in json.loads(stem.with_name(stem.name + ".json").read_text())["sha256"]]
        for name in (n.removeprefix(SIGNAL_PREFIX) for n in names if n.startswith(SIGNAL_PREFIX)):
            values = signals.setdefault(name, np.full(len(index), np.nan, dtype=np.float32))
            values[rows] = np.load(stem.with_name(f"{stem.name}.{SIGNAL_PREFIX}{name}.npy"))
        filled[rows] = True
    if quality is None or not filled.all():
        missing = int((~filled).sum())
        raise RouterDataError(f"{directory}: {missing} of {len(index)} pool samples are in no shard")
    features = ShardedFeatures(files, shard_rows, len(index))
    return RouterData(index=index, quality=quality, features=features, signals=signals)
