"""The instruction pool, as LESS distributes it: `<data_dir>/<name>/*.jsonl`, one conversation a line.

A record is `{"dataset": str, "id": str, "messages": [{"role": ..., "content": str}, ...]}`; the demo
pool adds `mygo_noise` (which injected corruption a record carries) and `mygo_topic` (the document it is
about), kept for evaluating the selector and never read by it.
Each record also keeps where it came from (`file`, `line`) and a digest of its line (`record_digest`)
so that a selection can hand back the records exactly as they were written, and can tell when a
pool file changed after scoring.

What is wrong with the input decides what happens to it:
- a line that is not JSON (or not UTF-8): an error naming file and line, or skipped and counted
  with `skip_bad_lines`;
- a record with no assistant turn, or an empty message: skipped and counted (such records exist in
  real pools and carry nothing to learn);
- a record whose structure is wrong (missing id, unknown role, non-string content, a `dataset`
  field that disagrees with its folder, a duplicate id): an error naming file, line and record id,
  because it means the pool is not what the user thinks it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
LESS_DATASETS = ("cot", "dolly", "flan_v2", "oasst1")
NOISE_FIELD = "mygo_noise"
TOPIC_FIELD = "mygo_topic"
# Labels a pool may carry for measuring a selection (never for making it); kept where any record has one.
LABEL_FIELDS = (NOISE_FIELD, TOPIC_FIELD)
RECORD_DIGEST_FIELD = "record_digest"


class PoolError(ValueError):
    """The pool on disk is not in the expected format; the message names the file and line."""


@dataclass
class PoolStats:
    """What loading kept and what it skipped, for MLflow (`data/...` metrics)."""

    records: Counter = field(default_factory=Counter)  # kept records per dataset
    bad_lines: int = 0
    skipped_no_assistant: int = 0
    skipped_empty_content: int = 0

    def metrics(self) -> dict[str, float]:
        metrics = {
            "data/pool_records": float(sum(self.records.values())),
            "data/bad_lines": float(self.bad_lines),
            "data/skipped_no_assistant": float(self.skipped_no_assistant),
            "data/skipped_empty_content": float(self.skipped_empty_content),
        }
        metrics |= {f"data/records/{name}": float(count) for name, count in sorted(self.records.items())}
        return metrics


@dataclass
class Pool:
    records: datasets.Dataset  # columns: id, dataset, messages, file, line, record_digest (+ LABEL_FIELDS when present)
    data_dir: Path  # the pool's directory, or the file it was read from
    dataset_names: list[str]
    digest: str  # sha256 of the files read, in order: equal digests mean the same pool
    stats: PoolStats

    @property
    def has_noise_labels(self) -> bool:
        return NOISE_FIELD in self.records.column_names


def discover_datasets(data_dir: Path) -> dict[str, list[Path]]:
    """{name: sorted JSONL files} for every `<data_dir>/<name>/` holding JSONL files."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"pool data_dir {data_dir} does not exist or is not a directory")
    found = {}
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jsonl"))
        if files:
            found[folder.name] = files
    return found


def _check_record(record: object, where: str, dataset_name: str | None) -> str | None:
    """Raise on a malformed record; return why it is skipped, or None to keep it."""
    if not isinstance(record, dict):
        raise PoolError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise PoolError(f"{where}: field 'id' must be a non-empty string, got {record_id!r}")
    where = f"{where} (id {record_id!r})"
    if dataset_name is not None and record.get("dataset", dataset_name) != dataset_name:
        raise PoolError(f"{where}: field 'dataset' is {record['dataset']!r} but the file is in folder {dataset_name!r}")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise PoolError(f"{where}: field 'messages' must be a non-empty list")
    for number, message in enumerate(messages):
        if not isinstance(message, dict):
            raise PoolError(f"{where}: messages[{number}] must be an object")
        if message.get("role") not in ROLES:
            raise PoolError(f"{where}: messages[{number}].role is {message.get('role')!r}; roles are {list(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise PoolError(f"{where}: messages[{number}].content must be a string")
    if not any(message["role"] == "assistant" for message in messages):
        return "no_assistant"
    if any(not message["content"].strip() for message in messages):
        return "empty_content"
    return None


def _read_file(path: Path, dataset_name: str | None, skip_bad_lines: bool, stats: PoolStats, digest) -> list[dict]:
    """The file's usable records; `dataset_name=None`: each record names its own (else the file's stem)."""
    records = []
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            digest.update(raw)
            if not raw.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                if skip_bad_lines:
                    stats.bad_lines += 1
                    continue
                raise PoolError(
                    f"{where}: not a JSON record ({error}); set dataset.skip_bad_lines=true to skip such lines"
                ) from error
            skipped = _check_record(record, where, dataset_name)
            if skipped == "no_assistant":
                stats.skipped_no_assistant += 1
            elif skipped == "empty_content":
                stats.skipped_empty_content += 1
            else:
                messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
                source = dataset_name or str(record.get("dataset") or path.stem)
                kept = {"id": record["id"], "dataset": source, "messages": messages}
                # Absolute: a selection made from another working directory still finds the record.
                kept |= {"file": str(path.resolve()), "line": line_number, RECORD_DIGEST_FIELD: record_digest(raw)}
                kept |= {name: record.get(name) for name in LABEL_FIELDS}
                records.append(kept)
    return records


def record_digest(raw: bytes) -> str:
    """A digest of one pool line as written (its line ending aside): what a selection checks before copying it."""
    return hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest()[:32]


def _hash_file(path: Path, digest) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)


