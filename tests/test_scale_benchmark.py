"""benchmarks/scale.py on a small pool: every step's line, the totals line, and the cached pool reused."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow  # runs the benchmark in subprocesses

SCRIPT = REPO / "benchmarks" / "scale.py"
STEPS = ("read", "dedup", "decontam", "signals", "select")
STEP_LINE = re.compile(r"^(\w+)\s+(\d+\.\d)\s+(\d+\.\d\d)(\s|$)")
LAST_LINE = re.compile(r"^records=(\d+) seconds=(\d+\.\d) peak_rss_gib=(\d+\.\d\d)$")


def run(*arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_scale_benchmark_steps_and_cache(tmp_path):
    first = run("--records", "3000", "--cache", str(tmp_path))
    lines = first.stdout.strip().splitlines()
    steps = {match[1]: match for line in lines if (match := STEP_LINE.match(line))}
    assert set(steps) == set(STEPS), first.stdout
    assert not any("FAILED" in line for line in lines)
    last = LAST_LINE.match(lines[-1])
    assert last, lines[-1]
    assert int(last[1]) == 3000
    assert float(last[2]) == pytest.approx(sum(float(m[2]) for m in steps.values()), abs=0.2)
    assert float(last[3]) == max(float(m[3]) for m in steps.values()) > 0
    assert "building a pool of 3000 records" in first.stderr
    assert (tmp_path / "pool" / "cot" / "cot_data.jsonl").is_file()

    second = run("--records", "3000", "--cache", str(tmp_path), "--steps", "read")
    assert "reusing the pool" in second.stderr and "building a pool" not in second.stderr, second.stderr
    assert STEP_LINE.match(second.stdout.splitlines()[1])[1] == "read"
    assert LAST_LINE.match(second.stdout.strip().splitlines()[-1])
