"""The instruction pool: `<data_dir>/<name>/*.{jsonl,json,parquet}`, as LESS distributes it (JSONL) or as others do.

A file is JSON Lines (`.jsonl`, or a `.json` that does not start with `[`), a JSON array (`.json`) or
Parquet (`.parquet`, one record a row). Its records are in one of the formats of `mygo.data.formats`
(`dataset.format`; `auto` tells each file's from its first record, and a record that does not fit its
file's format from its own fields), converted on reading to the pool's form
`{"dataset": str, "id": str, "messages": [{"role": ..., "content": str}, ...]}`. How many records each
format gave is logged as `data/format/<dataset>/<format>`. The demo pool adds `mygo_noise` (which
injected corruption a record carries) and `mygo_topic` (the document it is about), kept for evaluating
the selector and never read by it.

Ids: a record's `id` (a non-empty string or an integer) is kept as given and compared as a string
(`7` and `"7"` are the same id). A record without one (Alpaca files have none) gets
`<folder>/<file name>:<line>`, e.g. `dolly/alpaca_data.json:17`: stable while the file is unchanged,
and unique in a pool because dataset folders and their file names are.

Each record also keeps where it came from (`file`, `line`: the 1-based line of a JSONL file, or the
1-based record index of a JSON array or row of a Parquet file) and a digest of the record as written
(`record_digest`: of the JSONL line; of the record's JSON on one line for arrays and Parquet, which is
also what `record_texts` hands a selection to copy) so that a selection can hand back the records
exactly as they were written, and can tell when a pool file changed after scoring.

What is wrong with the input decides what happens to it:
- a line that is not JSON (or not UTF-8): an error naming file and line, or skipped and counted
  with `skip_bad_lines`;
- a record with no assistant turn, or an empty message: skipped and counted (such records exist in
  real pools and carry nothing to learn);
- a record whose structure is wrong (a bad id, a record that fits no format or not the one asked
  for, an unknown role, non-string content, a `dataset` field that disagrees with its folder, a
  duplicate id): an error naming file, line, record id and the fields the record has, because it
  means the pool is not what the user thinks it is.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa

from mygo.atomic import atomic_path
from mygo.data.formats import FORMAT_CHOICES, FormatError, detect_format, expected_fields, to_messages

if TYPE_CHECKING:
    from mygo.data.decontamination import DecontaminationReport
    from mygo.data.dedup import DedupReport

logger = logging.getLogger(__name__)

JSONL_SUFFIXES, JSON_SUFFIXES, PARQUET_SUFFIXES = (".jsonl",), (".json",), (".parquet",)
POOL_SUFFIXES = JSONL_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES
LESS_DATASETS = ("cot", "dolly", "flan_v2", "oasst1")
NOISE_FIELD = "mygo_noise"
TOPIC_FIELD = "mygo_topic"
# Labels a pool may carry for measuring a selection (never for making it); kept where any record has one.
LABEL_FIELDS = (NOISE_FIELD, TOPIC_FIELD)
RECORD_DIGEST_FIELD = "record_digest"
POOL_STORE_VERSION = 1  # bump when the stored form of a pool changes (stored pools are also keyed by the reading code)
_WRITE_BATCH = 10_000  # records converted and written at a time
_WRITE_BATCH_CHARS = 1 << 26  # or fewer, when their text is this long (a batch's strings stay well under 2 GiB)
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
POOL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("messages", pa.list_(_MESSAGE)),
        ("file", pa.string()),
        ("line", pa.int64()),
        (RECORD_DIGEST_FIELD, pa.string()),
        *((name, pa.string()) for name in LABEL_FIELDS),
    ]
)


class PoolError(ValueError):
    """The pool on disk is not in the expected format; the message names the file and line."""


@dataclass
class PoolStats:
    """What loading kept and what it skipped, for MLflow (`data/...` metrics)."""

    records: Counter = field(default_factory=Counter)  # kept records per dataset
    bad_lines: int = 0
    skipped_no_assistant: int = 0
    skipped_empty_content: int = 0
    formats: Counter = field(default_factory=Counter)  # kept records per (dataset, format)

    def metrics(self) -> dict[str, float]:
        metrics = {
            "data/pool_records": float(sum(self.records.values())),
            "data/bad_lines": float(self.bad_lines),
            "data/skipped_no_assistant": float(self.skipped_no_assistant),
            "data/skipped_empty_content": float(self.skipped_empty_content),
        }
        metrics |= {f"data/records/{name}": float(count) for name, count in sorted(self.records.items())}
        metrics |= {f"data/format/{name}/{kind}": float(count) for (name, kind), count in sorted(self.formats.items())}
        return metrics

    def to_json(self) -> dict:
        return {
            "records": dict(self.records),
            "bad_lines": self.bad_lines,
            "skipped_no_assistant": self.skipped_no_assistant,
            "skipped_empty_content": self.skipped_empty_content,
            "formats": [[name, kind, count] for (name, kind), count in self.formats.items()],
        }

    @classmethod
    def from_json(cls, data: dict) -> PoolStats:
        formats = Counter({(name, kind): count for name, kind, count in data["formats"]})
        counts = {key: data[key] for key in ("bad_lines", "skipped_no_assistant", "skipped_empty_content")}
        return cls(Counter(data["records"]), formats=formats, **counts)


@dataclass
class Pool:
    records: datasets.Dataset  # columns: id, dataset, messages, file, line, record_digest (+ LABEL_FIELDS when present)
    data_dir: Path  # the pool's directory, or the file it was read from
    dataset_names: list[str]
    digest: str  # sha256 of the files read, in order: equal digests mean the same pool
    stats: PoolStats
    formats: dict[str, str] = field(default_factory=dict)  # file -> its records' format(s), "a+b" when mixed
    dedup: DedupReport | None = None  # which records deduplication kept, where the pool was deduplicated
    decontamination: DecontaminationReport | None = None  # which kept records hold an evaluation item

    @property
    def kept(self) -> np.ndarray:
        """The rows warmup and score use: kept by deduplication, and not removed by decontamination."""
        kept = self.dedup.kept if self.dedup is not None else np.arange(len(self.records))
        if self.decontamination is not None and len(self.decontamination.matches):
            kept = np.setdiff1d(kept, self.decontamination.removed, assume_unique=True)
        return kept

    @property
    def has_noise_labels(self) -> bool:
        return NOISE_FIELD in self.records.column_names


def discover_datasets(data_dir: Path) -> dict[str, list[Path]]:
    """{name: sorted pool files} for every `<data_dir>/<name>/` holding `.jsonl`, `.json` or `.parquet` files."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"pool data_dir {data_dir} does not exist or is not a directory")
    found = {}
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        # Hidden files (`._x.json` from macOS, editors' backups) are not data.
        files = sorted(p for p in folder.iterdir() if p.suffix in POOL_SUFFIXES and not p.name.startswith("."))
        files = [p for p in files if p.is_file()]
        if files:
            found[folder.name] = files
    return found


