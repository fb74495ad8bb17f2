"""An offline demo pool: LESS-format instruction data built from the stdlib docs, with known injected noise.

The selector is meant to run on the LESS training pool (cot, dolly, flan_v2, oasst1), which has to be downloaded.
The demo pool stands in for it on machines with no network: the same four folders, the same one-JSON-object-per-line
records with `messages`, and real English text, because every question and clean answer is built from the Python
standard library's own documentation (`stdlib_corpus`), styled after the source it imitates.

Each record names the stdlib module (or language-reference topic) it is about in `mygo_topic`, so that the
diversity of a selection can be measured against the pool's topics; like `mygo_noise`, selection never reads it.

A known fraction of the records is corrupted on purpose (random characters, shuffled words, an answer to another
question, one repeated word, an answer cut off after a few words; `noise_kinds` picks others, see `noise`) and
marked in `mygo_noise`. Selection never reads that field; only the evaluation of the selector does, to measure how
much of the noise a selection keeps out.
Noise corrupts the last assistant turn only, so a noisy multi-turn conversation starts out fine and then goes wrong;
the questions always stay clean.

Layout: `<dir>/<source>/<source>_data.jsonl` for each source, then `<dir>/manifest.json`, written last, so a
directory with a manifest is complete. The same arguments give the same bytes on the same Python version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mygo.atomic import atomic_path
from mygo.data.demo_pool.noise import (
    ALL_NOISE_KINDS,
    DONOR_NOISE_KINDS,
    NOISE_KINDS,
    assign_noise,
    corrupt,
    donor_answer,
)
from mygo.data.demo_pool.templates import TEMPLATES, Corpus, Message
from mygo.data.stdlib_corpus import Document, stdlib_documents

logger = logging.getLogger(__name__)

DEMO_POOL_VERSION = 2  # 2: records carry `mygo_topic`
DEMO_SOURCES = ("cot", "dolly", "flan_v2", "oasst1")
MANIFEST_NAME = "manifest.json"
MIN_SAMPLES = 20
MIN_ANSWER_CHARS = 40


@dataclass
class DemoPoolReport:
    output_dir: Path
    num_samples: int
    counts_by_source: dict[str, int]
    counts_by_noise: dict[str, int]


@dataclass(frozen=True)
class DemoRecord:
    """One pool line plus what was lost to the noise, so tests can check a corruption against its original."""

    record: dict[str, Any]  # exactly what is written: dataset, id, messages, mygo_noise, mygo_topic
    clean_answer: str  # the last assistant turn before any corruption (equal to it in clean records)


# -------------------------------------------------------------------------------------------- records
def _source_counts(num_samples: int) -> dict[str, int]:
    base, extra = divmod(num_samples, len(DEMO_SOURCES))
    return {source: base + (i < extra) for i, source in enumerate(DEMO_SOURCES)}


def _is_valid(messages: list[Message]) -> bool:
    roles = [m["role"] for m in messages]
    return "user" in roles and roles[-1] == "assistant" and all(m["content"].strip() for m in messages)


def _clean_conversations(
    corpus: Corpus, source: str, count: int, rng: random.Random, limit: int
) -> list[tuple[str, list[Message]]]:
    """`count` distinct (topic, conversation) pairs in the style of `source` (repeats only if the corpus runs dry)."""
    found: list[tuple[str, list[Message]]] = []
    seen: set[str] = set()
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 100 * count + 1000:  # every template declines: a bug, never a reason to spin forever
            raise RuntimeError(f"could not generate {count} {source} samples ({len(found)} after {attempts} tries)")
        drawn = rng.choice(TEMPLATES[source])(corpus, rng, limit)
        if drawn is None or not _is_valid(drawn[1]):
            continue
        key = json.dumps(drawn[1])
        if key in seen and attempts <= 20 * count:
            continue
        seen.add(key)
        found.append(drawn)
    return found


def generate_demo_records(
    documents: Sequence[Document],
    num_samples: int,
    noise_fraction: float,
    seed: int,
    max_answer_chars: int,
    noise_kinds: Sequence[str] = NOISE_KINDS,
) -> list[DemoRecord]:
    """The pool's records in file order (by source, then id); what `build_demo_pool` writes."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars, noise_kinds)
    rng = random.Random(seed)
    corpus = Corpus(documents)
    sources: list[str] = []
    drawn: list[tuple[str, list[Message]]] = []
    for source, count in _source_counts(num_samples).items():
        drawn += _clean_conversations(corpus, source, count, rng, max_answer_chars)
        sources += [source] * count
    topics = [topic for topic, _ in drawn]
    conversations = [messages for _, messages in drawn]
    answers = [messages[-1]["content"] for messages in conversations]

    noise = assign_noise(answers, round(noise_fraction * num_samples), rng, tuple(noise_kinds))
    clean = [i for i in range(num_samples) if i not in noise]
    records = []
    first_index = {source: sources.index(source) for source in DEMO_SOURCES}
    for index, (source, messages) in enumerate(zip(sources, conversations, strict=True)):
        kind = noise.get(index)
        if kind is not None:
            donor = donor_answer(index, sources, answers, clean, rng) if kind in DONOR_NOISE_KINDS else ""
            question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            corrupted = corrupt(kind, answers[index], donor, rng, max_answer_chars, question)
            messages = [*messages[:-1], {"role": "assistant", "content": corrupted}]
        number = index - first_index[source]
        record = {"dataset": source, "id": f"{source}_{number}", "messages": messages, "mygo_noise": kind}
        record["mygo_topic"] = topics[index]
        records.append(DemoRecord(record, answers[index]))
    return records


