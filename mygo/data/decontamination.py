"""Decontamination: pool records that share a word n-gram with an evaluation item are removed before warmup and
scoring, so that no selection can hold a test item.

The evaluation items are every validation, test and few-shot document of the lm-eval tasks the config names
(`dataset.decontamination.tasks`; groups expanded), each as its prompt and its answer. A task whose data cannot be
loaded here (a hub dataset on a machine without the hub) is skipped and named in the report, never silently.

The rule is PaLM's (Chowdhery et al., 2022, section 8): word 8-grams after lower-casing and dropping punctuation,
and an item counts as contained when at least 70% of its distinct 8-grams are found (`ngram`, `threshold`); here
they must be found in one record, which is then removed. An item shorter than 8 words counts as one gram of all
its words, down to `min_ngram` words; shorter items cannot be told from a common phrase (counted, not checked).
A gram that more than `max_items` (10) items share is the tasks' template ("... is part of which Python module?
Answer with the module name only."), not an item's content, and counts for none (NeMo Curator's `max_matches`, 10,
applied to the items): an item is matched by what is its own, and one that is all template cannot be checked.
A share rather than GPT-3's single shared 13-gram, because instruction data and evaluation sets built alike share
phrasing without sharing items: on the demo pool, whose generator and tasks word their answers alike ("... the
statement is not part of it, it comes from the documentation of ..."), one shared 13-gram flags a tenth of the
pool. A copy of an item, or a paraphrase that keeps most of its wording and its answer, holds most of its grams
and is caught; a paraphrase in other words is not.
Hashes are 64 bits (`word_gram_hashes`): at 10^8 pool grams against 10^6 item grams, about 10^-5 false matches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mygo.atomic import atomic_path
from mygo.data.dedup import word_gram_hashes

logger = logging.getLogger(__name__)

REMOVED_ARTIFACT = "decontamination/removed.jsonl"
ITEMS_VERSION = 1  # of the cached items' form: bump when `item_parts` changes
_WORD = re.compile(r"\w+")
_BATCH = 10_000  # pool records hashed at a time


@dataclass(frozen=True)
class DecontaminationSettings:
    enabled: bool = True
    tasks: tuple[str, ...] = ()
    ngram: int = 8
    min_ngram: int = 6
    threshold: float = 0.7
    max_items: int = 10
    task_dir: str | None = None  # lm-eval task YAMLs beside lm-eval's own

    @classmethod
    def from_config(cls, dataset_cfg, task_dir: Path | None = None) -> DecontaminationSettings:
        cfg = dataset_cfg.get("decontamination") or {}
        settings = cls(
            enabled=bool(cfg.get("enabled", False)),  # configs from before the knob: not checked, as then
            tasks=tuple(str(task) for task in cfg.get("tasks") or ()),
            ngram=int(cfg.get("ngram", 8)),
            min_ngram=int(cfg.get("min_ngram", 6)),
            threshold=float(cfg.get("threshold", 0.7)),
            max_items=int(cfg.get("max_items", 10)),
            task_dir=str(cfg.get("task_dir") or task_dir or "") or None,
        )
        if settings.min_ngram > settings.ngram:
            raise ValueError(
                f"dataset.decontamination.min_ngram={settings.min_ngram} is over ngram={settings.ngram}: "
                "an item is matched by grams of at most `ngram` words"
            )
        return settings


@dataclass(frozen=True)
class EvalItem:
    task: str
    split: str  # validation | test | fewshot
    text: str


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class ItemGrams:
    """The evaluation items' distinct grams, by gram length: the sorted distinct hashes, and for each the items
    holding it (`holders[starts[g]:starts[g + 1]]`); and each item's number of distinct grams."""

    items: list[EvalItem]
    by_size: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    too_short: int = 0

    @classmethod
    def of(cls, items: list[EvalItem], ngram: int, min_ngram: int, max_items: int = 10) -> ItemGrams:
        item_words = [words(item.text) for item in items]
        sizes = np.array([min(len(each), ngram) for each in item_words], dtype=np.int64)
        grams = cls(items, counts=np.zeros(len(items), dtype=np.int64), too_short=int((sizes < min_ngram).sum()))
        for size in sorted(set(sizes[sizes >= min_ngram].tolist())):
            chosen = np.flatnonzero(sizes == size)
            owner, hashes, _ = word_gram_hashes([item_words[i] for i in chosen], size)
            pairs = np.unique(np.stack([hashes, chosen[owner].astype(np.uint64)]), axis=1)  # distinct (gram, item)
            _, first, sharing = np.unique(pairs[0], return_inverse=True, return_counts=True)
            pairs = pairs[:, sharing[first] <= max_items]  # a gram of more items is the tasks' template
            distinct, starts = np.unique(pairs[0], return_index=True)
            grams.by_size[size] = (distinct, np.append(starts, pairs.shape[1]), pairs[1].astype(np.int64))
            np.add.at(grams.counts, pairs[1].astype(np.int64), 1)
        grams.too_short += int(((sizes >= min_ngram) & (grams.counts == 0)).sum())  # only template grams
        return grams