def _is_json_array(path: Path) -> bool:
    """A `.json` file is a JSON array when it starts with `[`; else JSON Lines, as many exports name theirs."""
    if path.suffix not in JSON_SUFFIXES:
        return False
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _one_line(record: object) -> bytes:
    """A JSON array's or Parquet file's record as one JSONL line (no line ending): what a selection copies.

    Parquet values without a JSON type (timestamps, bytes) are written as their `str`."""
    return json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")


def _file_records(path: Path, digest=None) -> Iterator[tuple[int, bytes, object]]:
    """(line, record as written, parsed record) for each record of a pool file, updating `digest` with its bytes.

    JSONL: the 1-based line number, the line's bytes and None (parsed by the caller, which decides what a bad
    line means); blank lines are hashed, not yielded. JSON arrays and Parquet: the 1-based record index, the
    record as one JSON line and the record itself."""
    if path.suffix in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq  # a dependency of datasets; only Parquet pools need it

        if digest is not None:
            _hash_file(path, digest)
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, _one_line(row), row
    elif _is_json_array(path):
        data = path.read_bytes()
        if digest is not None:
            digest.update(data)
        try:
            records = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PoolError(f"{path}: not a JSON array of records ({error})") from error
        for number, record in enumerate(records, start=1):
            yield number, _one_line(record), record
    else:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if digest is not None:
                    digest.update(raw)
                if raw.strip():
                    yield number, raw, None


