"""Exact + near deduplication of a LESS-sized pool: `python benchmarks/dedup.py` (`--quick`: 20k records).

The pool: `--records` records written as JSONL in the LESS layout (cot, dolly, flan_v2, oasst1), each a
question and an answer of words drawn Zipf-like from the stdlib docs' vocabulary (lognormal answer lengths,
median ~60 words, 1-800; a fifth of flan_v2's answers are one to three words), so that unplanted records are
not alike. Planted among them, each copying a record that is itself not planted:
- exact duplicates under new ids, with the case and whitespace of every turn changed;
- near duplicates: the answer with a few words changed so that its Jaccard similarity (shingles of
  `dedup.shingle` words) to the original is at or above the threshold, under a new question;
- hard negatives: the answer with more words changed, similarity in [0.5, threshold - 0.05): must stay.

A fresh child process loads the pool (`mygo.data.pool.load_pool`, as warmup and score do), resets its
peak-RSS mark, then runs `mygo.data.dedup.deduplicate` with the default settings on the `datasets.Dataset`.
Reported: seconds, peak RSS during dedup (VmHWM after the reset) and the pool's RSS before it, and precision
and recall against the planted duplicates (a removed record is a true positive when it is a planted exact or
near duplicate; hard negatives removed are false positives). The baseline is datasketch used as its
README shows, one `MinHash` per record fed shingle by shingle (`update`, SHA-1) into a `MinHashLSH`,
timed on `--baseline-records` records and scaled to the pool linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from mygo.data.dedup import DedupSettings, deduplicate, jaccard, normalise, shingle_hashes

SOURCES = ("cot", "dolly", "flan_v2", "oasst1")


def vocabulary() -> list[str]:
    from mygo.data.stdlib_corpus import stdlib_documents

    words: dict[str, None] = {}
    for document in stdlib_documents():
        words.update(dict.fromkeys(re.findall(r"[A-Za-z][A-Za-z'-]{1,15}", document.text)))
    return list(words)


class Text:
    def __init__(self, words: list[str], seed: int) -> None:
        self.words = words
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, len(words) + 1)
        self.p = 1 / ranks**1.05 / (1 / ranks**1.05).sum()
        # `Generator.choice(p=...)` checks p and builds this on every call; the same draws from it once built.
        self.cdf = self.p.cumsum()
        self.cdf /= self.cdf[-1]

    def sentence(self, count: int) -> list[str]:
        return [self.words[i] for i in self.cdf.searchsorted(self.rng.random(count), side="right")]


def changed(words: list[str], count: int, rng: random.Random) -> list[str]:
    out = list(words)
    for position in rng.sample(range(len(out)), min(count, len(out))):
        out[position] = f"zq{rng.randrange(10**9)}"  # a word no answer has
    return out


def answer_similarity(a: list[str], b: list[str], shingle: int) -> float:
    return jaccard(
        shingle_hashes(normalise(" ".join(a)).split(), shingle), shingle_hashes(normalise(" ".join(b)).split(), shingle)
    )


def messy(text: str, rng: random.Random) -> str:
    """The same text once case-folded and whitespace-collapsed: another case and other spacing."""
    words = text.upper().split() if rng.random() < 0.5 else text.split()
    return "  " + "\n ".join(words) + " \t"


def build_pool(
    directory: Path,
    records: int,
    exact: float,
    near: float,
    hard: float,
    settings: DedupSettings,
    seed: int,
    progress: Callable[[int], object] | None = None,
) -> dict[str, set[str]]:
    """Write the pool; returns the planted ids by kind (exact, near, hard). `progress(n)`: n more records written.

    Streamed, so that memory grows by a few bytes a record, not by the records: the originals are written as they
    are drawn (keeping each one's offset in its file and its answer's length), the planted copies are drawn from
    originals read back and written to a side file per source, then appended to their source's file shuffled."""
    rng = random.Random(seed)
    text = Text(vocabulary(), seed)
    counts = {"exact": round(exact * records), "near": round(near * records), "hard": round(hard * records)}
    originals = records - sum(counts.values())
    files = {source: directory / source / f"{source}_data.jsonl" for source in SOURCES}
    sides = {source: directory / source / ".copies.tmp" for source in SOURCES}  # not a pool file: no .jsonl
    offsets = np.zeros(originals, dtype=np.int64)  # each original's byte offset in its source's file
    lengths = np.zeros(originals, dtype=np.int32)  # each original's answer words
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        out = {source: stack.enter_context(open(path, "wb")) for source, path in files.items()}
        for number in range(originals):
            source = SOURCES[number % len(SOURCES)]
            length = int(np.clip(text.rng.lognormal(np.log(60), 0.8), 1, 800))
            if source == "flan_v2" and number % 5 == 0:
                length = rng.randint(1, 3)
            words = text.sentence(length)
            question = " ".join(text.sentence(int(np.clip(text.rng.lognormal(np.log(20), 0.6), 3, 300))))
            row = {
                "dataset": source,
                "id": f"{source}_{number}",
                "messages": [
                    {"role": "user", "content": question + "?"},
                    {"role": "assistant", "content": " ".join(words)},
                ],
            }
            offsets[number] = out[source].tell()
            out[source].write((json.dumps(row) + "\n").encode())
            lengths[number] = len(words)
            if progress is not None and number % 1000 == 999:
                progress(1000)
    if progress is not None:
        progress(originals % 1000)
    long_enough = np.flatnonzero(lengths >= max(settings.min_words, 20))
    planted: dict[str, set[str]] = {kind: set() for kind in counts}
    side_offsets: dict[str, list[int]] = {source: [] for source in SOURCES}  # the copies in the order made
    with ExitStack() as stack:
        pool = {source: stack.enter_context(open(path, "rb")) for source, path in files.items()}
        side = {source: stack.enter_context(open(path, "wb")) for source, path in sides.items()}

        def original(i: int) -> dict:
            handle = pool[SOURCES[i % len(SOURCES)]]
            handle.seek(offsets[i])
            return json.loads(handle.readline())

        for kind, count in counts.items():
            made = 0
            while made < count:
                i = int(rng.choice(long_enough if kind != "exact" else range(originals)))
                row = original(i)
                source = row["dataset"]
                record_id = f"{source}_{kind}_{made}"
                if kind == "exact":
                    messages = [{"role": m["role"], "content": messy(m["content"], rng)} for m in row["messages"]]
                else:
                    words = row["messages"][1]["content"].split()  # the answer's words: none holds a space
                    if kind == "near":  # up to ~1 word in 50 changed, so most copies land above the threshold
                        new = changed(words, rng.randint(1, max(1, len(words) // 50)), rng)
                        if answer_similarity(words, new, settings.shingle) < settings.threshold:
                            continue
                    else:
                        new = changed(words, rng.randint(max(2, len(words) // 25), max(3, len(words) // 8)), rng)
                        if not 0.5 <= answer_similarity(words, new, settings.shingle) < settings.threshold - 0.05:
                            continue
                    question = " ".join(text.sentence(15)) + "?"
                    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": " ".join(new)}]
                # Written after the originals (a later position in the same source): keep-first keeps the original.
                side_offsets[source].append(side[source].tell())
                side[source].write(
                    (json.dumps({"dataset": source, "id": record_id, "messages": messages}) + "\n").encode()
                )
                planted[kind].add(record_id)
                made += 1
                if progress is not None:
                    progress(1)
    for source in SOURCES:  # the planted copies shuffled among themselves, after the originals
        tail = side_offsets[source]
        rng.shuffle(tail)
        with open(sides[source], "rb") as copies, open(files[source], "ab") as handle:
            for offset in tail:
                copies.seek(offset)
                handle.write(copies.readline())
        sides[source].unlink()
    return planted


def peak_rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def child(directory: str, settings: dict) -> None:
    """Load the pool, reset the peak-RSS mark, deduplicate; print the figures as JSON."""
    from mygo.data.pool import load_pool

    started = time.perf_counter()
    pool = load_pool(directory)
    loaded = time.perf_counter() - started
    before = rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark from here on is dedup's
    report = deduplicate(pool.records, DedupSettings(**settings))
    ids = pool.records["id"]
    removed = {
        kind: [ids[row] for g in report.groups if g.kind == kind for row in g.removed] for kind in ("exact", "near")
    }
    print(
        json.dumps(
            {
                "records": len(pool.records),
                "load_seconds": loaded,
                "seconds": report.seconds,
                "rss_before_mb": before,
                "peak_rss_mb": peak_rss_mb(),
                "removed": removed,
            }
        )
    )


def baseline_seconds(directory: Path, records: int, settings: DedupSettings) -> tuple[float, int]:
    """datasketch as its README shows it, on the first `records` records of the pool: (seconds, records)."""
    from datasketch import MinHash, MinHashLSH

    rows = []
    for source in SOURCES:
        with open(directory / source / f"{source}_data.jsonl") as handle:
            rows += [json.loads(line) for _, line in zip(range(records // len(SOURCES)), handle, strict=False)]
    started = time.perf_counter()
    lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm)
    for number, row in enumerate(rows):
        words = normalise(" ".join(m["content"] for m in row["messages"] if m["role"] == "assistant")).split()
        minhash = MinHash(num_perm=settings.num_perm)
        for i in range(max(1, len(words) - settings.shingle + 1)):
            minhash.update(" ".join(words[i : i + settings.shingle]).encode("utf-8"))
        if not lsh.query(minhash):
            lsh.insert(number, minhash)
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=270_000)
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("--exact", type=float, default=0.03, help="fraction of planted exact duplicates")
    parser.add_argument("--near", type=float, default=0.03, help="fraction of planted near duplicates")
    parser.add_argument("--hard", type=float, default=0.01, help="fraction of planted hard negatives")
    parser.add_argument("--baseline-records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    records = 20_000 if args.quick else args.records
    settings = DedupSettings()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        planted = build_pool(Path(tmp), records, args.exact, args.near, args.hard, settings, args.seed)
        print(
            f"built {records} records in {time.perf_counter() - started:.0f}s: "
            f"{ {kind: len(ids) for kind, ids in planted.items()} } planted",
            flush=True,
        )
        settings_json = json.dumps(settings.__dict__)
        command = [sys.executable, __file__, "--child", tmp, settings_json]
        result = subprocess.run(
            command, capture_output=True, text=True, check=True, env=os.environ | {"TQDM_DISABLE": "1"}
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        base_seconds, base_rows = baseline_seconds(Path(tmp), args.baseline_records, settings)
    removed = {kind: set(ids) for kind, ids in figures["removed"].items()}
    every = removed["exact"] | removed["near"]
    positives = planted["exact"] | planted["near"]
    true_positives = len(every & positives)
    print(
        f"pool: {figures['records']} records loaded in {figures['load_seconds']:.1f}s, "
        f"RSS {figures['rss_before_mb']:.0f} MB"
    )
    print(
        f"dedup: {figures['seconds']:.1f}s, peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(+{figures['peak_rss_mb'] - figures['rss_before_mb']:.0f} MB over the loaded pool)"
    )
    print(f"removed: {len(removed['exact'])} exact, {len(removed['near'])} near")
    print(f"exact: recall {len(removed['exact'] & planted['exact']) / max(1, len(planted['exact'])):.4f}")
    print(
        f"near: recall {len(every & planted['near']) / max(1, len(planted['near'])):.4f}, "
        f"hard negatives removed {len(every & planted['hard'])} of {len(planted['hard'])}"
    )
    print(
        f"all: precision {true_positives / max(1, len(every)):.4f}, "
        f"recall {true_positives / max(1, len(positives)):.4f}, "
        f"unplanted removed {len(every - positives - planted['hard'])}"
    )
    scaled = base_seconds * figures["records"] / base_rows
    print(
        f"baseline: {base_seconds:.1f}s for {base_rows} records, {scaled:.0f}s scaled to the pool; "
        f"speed-up {scaled / figures['seconds']:.1f}x"
    )


if __name__ == "__main__":
    main()
