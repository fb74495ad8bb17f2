"""A pool edited after scoring: selection refuses lines that are not the scored records, and reuse sees the edit."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from mygo.config import load_config
from mygo.data.pool import PoolError, load_configured_pool, load_pool, pool_source, source_digest
from mygo.stages.select import write_selected_records
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import POOL_DIGEST_TAG, log_pool_input, stage_run


def record(record_id: str) -> dict:
    messages = [{"role": "user", "content": f"question {record_id}"}, {"role": "assistant", "content": "answer"}]
    return {"dataset": "dolly", "id": record_id, "messages": messages}


@pytest.fixture
def pool_file(tmp_path) -> Path:
    path = tmp_path / "pool" / "dolly" / "dolly_data.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(record(f"r{i}")) + "\n" for i in range(1, 6)))
    return path


def scored_index(pool_file: Path):
    """What the score stage keeps of the pool: one row per record with its file, line and digest."""
    return load_pool(pool_file.parents[1]).records.select_columns(["id", "file", "line", "record_digest"]).to_pandas()


def chosen(index, *ids: str) -> np.ndarray:
    return np.array([index.index[index["id"] == i][0] for i in ids])


def test_a_line_inserted_after_scoring_is_refused_naming_file_line_and_both_ids(pool_file, tmp_path):
    index = scored_index(pool_file)
    pool_file.write_text(json.dumps(record("r0")) + "\n" + pool_file.read_text())
    with pytest.raises(PoolError) as error:
        write_selected_records(index, chosen(index, "r2", "r4"), tmp_path / "selected.jsonl")
    assert f"{pool_file.resolve()}:2" in str(error.value)
    assert "'r2'" in str(error.value) and "'r1'" in str(error.value)
    assert not (tmp_path / "selected.jsonl").exists()


def test_a_record_edited_in_place_after_scoring_is_refused(pool_file, tmp_path):
    index = scored_index(pool_file)
    lines = pool_file.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("answer", "another answer")  # r3, same id, other content
    pool_file.write_text("".join(lines))
    with pytest.raises(PoolError, match=r"dolly_data.jsonl:3: record 'r3' changed after scoring"):
        write_selected_records(index, chosen(index, "r3"), tmp_path / "selected.jsonl")


def test_unchanged_records_are_copied_byte_for_byte_in_selection_order(pool_file, tmp_path):
    index = scored_index(pool_file)
    write_selected_records(index, chosen(index, "r4", "r2"), tmp_path / "selected.jsonl")
    original = pool_file.read_text().splitlines(keepends=True)
    assert (tmp_path / "selected.jsonl").read_text() == original[3] + original[1]


def test_source_digest_is_the_pool_digest_and_follows_the_content(pool_file):
    pool = load_pool(pool_file.parents[1])
    assert source_digest(pool_source(pool)) == pool.digest
    pool_file.write_text(pool_file.read_text() + json.dumps(record("r9")) + "\n")
    assert source_digest(pool_source(pool)) == load_pool(pool_file.parents[1]).digest != pool.digest
    pool_file.unlink()
    assert source_digest(pool_source(pool)) is None


def test_a_stage_run_on_an_edited_pool_is_not_reused(pool_file, tracking_store):
    """Reuse decides on a real store: the same config and code, but the pool's content changed."""
    cfg = load_config("warmup", [f"dataset.data_dir={pool_file.parents[1]}", "dataset.dataset_names=[dolly]"])

    def read_pool(cfg) -> str:  # what every stage that reads the pool records (warmup's, score's data step)
        with stage_run("warmup", cfg) as run:
            log_pool_input(load_configured_pool(cfg.dataset), context="training")
        return run.info.run_id

    first, reused = run_or_reuse("warmup", cfg, read_pool)
    assert not reused and mlflow.get_run(first).data.tags[POOL_DIGEST_TAG] == load_pool(pool_file.parents[1]).digest
    assert run_or_reuse("warmup", cfg, read_pool) == (first, True)

    original = pool_file.read_text()
    pool_file.write_text(json.dumps(record("r0")) + "\n" + original)
    second, reused = run_or_reuse("warmup", cfg, read_pool)
    assert not reused and second != first

    pool_file.write_text(original)  # the edit undone: the first run matches the pool again
    assert run_or_reuse("warmup", cfg, read_pool) == (first, True)