def record_texts(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line, record as written) for each record of a pool file: what the select stage copies and checks.

    For JSONL the line's bytes (with its line ending); for JSON arrays and Parquet the record as one JSON
    line (without one). `record_digest` of it is the record's `record_digest` in the pool."""
    for number, raw, _ in _file_records(Path(path)):
        yield number, raw


def record_id(record: dict, path: str | Path, line: int) -> str:
    """The record's id as a string: its `id` field (a non-empty string or an integer) or, without one (or null,
    as Parquet writes an absent value), `<folder>/<file name>:<line>`."""
    value = record.get("id")
    if value is None:
        path = Path(path)
        return f"{path.parent.name}/{path.name}:{line}"
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise PoolError(f"field 'id' must be a non-empty string or an integer, got {value!r}")
    return str(value)


def _convert(record: dict, where: str, data_format: str, file_format: str | None) -> tuple[list[dict], str]:
    """(the record's turns, its format): `data_format` when forced; under auto, the file's format (its first
    record's), or this record's own where it does not fit that one (a file that mixes formats)."""
    fields = f"fields: {sorted(record)}"
    kind = data_format if data_format != "auto" else file_format or detect_format(record)
    if kind is None:
        raise PoolError(f"{where}: the record fits no format ({fields}); the formats need {expected_fields()}")
    try:
        return to_messages(record, kind), kind
    except FormatError as error:
        own = detect_format(record) if data_format == "auto" else None
        if own is not None and own != kind:
            try:
                return to_messages(record, own), own
            except FormatError:
                pass  # the file's format's complaint is the one to report
        how = "dataset.format" if data_format != "auto" else "auto, from the file's first record"
        raise PoolError(f"{where}: not a record in the {kind} format ({how}): {error}; {fields}") from error


def _read_file(
    path: Path,
    dataset_name: str | None,
    skip_bad_lines: bool,
    stats: PoolStats,
    digest,
    data_format: str = "auto",
    formats: dict[str, str] | None = None,
) -> Iterator[dict]:
    """The file's usable records, one at a time; `dataset_name=None`: each record names its own (else the file's
    stem). `stats`, `digest` and `formats` are complete once the records are."""
    file_format, seen = None, Counter()
    by_index = path.suffix in PARQUET_SUFFIXES or _is_json_array(path)
    for line_number, raw, record in _file_records(path, digest):
        where = f"{path}: record {line_number}" if by_index else f"{path}:{line_number}"
        if record is None:
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                if skip_bad_lines:
                    stats.bad_lines += 1
                    continue
                raise PoolError(
                    f"{where}: not a JSON record ({error}); set dataset.skip_bad_lines=true to skip such lines"
                ) from error
        if not isinstance(record, dict):
            raise PoolError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
        try:
            identity = record_id(record, path, line_number)
        except PoolError as error:
            raise PoolError(f"{where}: {error}") from None
        where = f"{where} (id {identity!r})"
        if dataset_name is not None and record.get("dataset", dataset_name) not in (dataset_name, None):
            raise PoolError(
                f"{where}: field 'dataset' is {record['dataset']!r} but the file is in folder {dataset_name!r}"
            )
        messages, kind = _convert(record, where, data_format, file_format)
        file_format = file_format or kind
        if not any(message["role"] == "assistant" for message in messages):
            stats.skipped_no_assistant += 1
        elif any(not message["content"].strip() for message in messages):
            stats.skipped_empty_content += 1
        else:
            source = dataset_name or str(record.get("dataset") or path.stem)
            kept = {"id": identity, "dataset": source, "messages": messages}
            # Absolute: a selection made from another working directory still finds the record.
            kept |= {"file": str(path.resolve()), "line": line_number, RECORD_DIGEST_FIELD: record_digest(raw)}
            kept |= {name: _label(record.get(name)) for name in LABEL_FIELDS}
            seen[kind] += 1
            stats.formats[source, kind] += 1
            stats.records[source] += 1
            yield kept
    if formats is not None and seen:
        formats[str(path)] = "+".join(seen)  # in the order the formats first appear