@dataclass(frozen=True)
class Match:
    row: int  # pool row
    task: str
    split: str
    ngram: str  # the first shared gram's words
    share: float  # the share of the item's grams the record holds


@dataclass
class DecontaminationReport:
    settings: DecontaminationSettings
    num_records: int
    matches: list[Match]  # one per contaminated record (its first match), by row
    items: dict[str, int]  # "<task>/<split>" -> items checked
    too_short: int  # items too short to check
    skipped: dict[str, str]  # task -> why its data could not be loaded here
    seconds: float = 0.0

    @property
    def removed(self) -> np.ndarray:
        return np.array([match.row for match in self.matches], dtype=np.int64)

    def metrics(self, sources: Sequence[str] | Mapping[int, str]) -> dict[str, float]:
        metrics = {
            "decontam/removed": float(len(self.matches)),
            "decontam/items": float(sum(self.items.values())),
            "decontam/items_too_short": float(self.too_short),
            "decontam/tasks_skipped": float(len(self.skipped)),
            "decontam/seconds": self.seconds,
        }
        for task in sorted({key.split("/")[0] for key in self.items}):
            metrics[f"decontam/removed/task/{task}"] = float(sum(m.task == task for m in self.matches))
        for source, count in Counter(sources[m.row] for m in self.matches).items():
            metrics[f"decontam/removed/source/{source}"] = float(count)
        return metrics

    def removed_jsonl(self, ids: Sequence[str] | Mapping[int, str], sources: Sequence[str] | Mapping[int, str]) -> str:
        """One line per removed record: its id and source, and the task, split and n-gram it shares."""
        lines = [
            json.dumps(
                {"id": ids[m.row], "source": sources[m.row], "task": m.task, "split": m.split, "ngram": m.ngram}
                | {"share": round(m.share, 4)}
            )
            for m in self.matches
        ]
        return "".join(line + "\n" for line in lines)

    def description(self) -> str:
        """The report for the run's description (markdown)."""
        checked = ", ".join(f"{key} ({count})" for key, count in sorted(self.items.items())) or "none"
        lines = [
            f"**Decontamination**: {len(self.matches)} of {self.num_records} pool records removed, each holding "
            f"at least {self.settings.threshold:.0%} of an evaluation item's {self.settings.ngram}-word grams (an "
            f"item of {self.settings.min_ngram}-{self.settings.ngram - 1} words: all of its words). Items checked: "
            f"{checked}; {self.too_short} too short to check."
        ]
        for task, why in sorted(self.skipped.items()):
            lines.append(f"Not checked: {task} ({why}).")
        return "\n\n".join(lines)


@functools.cache  # indexing lm-eval's tasks takes seconds: once per process
def _task_manager(task_dir: str | None):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=task_dir)


def task_docs(name: str, task_dir: str | None, key: str) -> list[tuple[str, str, object, dict]]:
    """(task, split, the task object, doc) of every validation, test and few-shot document of an lm-eval task or
    group; an unknown name is an error naming `key`. Loading errors (a hub dataset offline) propagate."""
    manager = _task_manager(task_dir)
    if name not in manager.all_tasks:
        raise ValueError(f"{key}: unknown lm-eval task {name!r}")
    docs = []
    for task_name, task in manager.load([name])["tasks"].items():
        for split, split_docs in _splits(task):
            docs += [(str(task_name), split, task, doc) for doc in split_docs]
    return docs


def eval_items(tasks: Iterable[str], task_dir: str | None) -> tuple[list[EvalItem], dict[str, str]]:
    """Every validation, test and few-shot item of the named lm-eval tasks, and the tasks that could not be
    loaded here with the reason."""
    items, skipped = [], {}
    for name in tasks:
        try:
            docs = task_docs(name, task_dir, "dataset.decontamination.tasks")
        except ValueError:
            raise
        except Exception as error:  # noqa: BLE001 - lm-eval raises whatever its dataset loader raises
            skipped[name] = f"its data could not be loaded here: {type(error).__name__}: {str(error)[:200]}"
            logger.warning("decontamination: %s is not checked: %s", name, skipped[name])
            continue
        items += [EvalItem(task_name, split, " ".join(item_parts(task, doc))) for task_name, split, task, doc in docs]
    return items, skipped


def _splits(task) -> list[tuple[str, Iterable]]:
    splits = []
    if task.has_validation_docs():
        splits.append(("validation", task.validation_docs()))
    if task.has_test_docs():
        splits.append(("test", task.test_docs()))
    fewshot = task.fewshot_docs() if getattr(task.config, "fewshot_split", None) else None
    if fewshot is not None:
        splits.append(("fewshot", fewshot))
    return splits


