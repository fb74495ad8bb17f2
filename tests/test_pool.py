"""Loading the pool in the LESS layout: records, subsets, and every kind of bad input named precisely."""

import json
from pathlib import Path

import pytest

from mygo.data.pool import PoolError, iter_records_at, load_pool, records_at, take_subset


def conversation(record_id: str, dataset: str, *turns: tuple[str, str], **extra) -> dict:
    return {"dataset": dataset, "id": record_id, "messages": [{"role": r, "content": c} for r, c in turns], **extra}


def write_pool(root: Path, files: dict[str, list]) -> Path:
    """files: {"dolly": [record or raw line, ...]} -> <root>/dolly/dolly_data.jsonl."""
    for name, lines in files.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
        (folder / f"{name}_data.jsonl").write_text(text)
    return root


@pytest.fixture
def pool_dir(tmp_path) -> Path:
    return write_pool(
        tmp_path / "pool",
        {
            "dolly": [
                conversation(f"dolly_{i}", "dolly", ("user", f"question {i}"), ("assistant", f"answer {i}"))
                for i in range(6)
            ],
            "oasst1": [
                conversation(
                    "oasst1_0",
                    "oasst1",
                    ("system", "be brief"),
                    ("user", "hi"),
                    ("assistant", "hello"),
                    ("user", "and?"),
                    ("assistant", "bye"),
                )
            ],
        },
    )


def test_loads_multi_turn_records_with_their_origin(pool_dir):
    pool = load_pool(pool_dir)
    assert pool.dataset_names == ["dolly", "oasst1"] and len(pool.records) == 7
    record = pool.records[6]
    assert record["id"] == "oasst1_0" and [m["role"] for m in record["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert Path(record["file"]).name == "oasst1_data.jsonl" and record["line"] == 1
    assert not pool.has_noise_labels
    assert pool.stats.metrics()["data/records/dolly"] == 6.0


def test_dataset_names_select_and_unknown_names_list_what_exists(pool_dir):
    assert len(load_pool(pool_dir, ["oasst1"]).records) == 1
    with pytest.raises(PoolError, match=r"\['flan_v2'\] not found .* found: \['dolly', 'oasst1'\]"):
        load_pool(pool_dir, ["dolly", "flan_v2"])


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_pool(tmp_path / "nowhere")


def test_malformed_line_names_file_and_line_or_is_skipped_and_counted(tmp_path):
    good = conversation("dolly_0", "dolly", ("user", "q"), ("assistant", "a"))
    root = write_pool(tmp_path, {"dolly": [good, '{"id": "dolly_1", "messages": [', good | {"id": "dolly_2"}]})
    with pytest.raises(PoolError, match=r"dolly_data\.jsonl:2: not a JSON record"):
        load_pool(root)
    pool = load_pool(root, skip_bad_lines=True)
    assert list(pool.records["id"]) == ["dolly_0", "dolly_2"] and pool.stats.bad_lines == 1


def test_non_utf8_bytes_name_the_line(tmp_path):
    root = write_pool(tmp_path, {"dolly": [conversation("dolly_0", "dolly", ("user", "q"), ("assistant", "a"))]})
    with (root / "dolly" / "dolly_data.jsonl").open("ab") as handle:
        handle.write(b'{"id": "x\xff\xfe"}\n')
    with pytest.raises(PoolError, match=r"dolly_data\.jsonl:2: .*utf-8"):
        load_pool(root)


def test_records_without_answer_or_with_empty_content_are_skipped_and_counted(tmp_path):
    root = write_pool(
        tmp_path,
        {
            "cot": [
                conversation("cot_0", "cot", ("user", "q"), ("assistant", "a")),
                conversation("cot_1", "cot", ("user", "only a question")),
                conversation("cot_2", "cot", ("user", "q"), ("assistant", "   ")),
            ]
        },
    )
    pool = load_pool(root)
    assert list(pool.records["id"]) == ["cot_0"]
    assert pool.stats.skipped_no_assistant == 1 and pool.stats.skipped_empty_content == 1


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (conversation("cot_0", "cot", ("user", "q"), ("robot", "a")), r"id 'cot_0'.*messages\[1\]\.role is 'robot'"),
        (
            {"dataset": "cot", "id": "cot_0", "messages": [{"role": "user", "content": 3}]},
            r"id 'cot_0'.*content must be a string",
        ),
        ({"dataset": "cot", "id": "", "messages": []}, r"cot_data\.jsonl:1: field 'id'"),
        ({"dataset": "cot", "id": 1.5, "messages": []}, r"cot_data\.jsonl:1: field 'id' .* integer, got 1\.5"),
        (
            conversation("cot_0", "dolly", ("user", "q"), ("assistant", "a")),
            r"'dataset' is 'dolly' but .* folder 'cot'",
        ),
    ],
)
def test_structural_errors_name_the_record(tmp_path, record, message):
    with pytest.raises(PoolError, match=message):
        load_pool(write_pool(tmp_path, {"cot": [record]}))