def _label(value: object) -> str | None:
    """A label field's value as the pool's string column holds it."""
    return None if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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


def _check_format(data_format: str) -> None:
    if data_format not in FORMAT_CHOICES:
        raise ValueError(f"dataset.format is {data_format!r}; one of {', '.join(FORMAT_CHOICES)}")


def load_pool(
    data_dir: str | Path,
    dataset_names: list[str] | None = None,
    skip_bad_lines: bool = False,
    data_format: str = "auto",
    cache_dir: str | Path | None = None,
) -> Pool:
    """Read and check the pool's files; `dataset_names=None` takes every dataset found; `data_format`: one of
    `mygo.data.formats.FORMAT_CHOICES` (`auto`: each file's own).

    The records are streamed into one Arrow file and served memory-mapped, so memory stays that of a batch
    whatever the pool's size. With `cache_dir` that file is kept there under the pool's digest and settings, and
    the next load of the same files (warmup's, then score's) maps it without parsing anything; without, it lives
    in a temporary directory for the process."""
    _check_format(data_format)
    data_dir = Path(data_dir)
    found = discover_datasets(data_dir)
    names = list(dataset_names) if dataset_names else list(found)
    unknown = [name for name in names if name not in found]
    if unknown or not names:
        raise PoolError(f"dataset(s) {unknown or names} not found in {data_dir}; found: {sorted(found) or 'none'}")

    def records(stats: PoolStats, digest, formats: dict[str, str]) -> Iterator[dict]:
        for name in names:
            for path in found[name]:
                digest.update(f"{name}/{path.name}\n".encode())
                yield from _read_file(path, name, skip_bad_lines, stats, digest, data_format, formats)

    source = {"data_dir": str(data_dir.resolve()), "datasets": names}
    settings = {"skip_bad_lines": skip_bad_lines, "format": data_format}
    pool = _stored_pool(records, data_dir, names, source, settings, cache_dir)
    if not len(pool.records):
        raise PoolError(f"no usable records in {data_dir} for datasets {names}")
    logger.info("pool %s: %d records from %s (%s)", data_dir, len(pool.records), names, pool.stats.metrics())
    logger.info("pool formats: %s", pool.formats)
    return pool


def load_records_file(
    path: str | Path, skip_bad_lines: bool = False, data_format: str = "auto", cache_dir: str | Path | None = None
) -> Pool:
    """One pool file (a selection, or any instruction data in a format the pool reads), checked like the pool."""
    _check_format(data_format)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")

    def records(stats: PoolStats, digest, formats: dict[str, str]) -> Iterator[dict]:
        yield from _read_file(path, None, skip_bad_lines, stats, digest, data_format, formats)

    source = {"file": str(path.resolve())}
    settings = {"skip_bad_lines": skip_bad_lines, "format": data_format}
    pool = _stored_pool(records, path, [], source, settings, cache_dir)
    if not len(pool.records):
        raise PoolError(
            f"{path}: no usable records (an empty file, or none with an assistant turn; {pool.stats.metrics()})"
        )
    pool.dataset_names = sorted(pool.stats.records)
    return pool