def pool_source(pool: Pool) -> dict:
    """Where a pool was read from, enough to digest it again later (`source_digest`) without parsing it."""
    if pool.data_dir.is_file():
        return {"file": str(pool.data_dir.resolve())}
    return {"data_dir": str(pool.data_dir.resolve()), "datasets": list(pool.dataset_names)}


def source_digest(source: dict) -> str | None:
    """The content digest `load_pool`/`load_records_file` would give the source now; None when it is gone.

    The same bytes in the same order as loading hashes, so it equals `Pool.digest` for unchanged files.
    """
    digest = hashlib.sha256()
    try:
        if "file" in source:
            _hash_file(Path(source["file"]), digest)
            return digest.hexdigest()
        found = discover_datasets(Path(source["data_dir"]))
        for name in source["datasets"]:
            if name not in found:  # a dataset folder gone: loading would refuse the pool
                return None
            for path in found[name]:
                digest.update(f"{name}/{path.name}\n".encode())
                _hash_file(path, digest)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def load_pool(data_dir: str | Path, dataset_names: list[str] | None = None, skip_bad_lines: bool = False) -> Pool:
    """Read and check the pool's JSONL files; `dataset_names=None` takes every dataset found."""
    data_dir = Path(data_dir)
    found = discover_datasets(data_dir)
    names = list(dataset_names) if dataset_names else list(found)
    unknown = [name for name in names if name not in found]
    if unknown or not names:
        raise PoolError(f"dataset(s) {unknown or names} not found in {data_dir}; found: {sorted(found) or 'none'}")

    stats, digest, records = PoolStats(), hashlib.sha256(), []
    for name in names:
        for path in found[name]:
            digest.update(f"{name}/{path.name}\n".encode())
            records.extend(_read_file(path, name, skip_bad_lines, stats, digest))
    if not records:
        raise PoolError(f"no usable records in {data_dir} for datasets {names}")
    pool = _as_pool(records, data_dir, names, digest, stats)
    logger.info("pool %s: %d records from %s (%s)", data_dir, len(records), names, stats.metrics())
    return pool


def load_records_file(path: str | Path, skip_bad_lines: bool = False) -> Pool:
    """One JSONL file in the pool format (a selection, or any instruction data), checked like the pool."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    stats, digest = PoolStats(), hashlib.sha256()
    records = _read_file(path, None, skip_bad_lines, stats, digest)
    if not records:
        raise PoolError(f"{path}: no usable records (an empty file, or none with an assistant turn; {stats.metrics()})")
    names = sorted({record["dataset"] for record in records})
    return _as_pool(records, path, names, digest, stats)


def _as_pool(records: list[dict], location: Path, names: list[str], digest, stats: PoolStats) -> Pool:
    _check_unique_ids(records)
    stats.records.update(record["dataset"] for record in records)
    for name in LABEL_FIELDS:
        if all(record[name] is None for record in records):
            for record in records:
                del record[name]
    return Pool(datasets.Dataset.from_list(records), location, names, digest.hexdigest(), stats)


def _check_unique_ids(records: list[dict]) -> None:
    first_seen: dict[str, dict] = {}
    for record in records:
        earlier = first_seen.setdefault(record["id"], record)
        if earlier is not record:
            raise PoolError(
                f"duplicate record id {record['id']!r}: {earlier['file']}:{earlier['line']} "
                f"and {record['file']}:{record['line']}"
            )


def take_subset(records: datasets.Dataset, ratio: float, seed: int, shuffle: bool) -> datasets.Dataset:
    """A seeded random `ratio` of the records; in random order with `shuffle`, else in pool order."""
    if not 0 < ratio <= 1:
        raise ValueError(f"dataset.subset_ratio must be in (0, 1], got {ratio}")
    count = max(1, round(ratio * len(records)))
    indices = np.random.default_rng(seed).permutation(len(records))[:count]
    if not shuffle:
        indices = np.sort(indices)
    return records.select(indices)


def records_at(locations: Sequence[tuple[str, int]]) -> list[dict]:
    """The records at (file, line) locations, parsed, in the order given; each file is read once."""
    wanted: dict[str, dict[int, list[int]]] = {}
    for position, (file, line) in enumerate(locations):
        wanted.setdefault(str(file), {}).setdefault(int(line), []).append(position)
    found: list[dict | None] = [None] * len(locations)
    for file, lines in wanted.items():
        with open(file, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                for position in lines.get(number, ()):
                    found[position] = json.loads(raw)
    missing = [locations[i] for i, record in enumerate(found) if record is None]
    if missing:
        raise PoolError(f"pool file {missing[0][0]} has no line {missing[0][1]}: changed since it was scored?")
    return found  # type: ignore[return-value]  # every position was filled


DEMO_DATA_DIR = "builtin:demo"


def configured_data_dir(dataset_cfg) -> Path:
    """The pool's directory: `builtin:demo` is the demo pool, built once under the cache directory."""
    if dataset_cfg.data_dir != DEMO_DATA_DIR:
        return Path(dataset_cfg.data_dir)
    from mygo.data.demo_pool.build import ensure_demo_pool  # only the embedded default needs it

    demo = dataset_cfg.demo
    return ensure_demo_pool(
        Path(dataset_cfg.cache_dir) / "demo_pool",
        num_samples=demo.num_samples,
        noise_fraction=demo.noise_fraction,
        seed=demo.seed,
        max_answer_chars=demo.max_answer_chars,
    )


def load_configured_pool(dataset_cfg) -> Pool:
    names = list(dataset_cfg.dataset_names) if dataset_cfg.dataset_names else None
    return load_pool(configured_data_dir(dataset_cfg), names, skip_bad_lines=dataset_cfg.skip_bad_lines)