def test_duplicate_ids_name_both_places(tmp_path):
    record = conversation("same", "cot", ("user", "q"), ("assistant", "a"))
    with pytest.raises(PoolError, match=r"duplicate record id 'same': .*:1 and .*:2"):
        load_pool(write_pool(tmp_path, {"cot": [record, record]}))


def test_noise_labels_are_kept_when_present(tmp_path):
    records = [
        conversation("cot_0", "cot", ("user", "q"), ("assistant", "a"), mygo_noise=None),
        conversation("cot_1", "cot", ("user", "q"), ("assistant", "zzzz"), mygo_noise="random_chars"),
    ]
    pool = load_pool(write_pool(tmp_path, {"cot": records}))
    assert pool.has_noise_labels and list(pool.records["mygo_noise"]) == [None, "random_chars"]
    assert "mygo_topic" not in pool.records.column_names  # no record has one


def test_topic_labels_are_kept_when_any_record_has_one(tmp_path):
    records = [
        conversation("cot_0", "cot", ("user", "q"), ("assistant", "a"), mygo_topic="json"),
        conversation("cot_1", "cot", ("user", "q"), ("assistant", "b")),
    ]
    pool = load_pool(write_pool(tmp_path, {"cot": records}))
    assert list(pool.records["mygo_topic"]) == ["json", None] and not pool.has_noise_labels


def test_digest_follows_the_content(pool_dir):
    first = load_pool(pool_dir).digest
    assert load_pool(pool_dir).digest == first
    with (pool_dir / "dolly" / "dolly_data.jsonl").open("a") as handle:
        handle.write(json.dumps(conversation("dolly_new", "dolly", ("user", "q"), ("assistant", "a"))) + "\n")
    assert load_pool(pool_dir).digest != first


def test_the_pool_is_served_from_an_arrow_file_stored_by_its_digest_and_settings(pool_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="mygo.data.pool")
    cache = tmp_path / "cache"
    first = load_pool(pool_dir, cache_dir=cache)
    assert first.records.cache_files and Path(first.records.cache_files[0]["filename"]).parent == cache  # mapped
    assert "reusing" not in caplog.text
    again = load_pool(pool_dir, cache_dir=cache)
    assert "reusing" in caplog.text  # mapped back, nothing parsed
    assert again.records.to_list() == first.records.to_list() == load_pool(pool_dir).records.to_list()
    assert (again.digest, again.stats, again.formats) == (first.digest, first.stats, first.formats)
    assert len(list(cache.glob("pool-*.arrow"))) == 1
    load_pool(pool_dir, skip_bad_lines=True, cache_dir=cache)  # other settings: a pool of their own
    with (pool_dir / "dolly" / "dolly_data.jsonl").open("a") as handle:  # other content: a pool of its own
        handle.write(json.dumps(conversation("dolly_new", "dolly", ("user", "q"), ("assistant", "a"))) + "\n")
    grown = load_pool(pool_dir, cache_dir=cache)
    assert len(grown.records) == len(first.records) + 1 and grown.digest != first.digest
    assert len(list(cache.glob("pool-*.arrow"))) == 3


