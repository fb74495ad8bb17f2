"""Atomic writes: two writers of one file never mix their bytes; a model directory appears only when complete."""

import subprocess
import sys

import pytest

from mygo.atomic import atomic_directory, atomic_path
from tests.helpers import REPO


def test_two_writers_of_one_file_each_write_a_whole_file(tmp_path):
    """Writer B starts and finishes while A is halfway: with a shared temporary name the result was BBBBBBBBBBAAAA."""
    path = tmp_path / "index.parquet"
    with atomic_path(path) as a, a.open("wb") as first:
        first.write(b"A" * 10)
        first.flush()
        with atomic_path(path) as b, b.open("wb") as second:
            second.write(b"B" * 10)
        assert path.read_bytes() == b"B" * 10
        first.write(b"A" * 4)
    assert path.read_bytes() == b"A" * 14
    assert [p.name for p in tmp_path.iterdir()] == ["index.parquet"]


def test_concurrent_processes_writing_one_file_leave_one_whole_version(tmp_path):
    path = tmp_path / "selected_data.jsonl"
    script = (
        "import sys; from pathlib import Path; from mygo.atomic import atomic_path\n"
        "for _ in range(200):\n"
        "    with atomic_path(Path(sys.argv[1])) as t, t.open('wb') as f:\n"
        "        [f.write(sys.argv[2].encode() * 1000) for _ in range(20)]\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": ""}
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), letter], env=env) for letter in "AB"]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert path.read_bytes() in (b"A" * 20000, b"B" * 20000)
    assert [p.name for p in tmp_path.iterdir()] == ["selected_data.jsonl"]


def test_a_failed_save_leaves_no_directory_and_a_finished_one_replaces_the_old(tmp_path):
    model_dir = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(model_dir) as saving:
        (saving / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed while saving")
    assert list(tmp_path.iterdir()) == []

    for content in (b"first", b"second"):
        with atomic_directory(model_dir) as saving:
            (saving / "model.safetensors").write_bytes(content)
    assert (model_dir / "model.safetensors").read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