# -------------------------------------------------------------------------------------------- writing
def _validate(
    num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int, noise_kinds: Sequence[str] = NOISE_KINDS
) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < MIN_SAMPLES:
        raise ValueError(f"num_samples must be an integer >= {MIN_SAMPLES}, got {num_samples!r}")
    if not 0 <= noise_fraction < 1:  # also refuses NaN
        raise ValueError(f"noise_fraction must be in [0, 1), got {noise_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if (
        isinstance(max_answer_chars, bool)
        or not isinstance(max_answer_chars, int)
        or max_answer_chars < MIN_ANSWER_CHARS
    ):
        raise ValueError(f"max_answer_chars must be an integer >= {MIN_ANSWER_CHARS}, got {max_answer_chars!r}")
    unknown = [] if isinstance(noise_kinds, str) else [k for k in noise_kinds if k not in ALL_NOISE_KINDS]
    if isinstance(noise_kinds, str) or unknown or not noise_kinds or len(set(noise_kinds)) < len(noise_kinds):
        raise ValueError(
            f"noise_kinds must be distinct kinds of {list(ALL_NOISE_KINDS)}, got {noise_kinds!r}"
            + (f" ({unknown} unknown)" if unknown else "")
        )


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, even while another process builds the same pool."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(), unlike tempfile.mkstemp, leaves the file readable per the umask, as a shared cache needs.
    with atomic_path(path) as temporary, open(temporary, "xb") as file:
        file.write(text.encode("utf-8"))


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def build_demo_pool(
    output_dir: Path,
    num_samples: int = 4000,
    noise_fraction: float = 0.15,
    seed: int = 0,
    max_answer_chars: int = 600,
    noise_kinds: Sequence[str] = NOISE_KINDS,
) -> DemoPoolReport:
    """Build the pool into `output_dir` (per-source JSONL files, then the manifest) and report its counts."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars, noise_kinds)
    output_dir = Path(output_dir)
    records = generate_demo_records(
        stdlib_documents(), num_samples, noise_fraction, seed, max_answer_chars, noise_kinds
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    # An old manifest would vouch for files that are about to change.
    (output_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for source in DEMO_SOURCES:
        lines = [json.dumps(r.record, ensure_ascii=False) + "\n" for r in records if r.record["dataset"] == source]
        _write_atomic(output_dir / source / f"{source}_data.jsonl", "".join(lines))

    kinds = [r.record["mygo_noise"] for r in records]
    report = DemoPoolReport(
        output_dir=output_dir,
        num_samples=num_samples,
        counts_by_source=_source_counts(num_samples),
        counts_by_noise={kind: kinds.count(kind) for kind in noise_kinds},
    )
    manifest = {
        "format_version": DEMO_POOL_VERSION,
        "python_version": _python_version(),
        "arguments": _arguments(num_samples, noise_fraction, seed, max_answer_chars, noise_kinds),
        "counts_by_source": report.counts_by_source,
        "counts_by_noise": report.counts_by_noise,
        "num_noisy": sum(report.counts_by_noise.values()),
        "files": {source: f"{source}/{source}_data.jsonl" for source in DEMO_SOURCES},
    }
    _write_atomic(output_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return report


def _arguments(
    num_samples: int, noise_fraction: float, seed: int, max_answer_chars: int, noise_kinds: Sequence[str] = NOISE_KINDS
) -> dict[str, Any]:
    # Normalised, so that noise_fraction=0 and 0.0 name the same pool.
    arguments = {
        "num_samples": int(num_samples),
        "noise_fraction": float(noise_fraction),
        "seed": int(seed),
        "max_answer_chars": int(max_answer_chars),
    }
    if tuple(noise_kinds) != NOISE_KINDS:  # only when set: the default pool keeps the key (and cache) it had
        arguments["noise_kinds"] = list(noise_kinds)
    return arguments


def demo_pool_dir(
    cache_root: Path,
    num_samples: int,
    noise_fraction: float,
    seed: int,
    max_answer_chars: int,
    noise_kinds: Sequence[str] = NOISE_KINDS,
) -> Path:
    """Where `ensure_demo_pool` keeps a pool: keyed by the arguments, the format and this Python's docs."""
    key = {
        **_arguments(num_samples, noise_fraction, seed, max_answer_chars, noise_kinds),
        "format_version": DEMO_POOL_VERSION,
        "python_version": _python_version(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return Path(cache_root) / f"v{DEMO_POOL_VERSION}-{digest}"


def ensure_demo_pool(
    cache_root: Path,
    num_samples: int,
    noise_fraction: float,
    seed: int,
    max_answer_chars: int,
    noise_kinds: Sequence[str] = NOISE_KINDS,
) -> Path:
    """The cached pool for these arguments, built first if its directory has no manifest yet."""
    _validate(num_samples, noise_fraction, seed, max_answer_chars, noise_kinds)
    pool_dir = demo_pool_dir(cache_root, num_samples, noise_fraction, seed, max_answer_chars, noise_kinds)
    if (pool_dir / MANIFEST_NAME).is_file():
        logger.info("Reusing demo pool at %s", pool_dir)
        return pool_dir
    logger.info("Building demo pool at %s (%d samples, %.0f%% noise)", pool_dir, num_samples, 100 * noise_fraction)
    start = time.perf_counter()
    report = build_demo_pool(pool_dir, num_samples, noise_fraction, seed, max_answer_chars, noise_kinds)
    logger.info(
        "Built demo pool in %.1fs: %s, noise %s",
        time.perf_counter() - start,
        report.counts_by_source,
        report.counts_by_noise,
    )
    return pool_dir