def item_parts(task, doc) -> tuple[str, str]:
    """The item as a model sees it: its prompt, and its answer (a multiple-choice answer as its choice's text)."""
    prompt, target = task.doc_to_text(doc), task.doc_to_target(doc)
    if isinstance(target, int) and task.config.doc_to_choice is not None:
        target = task.doc_to_choice(doc)[target]
    return str(prompt), str(target)


def find_contamination(
    texts: Iterable[str], items: list[EvalItem], settings: DecontaminationSettings
) -> tuple[list[Match], int]:
    """The pool records (texts in pool order) that hold at least `threshold` of some item's distinct grams, each
    with the item it holds most of; and the number of items too short to check."""
    grams = ItemGrams.of(items, settings.ngram, settings.min_ngram, settings.max_items)
    matches: list[Match] = []
    batch: list[list[str]] = []
    offset = 0

    def check(batch: list[list[str]], offset: int) -> None:
        rows, held, first = [], [], {}
        for size, (distinct, starts, holders) in grams.by_size.items():
            owner, pool_hashes, start = word_gram_hashes(batch, size)
            at = np.minimum(np.searchsorted(distinct, pool_hashes), len(distinct) - 1)
            hit = np.flatnonzero(distinct[at] == pool_hashes)
            pairs = np.unique(np.stack([owner[hit], at[hit]]), axis=1)  # distinct (record, item gram)
            spans = starts[pairs[1] + 1] - starts[pairs[1]]
            rows.append(np.repeat(pairs[0], spans))
            held.append(
                holders[
                    np.concatenate(
                        [np.arange(a, b) for a, b in zip(starts[pairs[1]], starts[pairs[1] + 1], strict=True)]
                    )
                    if len(spans)
                    else np.zeros(0, dtype=np.int64)
                ]
            )
            for gram in hit:
                first.setdefault(int(owner[gram]), " ".join(batch[int(owner[gram])][start[gram] : start[gram] + size]))
        if not rows:
            return
        record_item, counts = np.unique(
            np.stack([np.concatenate(rows), np.concatenate(held)]), axis=1, return_counts=True
        )
        share = counts / grams.counts[record_item[1]]
        best: dict[int, tuple[float, int]] = {}
        for (row, item), value in zip(record_item.T, share, strict=True):
            if value >= settings.threshold and value > best.get(int(row), (-1.0, 0))[0]:
                best[int(row)] = (float(value), int(item))
        for row in sorted(best):
            value, item = best[row]
            matches.append(Match(offset + row, items[item].task, items[item].split, first[row], value))

    for text in texts:
        batch.append(words(text))
        if len(batch) == _BATCH:
            check(batch, offset)
            offset, batch = offset + len(batch), []
    if batch:
        check(batch, offset)
    return matches, grams.too_short


def cached_eval_items(
    tasks: Sequence[str], task_dir: str | None, cache_dir: Path | None
) -> tuple[list[EvalItem], dict[str, str]]:
    """`eval_items`, kept under `cache_dir` keyed by the task names, the task YAMLs' and data files' contents and
    lm-eval's version: loading the tasks takes seconds, and warmup and score both need them. A result with a task
    skipped is not kept, so that a machine that can load it checks it."""
    import lm_eval

    digest = hashlib.sha256(json.dumps([ITEMS_VERSION, list(tasks), lm_eval.__version__]).encode())
    for path in sorted(Path(task_dir).rglob("*")) if task_dir else []:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(task_dir)).encode() + b"\0" + path.read_bytes())
    cached = cache_dir / f"items-{digest.hexdigest()[:16]}.jsonl" if cache_dir else None
    if cached is not None and cached.is_file():
        lines = cached.read_text().splitlines()
        return [EvalItem(**json.loads(line)) for line in lines], {}
    items, skipped = eval_items(tasks, task_dir)
    if cached is not None and not skipped:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as temporary:
            temporary.write_text("".join(json.dumps(asdict(item)) + "\n" for item in items))
    return items, skipped


def decontaminate(
    texts: Iterable[str], num_records: int, settings: DecontaminationSettings, cache_dir: Path | None = None
) -> DecontaminationReport:
    """Check the pool's texts against the settings' tasks (`find_contamination`); their items are kept under
    `cache_dir` (`cached_eval_items`)."""
    started = time.perf_counter()
    items, skipped = cached_eval_items(settings.tasks, settings.task_dir, cache_dir)
    matches, too_short = find_contamination(texts, items, settings)
    report = DecontaminationReport(
        settings, num_records, matches, dict(Counter(f"{i.task}/{i.split}" for i in items)), too_short, skipped
    )
    report.seconds = time.perf_counter() - started
    logger.info("decontamination: %d of %d records removed in %.1f s", len(matches), num_records, report.seconds)
    return report