def _stored_pool(
    records, location: Path, names: list[str], source: dict, settings: dict, cache_dir: str | Path | None
) -> Pool:
    """The pool that `records(stats, digest, formats)` yields, written to an Arrow file and mapped back: reused
    from `cache_dir` when the files' digest and the settings match a stored one."""
    if cache_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="mygo-pool-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        stored = None
    else:
        directory = Path(cache_dir)
        digest = source_digest(source)  # hashing the files is fast next to parsing them
        key = json.dumps([POOL_STORE_VERSION, _reading_code(), source, settings, digest], sort_keys=True)
        stored = directory / f"pool-{hashlib.sha256(key.encode()).hexdigest()[:24]}"
        if stored.with_suffix(".json").is_file() and stored.with_suffix(".arrow").is_file():
            about = json.loads(stored.with_suffix(".json").read_text())
            logger.info("pool %s: reusing %s", location, stored.with_suffix(".arrow"))
            return _mapped_pool(stored, location, names, about)
        directory.mkdir(parents=True, exist_ok=True)
    stats, digest, formats = PoolStats(), hashlib.sha256(), {}
    path = stored or directory / "pool"
    labels = _write_arrow(records(stats, digest, formats), path.with_suffix(".arrow"))
    try:
        _check_unique_ids(datasets.Dataset.from_file(str(path.with_suffix(".arrow"))))
    except PoolError:
        path.with_suffix(".arrow").unlink()
        raise
    about = {"digest": digest.hexdigest(), "stats": stats.to_json(), "formats": formats, "labels": labels}
    with atomic_path(path.with_suffix(".json")) as temporary:  # last: a pool is stored once this is there
        temporary.write_text(json.dumps(about))
    return _mapped_pool(path, location, names, about)


@cache
def _reading_code() -> str:
    """A digest of the code that turns pool files into records (this module and the formats'): a pool stored by other
    code, an older mygo's, is read again rather than served."""
    from mygo.data import formats

    code = b"".join(Path(module).read_bytes() for module in (__file__, formats.__file__))
    return hashlib.sha256(code).hexdigest()[:16]


def _mapped_pool(path: Path, location: Path, names: list[str], about: dict) -> Pool:
    records = datasets.Dataset.from_file(str(path.with_suffix(".arrow")))
    absent = [name for name in LABEL_FIELDS if name not in about["labels"]]
    if absent:
        records = records.remove_columns(absent)
    stats = PoolStats.from_json(about["stats"])
    return Pool(records, location, names, about["digest"], stats, about["formats"])


def _write_arrow(records: Iterator[dict], path: Path) -> list[str]:
    """Write the records to an Arrow stream file in batches (atomically); the label fields any record has."""
    labels: set[str] = set()
    with (
        atomic_path(path) as temporary,
        pa.OSFile(str(temporary), "wb") as sink,
        pa.ipc.new_stream(sink, POOL_SCHEMA) as writer,
    ):
        batch: list[dict] = []
        size = 0
        for record in records:
            batch.append(record)
            size += sum(len(message["content"]) for message in record["messages"])
            if len(batch) == _WRITE_BATCH or size >= _WRITE_BATCH_CHARS:
                labels |= _write_batch(writer, batch)
                batch, size = [], 0
        labels |= _write_batch(writer, batch)
    return sorted(labels)


def _write_batch(writer, batch: list[dict]) -> set[str]:
    if batch:
        writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=POOL_SCHEMA))
    return {name for name in LABEL_FIELDS if any(record[name] is not None for record in batch)}


