"""Deduplication before scoring: exact and near duplicates, the keep rule, the switches, and a real score run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import mlflow
import numpy as np
import pytest
from omegaconf import OmegaConf

from mygo.analysis.score_shards import load_router_data
from mygo.config import load_config
from mygo.data.dedup import (
    GROUPS_ARTIFACT,
    DedupSettings,
    deduplicate,
    deduplicate_cached,
    jaccard,
    minhash_values,
    normalise,
    shingle_hashes,
    shingle_sets,
)
from mygo.data.demo_pool.build import ensure_demo_pool
from mygo.data.pool import load_pool
from mygo.stages.score import run_score
from mygo.stages.warmup import run_warmup
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG
from tests.helpers import artifact_paths, quick_warmup_overrides

# 73 words whose 5-grams are all distinct, so that changing a word changes exactly 5 of its 69 shingles.
ANSWER = (
    "The pathlib module offers classes representing filesystem paths with semantics appropriate for different "
    "operating systems. Path classes are divided between pure paths, which provide purely computational "
    "operations without input or output, and concrete paths, which inherit from pure paths but also provide "
    "input and output operations. If you have never used this module before or just are not sure which class "
    "is right for your task, Path is most likely what you need."
)


def record(record_id: str, answer: str, question: str = "What does pathlib do?") -> dict:
    return {
        "id": record_id,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
    }


def one_word_changed(text: str, position: int = 30, word: str = "CHANGED") -> str:
    words = text.split()
    return " ".join([*words[:position], word, *words[position + 1 :]])


def answer_jaccard(a: str, b: str, shingle: int = 5) -> float:
    return jaccard(shingle_hashes(normalise(a).split(), shingle), shingle_hashes(normalise(b).split(), shingle))


def removed_ids(report, records) -> set[str]:
    return {records[row]["id"] for group in report.groups for row in group.removed}


def test_exact_duplicates_under_new_ids_are_removed_whatever_their_case_and_spacing():
    original = record("a", ANSWER)
    shouted = record("b", "  " + ANSWER.upper().replace(" ", " \n\t "), question="WHAT does  pathlib do?")
    other_question = record("c", ANSWER, question="What does os.path do?")
    records = [original, shouted, other_question, record("d", "Something else entirely.")]
    report = deduplicate(records, DedupSettings(near=False))
    assert report.exact_removed == 1 and report.near_removed == 0
    assert report.kept.tolist() == [0, 2, 3]
    assert [(g.kind, g.kept, g.removed) for g in report.groups] == [("exact", 0, (1,))]
    # Roles count: the same texts with the turns' roles swapped are another conversation.
    swapped = {"id": "e", "messages": [{"role": "assistant", "content": m["content"]} for m in original["messages"]]}
    assert deduplicate([original, swapped], DedupSettings(near=False)).exact_removed == 0


def test_a_word_changed_is_a_near_duplicate_at_the_threshold_and_not_above_its_similarity():
    changed = one_word_changed(ANSWER)
    similarity = answer_jaccard(ANSWER, changed)
    assert 0.8 < similarity < 0.9  # 69 shingles, 5 of them changed
    records = [record("a", ANSWER), record("b", changed, question="Tell me about pathlib.")]
    at = deduplicate(records, DedupSettings(threshold=similarity))
    assert at.near_removed == 1 and at.kept.tolist() == [0]
    assert at.groups[0].kind == "near" and at.groups[0].jaccard == pytest.approx((similarity,))
    default = deduplicate(records, DedupSettings())  # 0.8: one word in 73 changed is a duplicate
    assert default.near_removed == 1
    above = deduplicate(records, DedupSettings(threshold=similarity + 0.01))
    assert above.near_removed == 0 and above.kept.tolist() == [0, 1]


def test_pairs_below_the_threshold_are_never_removed():
    # Many answers around one: every pair LSH proposes is checked on the shingle sets, so none below 0.8 goes.
    words = ANSWER.split()
    variants = [record("base", ANSWER)]
    for count in range(1, 12):  # change `count` spread-out words: similarity falls with each
        changed = list(words)
        for position in range(2, 60, 60 // count)[:count]:
            changed[position] = f"X{count}_{position}"
        variants.append(record(f"v{count}", " ".join(changed)))
    report = deduplicate(variants, DedupSettings(threshold=0.8))
    for group in report.groups:
        for row, value in zip(group.removed, group.jaccard, strict=True):
            kept_answer = variants[group.kept]["messages"][-1]["content"]
            assert value >= 0.8
            assert answer_jaccard(kept_answer, variants[row]["messages"][-1]["content"]) == pytest.approx(value)
    similarities = {r["id"]: answer_jaccard(ANSWER, r["messages"][-1]["content"]) for r in variants[1:]}
    assert {i for i, s in similarities.items() if s < 0.8} <= {r["id"] for r in variants} - removed_ids(
        report, variants
    )
    assert any(s < 0.8 for s in similarities.values()) and any(s >= 0.8 for s in similarities.values())


def test_the_first_record_in_pool_order_is_kept_and_groups_are_stars():
    a = ANSWER
    b = one_word_changed(a, 20, "ONE")  # near a
    c = one_word_changed(b, 45, "TWO")  # near b; a and c differ in two words, below a 0.8 threshold at 5-grams
    assert answer_jaccard(a, b) >= 0.8 and answer_jaccard(b, c) >= 0.8 and answer_jaccard(a, c) < 0.8
    records = [record("late", "unrelated answer " * 8), record("a", a), record("b", b), record("c", c)]
    report = deduplicate(records, DedupSettings())
    # b goes as a's duplicate; c is compared with what was kept (a), not with b, so it stays: no chains.
    assert report.kept.tolist() == [0, 1, 3]
    assert [(g.kind, g.kept, g.removed) for g in report.groups] == [("near", 1, (2,))]
    # Reversed order: c comes first and is kept, b goes as its duplicate, a stays.
    reversed_report = deduplicate([records[0], records[3], records[2], records[1]], DedupSettings())
    assert [(g.kept, g.removed) for g in reversed_report.groups] == [(1, (2,))]


def test_short_answers_are_left_to_exact_deduplication():
    records = [
        record("a", "Yes.", "Is 7 prime?"),
        record("b", "Yes.", "Is 11 prime?"),
        record("c", "Yes.", "Is 7 prime?"),
    ]
    report = deduplicate(records, DedupSettings(min_words=10))
    assert report.kept.tolist() == [0, 1] and report.exact_removed == 1 and report.near_removed == 0
    assert deduplicate(records, DedupSettings(min_words=1)).kept.tolist() == [0]  # then "yes" is "yes"


def test_the_switches_and_a_config_without_a_dedup_block():
    changed = one_word_changed(ANSWER)
    records = [record("a", ANSWER), record("b", ANSWER), record("c", changed)]
    assert deduplicate(records, DedupSettings()).kept.tolist() == [0]
    assert deduplicate(records, DedupSettings(near=False)).kept.tolist() == [0, 2]
    off = deduplicate(records, DedupSettings(enabled=False))
    assert off.kept.tolist() == [0, 1, 2] and off.groups == []
    # A run logged before deduplication existed has no block: it deduplicates nothing, as it did then.
    assert not DedupSettings.from_config(OmegaConf.create({"name": "demo"})).enabled
    block = OmegaConf.create({"dedup": {"enabled": True, "near": False, "threshold": 0.9}})
    assert DedupSettings.from_config(block) == DedupSettings(near=False, threshold=0.9)
    with pytest.raises(ValueError, match="threshold"):
        DedupSettings(threshold=0)


def test_the_groups_artifact_and_the_cache(tmp_path):
    records = [record("a", ANSWER), record("b", ANSWER), record("c", one_word_changed(ANSWER)), record("d", "x " * 3)]
    report = deduplicate(records, DedupSettings())
    lines = [json.loads(line) for line in report.groups_jsonl([r["id"] for r in records]).splitlines()]
    assert lines[0] == {"kind": "exact", "kept": "a", "removed": ["b"]}
    assert lines[1]["kind"] == "near" and lines[1]["kept"] == "a" and lines[1]["removed"] == ["c"]
    assert report.groups_jsonl(datasets.Dataset.from_list(records)) == report.groups_jsonl([r["id"] for r in records])
    assert report.metrics()["dedup/exact_removed"] == 1 and report.metrics()["dedup/near_removed"] == 1
    first = deduplicate_cached(records, "digest", DedupSettings(), tmp_path)
    [cached] = tmp_path.glob("dedup-*.json")
    cached.write_text(cached.read_text().replace(f'"seconds": {first.seconds}', '"seconds": 1234.5'))
    again = deduplicate_cached(records, "digest", DedupSettings(), tmp_path)
    assert again.seconds == 1234.5  # read back, not computed again
    assert again.kept.tolist() == first.kept.tolist() and again.groups == first.groups
    deduplicate_cached(records, "digest", DedupSettings(threshold=0.95), tmp_path)  # other settings: another entry
    assert len(list(tmp_path.glob("dedup-*.json"))) == 2


def test_batch_hashing_is_datasketchs_minhash_and_one_record_at_a_time():
    from datasketch import MinHash

    word_lists = [ANSWER.split(), ["just", "two"], [], one_word_changed(ANSWER).split(), ["a", "b", "a", "b", "a", "b"]]
    sets = shingle_sets(word_lists, 5)
    for words, hashes in zip(word_lists, sets, strict=True):
        assert np.array_equal(hashes, shingle_hashes(words, 5))  # a batch hashes each record as alone
        assert np.all(np.diff(hashes.astype(np.int64)) > 0)  # sorted, distinct
    assert (
        len(sets[0]) == len(ANSWER.split()) - 4 == 69 and len(sets[1]) == 1 and len(sets[2]) == 0 and len(sets[4]) == 2
    )
    present = [hashes for hashes in sets if len(hashes)]
    for hashes, signature in zip(present, minhash_values(present, 64), strict=True):
        reference = MinHash(num_perm=64, seed=1, hashfunc=lambda value: value)
        reference.update_batch(hashes.tolist())
        assert np.array_equal(signature, reference.hashvalues)


def datasketch_groups(records: list[dict], settings: DedupSettings) -> list[tuple[int, tuple[int, ...]]]:
    """The near groups of a datasketch MinHash LSH index queried and filled in pool order: what mygo's banded
    grouping must give (the exact duplicates left out first, as deduplicate does)."""
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(threshold=settings.threshold - 0.05, num_perm=settings.num_perm, weights=(0.05, 0.95))
    seen, kept, removed = set(), {}, {}
    for row, item in enumerate(records):
        key = tuple((m["role"], normalise(m["content"])) for m in item["messages"])
        words = normalise(" ".join(m["content"] for m in item["messages"] if m["role"] == "assistant")).split()
        if key in seen or len(words) < settings.min_words:
            seen.add(key)
            continue
        seen.add(key)
        hashes = shingle_hashes(words, settings.shingle)
        minhash = LeanMinHash(seed=1, hashvalues=minhash_values([hashes], settings.num_perm)[0], scheme="affine32")
        similar = [other for other in lsh.query(minhash) if jaccard(hashes, kept[other]) >= settings.threshold]
        if similar:
            removed.setdefault(min(similar), []).append(row)
        else:
            lsh.insert(row, minhash, check_duplication=False)
            kept[row] = hashes
    return [(row, tuple(rows)) for row, rows in sorted(removed.items())]


@pytest.mark.slow  # the planted pool's vocabulary is built from the standard library's docs: seconds
def test_near_groups_are_those_of_a_datasketch_index_filled_in_pool_order(tmp_path):
    from benchmarks.dedup import build_pool

    settings = DedupSettings(threshold=0.8, num_perm=128)
    planted = build_pool(tmp_path, 1500, exact=0.03, near=0.08, hard=0.03, settings=settings, seed=3)
    records = load_pool(tmp_path).records.to_list()
    report = deduplicate(records, settings)
    near = [(group.kept, group.removed) for group in report.groups if group.kind == "near"]
    assert near == datasketch_groups(records, settings)
    removed = {records[row]["id"] for group in report.groups for row in group.removed}
    assert len(near) > 30 and removed >= planted["exact"]
    assert not removed & planted["hard"]  # below the threshold: never removed


def test_a_pool_dataset_is_deduplicated_like_its_records(tmp_path):
    folder = tmp_path / "pool" / "dolly"
    folder.mkdir(parents=True)
    rows = [record("a", ANSWER), record("b", ANSWER.lower()), record("c", one_word_changed(ANSWER))]
    (folder / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = load_pool(tmp_path / "pool")
    assert deduplicate(pool.records, DedupSettings()).kept.tolist() == deduplicate(rows, DedupSettings()).kept.tolist()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_score_run_never_scores_removed_records_and_logs_the_groups(tracking_store, tmp_path):
    # The quick demo pool, plus an exact duplicate under a new id and a near duplicate with a word changed.
    demo = ensure_demo_pool(tmp_path / "demo", num_samples=120, noise_fraction=0.15, seed=0, max_answer_chars=600)
    pool_dir = tmp_path / "pool"
    shutil.copytree(demo, pool_dir)
    cot = pool_dir / "cot" / "cot_data.jsonl"
    lines = [json.loads(line) for line in cot.read_text().splitlines()]
    source = next(r for r in lines if r["mygo_noise"] is None and len(r["messages"][-1]["content"].split()) >= 40)
    exact = {
        **source,
        "id": "planted_exact",
        "messages": [{**m, "content": m["content"].upper()} for m in source["messages"]],
    }
    near_messages = [
        *source["messages"][:-1],
        {"role": "assistant", "content": one_word_changed(source["messages"][-1]["content"], 20)},
    ]
    near = {**source, "id": "planted_near", "messages": near_messages}
    with cot.open("a") as handle:
        handle.write(json.dumps(exact) + "\n" + json.dumps(near) + "\n")

    overrides = [*quick_warmup_overrides(tmp_path), f"dataset.data_dir={pool_dir}", "dataset.dedup.near=true"]
    warmup = mlflow.get_run(run_warmup(load_config("warmup", overrides)))
    assert warmup.data.metrics["dedup/exact_removed"] == 1 and warmup.data.metrics["dedup/near_removed"] >= 1
    assert warmup.data.metrics["data/pool_records"] == 122  # what was read; dedup/kept is what was used
    score_overrides = [f"upstream.warmup_run={warmup.info.run_id}", f"score.output_dir={tmp_path / 'score'}"]
    score = mlflow.get_run(run_score(load_config("score", score_overrides)))
    metrics = score.data.metrics
    assert metrics["dedup/exact_removed"] == 1 and metrics["dedup/near_removed"] >= 1
    removed = metrics["dedup/exact_removed"] + metrics["dedup/near_removed"]
    assert metrics["score/samples"] == metrics["dedup/kept"] == 122 - removed

    assert GROUPS_ARTIFACT in artifact_paths(score.info.run_id)
    text = mlflow.artifacts.load_text(f"runs:/{score.info.run_id}/{GROUPS_ARTIFACT}")
    groups = [json.loads(line) for line in text.splitlines()]
    assert {"kind": "exact", "kept": source["id"], "removed": ["planted_exact"]} in groups
    assert any(g["kind"] == "near" and g["kept"] == source["id"] and "planted_near" in g["removed"] for g in groups)
    gone = {record_id for g in groups for record_id in g["removed"]}
    assert len(gone) == removed
    scored = load_router_data(
        mlflow.artifacts.download_artifacts(run_id=score.info.run_id, artifact_path="router_data")
    )
    assert not gone & set(scored.index["id"]) and source["id"] in set(scored.index["id"])
    assert len(scored.index) == 122 - removed

    # Off for one score run (dataset_overrides): every record is scored, in another work directory.
    everything = mlflow.get_run(
        run_score(load_config("score", [*score_overrides, "upstream.dataset_overrides='dedup.enabled=false'"]))
    )
    assert everything.data.metrics["score/samples"] == 122 and "dedup/kept" not in everything.data.metrics
    assert Path(everything.data.tags[ROUTER_DATA_PATH_TAG]) != Path(score.data.tags[ROUTER_DATA_PATH_TAG])
