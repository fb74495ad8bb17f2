"""Shared fixtures: tiny real models, a real MLflow store per test, and one scored store per session.

Test tiers: `slow` marks what trains, runs a stage, a pipeline, a server or a subprocess (CONTRIBUTING.md).
`python -m pytest -m "not slow"` is the quick tier to run while editing; `python -m pytest` runs everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import torch
from transformers import OlmoeConfig, OlmoeForCausalLM

from tests.helpers import as_tracking_store, copy_store, quick_warmup_overrides, scored_copy, use_store

# Under pytest-xdist (`-n 2`), each worker and the processes it starts take one thread: two workers of two
# threads each on two cores would spend their time waiting on each other.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

TINY_ARCH = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_experts=8,
    num_experts_per_tok=2,
    max_position_embeddings=64,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=None,
)


@pytest.fixture
def olmoe_model() -> OlmoeForCausalLM:
    torch.manual_seed(0)
    return OlmoeForCausalLM(OlmoeConfig(**TINY_ARCH)).eval()


@pytest.fixture
def padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, TINY_ARCH["vocab_size"], (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = TINY_ARCH["pad_token_id"]
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema made (MLflow's migrations take about a second per new store)."""
    path = tmp_path_factory.mktemp("empty_store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_store(tmp_path, monkeypatch, empty_store):
    """A real MLflow store (SQLite + local artifacts) private to the test."""
    uri = copy_store(empty_store, tmp_path)
    use_store(uri, monkeypatch)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def scored_template(tmp_path_factory, empty_store) -> dict:
    """Built once per session: the quick tiny base and its conversion, a warmup on the 120-sample demo pool, and
    that pool scored. Modules take a copy of its store (`scored_copy`), never the store itself."""
    from mygo.config import load_config
    from mygo.stages.score import run_score
    from mygo.stages.warmup import run_warmup

    root = tmp_path_factory.mktemp("scored")
    uri = copy_store(empty_store, root)
    with pytest.MonkeyPatch.context() as patch:
        use_store(uri, patch)
        warmup = run_warmup(load_config("warmup", quick_warmup_overrides(root)))
        score = run_score(load_config("score", [f"upstream.warmup_run={warmup}", f"score.output_dir={root / 'score'}"]))
    return {"uri": uri, "root": root, "warmup_run": warmup, "score_run": score}


@pytest.fixture(scope="module")
def scored(scored_template, tmp_path_factory) -> dict:
    """The session's scored store, copied for this module."""
    return scored_copy(scored_template, tmp_path_factory)


@pytest.fixture
def store(scored, monkeypatch):
    """The module's scored store, as the tracking store of the test."""
    yield from as_tracking_store(scored, monkeypatch)


# The modules that take longest, first: xdist hands whole modules to its workers in collection order (--dist
# loadscope), and a long module handed out last keeps one worker busy while the other waits.
LONGEST_FIRST = (
    "test_entry_points.py",
    "test_faults.py",
    "test_entry_points_named.py",
    "test_faults_tracking_server.py",
    "test_sweeps.py",
    "test_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on the session's scored store needs a warmup and a score first: slow, whatever its module says.
    Then the longest modules first, the other slow ones next, the quick ones last."""
    for item in items:
        if "scored_template" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.path.name for item in items if "slow" in item.keywords}

    def order(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(name))
        return (1 if name in slow_modules else 2, 0)

    items.sort(key=order)  # stable: a module's tests keep their order


UNMARKED_LIMIT_S = 6.0


def pytest_terminal_summary(terminalreporter) -> None:
    """Name the tests that took long without the `slow` mark, so that the quick tier stays quick."""
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]
    long = [r for r in reports if r.when == "call" and r.duration > UNMARKED_LIMIT_S and "slow" not in r.keywords]
    if long:
        terminalreporter.section(f"tests over {UNMARKED_LIMIT_S:.0f} s without the slow mark")
        for report in sorted(long, key=lambda r: -r.duration):
            terminalreporter.write_line(f"{report.duration:6.1f}s {report.nodeid}")