def _check_unique_ids(records: datasets.Dataset) -> None:
    """A PoolError naming both places of the first id given twice (in pool order). The ids are compared by a
    64-bit hash first, a column chunk at a time, so no set of the pool's ids is held."""
    table = records.data.table
    hashes = np.concatenate(
        [pd.util.hash_array(chunk.to_numpy(zero_copy_only=False)) for chunk in table.column("id").chunks]
        or [np.zeros(0, dtype=np.uint64)]
    )
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return
    rows = np.flatnonzero(np.isin(hashes, repeated))
    first_seen: dict[str, int] = {}
    for row, identity in zip(rows.tolist(), records.select(rows)["id"], strict=True):
        earlier = first_seen.setdefault(identity, row)
        if earlier != row:
            where = records.select([earlier, row]).select_columns(["file", "line"]).to_list()
            raise PoolError(
                f"duplicate record id {identity!r}: {where[0]['file']}:{where[0]['line']} "
                f"and {where[1]['file']}:{where[1]['line']}"
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
    """The records at (file, line) locations, parsed as written (in the file's own format, not converted), in
    the order given; each file is read once. `line` is a JSONL line or a JSON array's or Parquet file's record
    index, as the pool's `line` column has it."""
    wanted: dict[str, dict[int, list[int]]] = {}
    for position, (file, line) in enumerate(locations):
        wanted.setdefault(str(file), {}).setdefault(int(line), []).append(position)
    found: list[dict | None] = [None] * len(locations)
    for file, lines in wanted.items():
        for number, raw, record in _file_records(Path(file)):
            for position in lines.get(number, ()):
                found[position] = json.loads(raw) if record is None else record
    missing = [locations[i] for i, record in enumerate(found) if record is None]
    if missing:
        raise PoolError(f"pool file {missing[0][0]} has no line {missing[0][1]}: changed since it was scored?")
    return found  # type: ignore[return-value]  # every position was filled


def iter_records_at(locations: Sequence[tuple[str, int]]) -> Iterator[dict]:
    """`records_at`'s records one at a time, holding none: for locations in pool order (a file's lines ascending,
    each file's locations together), as a score run's index lists them; each file is read once."""
    position = 0
    while position < len(locations):
        file = str(locations[position][0])
        end = position
        while end < len(locations) and str(locations[end][0]) == file:
            end += 1
        lines = [int(line) for _, line in locations[position:end]]
        if np.any(np.diff(lines) <= 0):
            raise ValueError(f"locations in {file} are not in ascending line order: not a pool-order index")
        wanted = iter(lines)
        line = next(wanted)
        for number, raw, record in _file_records(Path(file)):
            if number == line:
                yield json.loads(raw) if record is None else record
                line = next(wanted, None)
                if line is None:
                    break
        if line is not None:
            raise PoolError(f"pool file {file} has no line {line}: changed since it was scored?")
        position = end


DEMO_DATA_DIR = "builtin:demo"


def configured_data_dir(dataset_cfg) -> Path:
    """The pool's directory: `builtin:demo` is the demo pool, built once under the cache directory."""
    if dataset_cfg.data_dir != DEMO_DATA_DIR:
        return Path(dataset_cfg.data_dir)
    from mygo.data.demo_pool.build import ensure_demo_pool  # only the embedded default needs it
    from mygo.data.demo_pool.noise import NOISE_KINDS

    demo = dataset_cfg.demo
    return ensure_demo_pool(
        Path(dataset_cfg.cache_dir) / "demo_pool",
        num_samples=demo.num_samples,
        noise_fraction=demo.noise_fraction,
        seed=demo.seed,
        max_answer_chars=demo.max_answer_chars,
        noise_kinds=tuple(demo.get("noise_kinds") or NOISE_KINDS),
    )


def load_configured_pool(dataset_cfg) -> Pool:
    names = list(dataset_cfg.dataset_names) if dataset_cfg.dataset_names else None
    data_format = dataset_cfg.get("format", "auto")  # configs from before `dataset.format` read as auto
    directory = configured_data_dir(dataset_cfg)
    cache = Path(dataset_cfg.cache_dir) / "pool"
    return load_pool(directory, names, dataset_cfg.skip_bad_lines, data_format, cache_dir=cache)
