"""Decontamination of a LESS-sized pool with planted evaluation items: `python benchmarks/decontamination.py`.

The pool: `--records` texts of `dedup.py`'s generator (a question and an answer of words drawn Zipf-like from the
stdlib docs' vocabulary, lognormal lengths), none of which holds an evaluation item. Planted among them, each a test
item of the demo preset's tasks (`configs/dataset/demo.yaml`: the tiny target's five):
- copies: the item's prompt and answer as a record of their own;
- copies inside a longer record: the item between a generated question and a generated answer;
- near misses: the item with every other word of its answer and a third of its prompt's words replaced, which the
  rule is not meant to catch (reported, counted neither way).

Reported: seconds (the tasks' items loaded, then every record checked by `find_contamination`), recall on the
copies (both kinds), clean records removed (false positives) and near misses removed. The last line is
`records=N seconds=S recall=R false_positives=F`.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dedup import Text, vocabulary  # noqa: E402

from mygo.config import config_dir, load_config  # noqa: E402
from mygo.data.decontamination import DecontaminationSettings, cached_eval_items, find_contamination  # noqa: E402


def sentence(text: Text, low: int, high: int) -> str:
    return " ".join(text.sentence(int(text.rng.integers(low, high))))


def near_miss(item: str, rng: random.Random, words: list[str]) -> str:
    prompt, _, answer = item.rpartition("\n")
    prompt_words = [w if rng.random() > 1 / 3 else rng.choice(words) for w in prompt.split()]
    answer_words = [w if i % 2 else rng.choice(words) for i, w in enumerate(answer.split())]
    return " ".join(prompt_words) + "\n" + " ".join(answer_words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=270_000)
    parser.add_argument("--planted", type=int, default=600, help="test items planted, in each of the three forms")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = DecontaminationSettings.from_config(load_config("warmup").dataset, config_dir() / "eval_tasks")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        items, _ = cached_eval_items(settings.tasks, settings.task_dir, Path(cache))
    loaded = time.perf_counter() - started
    tests = [item.text for item in items if item.split == "test"]
    rng = random.Random(args.seed)
    planted = rng.sample(tests, min(args.planted, len(tests)))

    words = vocabulary()
    text = Text(words, args.seed)
    texts = [sentence(text, 5, 25) + "\n" + sentence(text, 10, 200) for _ in range(args.records)]
    kinds = ["clean"] * len(texts)
    for item in planted:
        texts.append(item)
        kinds.append("copy")
        texts.append(sentence(text, 5, 25) + "\n" + item + "\n" + sentence(text, 10, 100))
        kinds.append("copy inside")
        texts.append(near_miss(item, rng, words))
        kinds.append("near miss")
    order = list(range(len(texts)))
    rng.shuffle(order)
    texts, kinds = [texts[i] for i in order], [kinds[i] for i in order]

    checking = time.perf_counter()
    matches, _ = find_contamination(texts, items, settings)
    checked = time.perf_counter() - checking
    removed = {match.row for match in matches}
    count = {kind: sum(k == kind for k in kinds) for kind in ("clean", "copy", "copy inside", "near miss")}
    caught = {kind: sum(kinds[row] == kind for row in removed) for kind in count}
    recall = (caught["copy"] + caught["copy inside"]) / max(1, count["copy"] + count["copy inside"])
    print(f"records      {len(texts)} ({count['clean']} clean, {len(planted)} test items planted in three forms)")
    print(f"items        {len(items)} from {', '.join(settings.tasks)} (loaded in {loaded:.1f} s)")
    for kind in ("copy", "copy inside", "near miss", "clean"):
        print(f"{kind:<12} {caught[kind]} of {count[kind]} removed")
    print(f"records={len(texts)} seconds={loaded + checked:.1f} recall={recall:.4f} false_positives={caught['clean']}")


if __name__ == "__main__":
    main()
