"""benchmarks/gpu.py --small, run as the GPU machine would run it: without MLflow, Hydra, OmegaConf, Optuna or
datasets importable. It keeps the one prepared GPU command working between the rare sessions that have a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess

SCRIPT = REPO / "benchmarks" / "gpu.py"
ABSENT = ("mlflow", "hydra", "omegaconf", "optuna", "datasets")
# Installed as sitecustomize (imported at start-up, before any other code): the packages look not installed.
# A None in sys.modules makes `import x` raise ModuleNotFoundError and importlib.util.find_spec("x") return None,
# as for a package that is absent (libraries probe optional packages with find_spec); the finder also refuses
# them should anything drop those entries.
SITECUSTOMIZE = textwrap.dedent(
    f"""
    import sys

    ABSENT = {ABSENT!r}


    class Absent:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ABSENT:
                raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
            return None


    sys.meta_path.insert(0, Absent())
    for name in ABSENT:
        sys.modules[name] = None
    """
)


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a machine without the tracking and config stack, with this checkout's mygo."""
    hide = tmp_path_factory.mktemp("hide")
    (hide / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(hide), str(REPO)])
    return env


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def small_run(bare_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    result = run(bare_env, "--small", "--device", "cpu", "--out", str(out))
    return result, json.loads(out.read_text()) if out.exists() else None


def test_the_hidden_packages_are_not_importable(bare_env):
    probe = (
        "import importlib, importlib.util\n"
        f"for name in {ABSENT!r}:\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise AssertionError(name + ' imported')\n"
        "import mlflow\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=bare_env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr and "AssertionError" not in result.stderr, result.stderr


def test_the_command_and_its_modules_import_no_heavy_package(bare_env):
    """Each part imports torch, transformers, peft, accelerate and mygo when it runs, so a broken one fails that part
    only: importing the command and every module of benchmarks/gpu_bench/ imports none of them."""
    modules = sorted(path.stem for path in (REPO / "benchmarks" / "gpu_bench").glob("*.py") if path.stem != "__init__")
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        "import gpu\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('gpu_bench.' + name)\n"
        "heavy = ('torch', 'transformers', 'peft', 'accelerate', 'mygo', 'sklearn')\n"
        "print(sorted(name for name in sys.modules if name.partition('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=bare_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert {"forward", "harness", "kmeans", "report", "runner", "scoring", "training", "workload"} <= set(modules)


def test_the_small_run_measures_every_part_without_the_tracking_stack(small_run):
    result, report = small_run
    assert result.returncode == 0, result.stderr[-4000:]
    assert report is not None
    parts = report["parts"]
    assert list(parts) == ["forward", "scoring", "kmeans", "warmup", "finetune"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "ok")
    forward, scoring, kmeans = parts["forward"]["metrics"], parts["scoring"]["metrics"], parts["kmeans"]["metrics"]
    assert forward["tokens_per_s"] > 0 and forward["olmoe_tokens_per_s"] > 0 and forward["select_moe_over_olmoe"] > 0
    assert set(forward["profile"]["select_moe"]) >= {"forward_ms", "attention_ms", "experts_ms", "quality_gate_ms"}
    assert scoring["complete"] and scoring["scored_samples"] == scoring["pool_samples"]
    assert scoring["samples_per_s"] > 0 and scoring["tokens_per_s"] > 0
    assert scoring["projected_270k_minutes"] > 0
    assert kmeans["seconds_sklearn"] > 0 and kmeans["seconds_torch"] > 0
    assert kmeans["inertia_ratio_torch"] == pytest.approx(1.0, abs=0.05)  # the backends agree
    for name in ("warmup", "finetune"):
        metrics = parts[name]["metrics"]
        assert metrics["optimizer_steps_per_s"] > 0 and metrics["tokens_per_s"] > 0, name
        assert all(loss == loss for loss in metrics["losses"]), name  # no NaN
    assert report["environment"]["small"] is True and report["environment"]["versions"]["torch"]
    assert "part" in result.stdout and "met?" in result.stdout  # the table
    for label in ("Select-MoE / OLMoE time", "270k LESS pool, minutes", "inertia torch / CPU default"):
        assert label in result.stdout, label
    assert [row["part"] for row in report["table"]].count("forward") >= 3


def test_only_the_chosen_parts_run_and_a_failing_part_stops_no_other(bare_env, tmp_path):
    out = tmp_path / "gpu.json"
    result = run(bare_env, "--small", "--device", "cpu", "--parts", "kmeans,forward", "--fail-part", "forward",
                 "--out", str(out))  # fmt: skip
    assert result.returncode == 1
    report = json.loads(out.read_text())
    assert list(report["parts"]) == ["forward", "kmeans"]
    assert report["parts"]["forward"]["status"] == "failed"
    assert "injected" in report["parts"]["forward"]["error"]
    assert report["parts"]["kmeans"]["status"] == "ok"
    assert "failed: RuntimeError" in result.stdout  # the table says why


def test_an_unknown_part_is_an_argument_error(bare_env, tmp_path):
    result = run(bare_env, "--small", "--parts", "forward,bogus", "--out", str(tmp_path / "gpu.json"))
    assert result.returncode == 2
    assert "bogus" in result.stderr and "forward,scoring,kmeans,warmup,finetune" in result.stderr
    assert not (tmp_path / "gpu.json").exists()