def test_a_pool_that_fails_its_checks_is_not_stored(tmp_path):
    record = conversation("same", "cot", ("user", "q"), ("assistant", "a"))
    pool = write_pool(tmp_path / "pool", {"cot": [record, record]})
    for _ in range(2):  # refused again, not served from the store
        with pytest.raises(PoolError, match="duplicate record id 'same'"):
            load_pool(pool, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("pool-*"))


def test_subset_is_seeded_sized_and_ordered_on_request(pool_dir):
    records = load_pool(pool_dir).records
    subset = take_subset(records, 0.5, seed=1, shuffle=False)
    assert len(subset) == 4 and list(subset["id"]) == sorted(subset["id"], key=list(records["id"]).index)
    assert list(take_subset(records, 0.5, seed=1, shuffle=False)["id"]) == list(subset["id"])
    shuffled = take_subset(records, 0.5, seed=1, shuffle=True)
    assert sorted(shuffled["id"]) == sorted(subset["id"])
    assert len({tuple(take_subset(records, 0.5, seed=s, shuffle=False)["id"]) for s in range(8)}) > 1
    with pytest.raises(ValueError, match="subset_ratio must be in"):
        take_subset(records, 0.0, seed=1, shuffle=False)


def test_an_empty_pool_is_named(tmp_path):
    empty = write_pool(tmp_path / "pool", {"dolly": []})
    with pytest.raises(PoolError, match=f"no usable records in {empty}"):
        load_pool(empty)
    only_questions = write_pool(tmp_path / "questions", {"cot": [conversation("c0", "cot", ("user", "why?"))]})
    with pytest.raises(PoolError, match="no usable records"):
        load_pool(only_questions)


def test_a_huge_record_loads_and_is_truncated_when_encoded(tmp_path):
    from mygo.builtin.tokenizer import train_bpe_tokenizer
    from mygo.data.chat import ChatEncoding, encode_messages

    huge_answer = "the answer goes on " * 200_000  # 3.8 MB in one JSON line
    pool = load_pool(
        write_pool(
            tmp_path / "pool", {"dolly": [conversation("big", "dolly", ("user", "tell"), ("assistant", huge_answer))]}
        )
    )
    assert len(pool.records[0]["messages"][1]["content"]) == len(huge_answer)
    tokenizer = train_bpe_tokenizer(["the answer goes on and on"] * 50, vocab_size=300)
    encoded = encode_messages(tokenizer, pool.records[0]["messages"], ChatEncoding(max_sequence_length=256))
    assert encoded["truncated"] and encoded["length"] == 256 and encoded["num_label_tokens"] > 0


def test_records_at_reads_the_records_at_their_locations_in_the_order_asked(tmp_path):
    cot = [conversation(f"cot_{i}", "cot", ("user", "q"), ("assistant", f"a{i}")) for i in range(3)]
    dolly = [conversation("dolly_0", "dolly", ("user", "q"), ("assistant", "d"))]
    pool = load_pool(write_pool(tmp_path, {"cot": cot, "dolly": dolly}))
    where = {r["id"]: (r["file"], r["line"]) for r in pool.records}
    asked = ["dolly_0", "cot_2", "cot_0", "cot_2"]
    assert [r["id"] for r in records_at([where[i] for i in asked])] == asked
    with pytest.raises(PoolError, match=r"cot_data.jsonl has no line 9"):
        records_at([(where["cot_0"][0], 9)])
    # One at a time, for locations in pool order (as a score run's index has them), a subset included.
    in_order = [where[i] for i in ("cot_0", "cot_2", "dolly_0")]
    assert [r["id"] for r in iter_records_at(in_order)] == ["cot_0", "cot_2", "dolly_0"]
    with pytest.raises(ValueError, match="not in ascending line order"):
        list(iter_records_at([where["cot_2"], where["cot_0"]]))
    with pytest.raises(PoolError, match=r"cot_data.jsonl has no line 9"):
        list(iter_records_at([where["cot_2"], (where["cot_0"][0], 9)]))
