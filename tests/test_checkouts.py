"""The code that runs is the project being run: an entry point imports its own checkout's mygo/ and configs/
(whatever mygo is installed) and records that tree's digest and commit; a wheel install composes configs too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from mygo.tracking import code_version
from mygo.tracking.runs import STAGE_TAG
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # every test here trains, runs a stage, a server or a subprocess

PROJECT = (
    "mygo",
    "configs",
    "sweeps",
    "entrypoints",
    "MLproject",
    "conda.yaml",
    "pyproject.toml",
    "setup.py",
    ".gitignore",
)

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def copy_project(into: Path) -> Path:
    """The project's files as they are in this work tree (committed or not), without tests or outputs."""
    into.mkdir(parents=True)
    for name in PROJECT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=IGNORED)
        elif source.is_file():
            shutil.copy2(source, into / name)
    return into


def git(cwd: Path, *args: str) -> str:
    env = os.environ | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def digest_of(checkout: Path) -> str:
    saved = code_version.ROOT
    try:
        code_version.ROOT = checkout.resolve()
        return code_version.code_digest.__wrapped__()
    finally:
        code_version.ROOT = saved


def clean_env(uri: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "MYGO_"))}
    return env | {"MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", **extra}


def test_each_checkout_runs_its_own_code_and_records_its_own_tree(tmp_path):
    """Two checkouts at different commits, each with the other one installed (on PYTHONPATH) and this repository's
    editable install besides: each run's params, code digest and commit are its own checkout's."""
    first = copy_project(tmp_path / "first")
    git(first, "init", "-q")
    git(first, "add", ".")
    git(first, "commit", "-qm", "first")
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(first), str(second))
    convert_yaml = second / "configs" / "convert.yaml"
    convert_yaml.write_text(convert_yaml.read_text().replace("parity_seed: 0", "parity_seed: 7"))
    git(second, "commit", "-qam", "parity seed 7")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # convert with a missing checkpoint: it logs its params and code tags, then fails (seconds, no model built)
    failing = ["--model", "olmoe_1b_7b", "--source", str(tmp_path / "no-checkpoint")]

    ran_first = subprocess.run(
        [sys.executable, str(first / "entrypoints" / "convert.py"), *failing],
        cwd=tmp_path,
        env=clean_env(uri, PYTHONPATH=str(second)),
        capture_output=True,
        text=True,
    )
    assert ran_first.returncode == 2, ran_first.stderr
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    ran_second = subprocess.run(
        [str(mlflow_cli), "run", str(second), "-e", "convert", "--env-manager", "local", "--experiment-name", "mygo"]
        + [f"-P{option.lstrip('-')}={value}" for option, value in zip(failing[::2], failing[1::2], strict=True)],
        cwd=tmp_path,
        env=clean_env(uri, PYTHONPATH=str(first)),
        capture_output=True,
        text=True,
    )
    assert ran_second.returncode != 0, ran_second.stderr

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    by_seed = {run.data.params["convert.parity_seed"]: run for run in runs if run.data.tags.get(STAGE_TAG)}
    assert set(by_seed) == {"0", "7"}, ran_first.stderr + ran_second.stderr
    for seed, checkout in (("0", first), ("7", second)):
        tags = by_seed[seed].data.tags
        assert tags[code_version.CODE_DIGEST_TAG] == digest_of(checkout), seed
        assert tags[code_version.GIT_COMMIT_TAG] == git(checkout, "rev-parse", "HEAD"), seed
        assert tags[code_version.GIT_DIRTY_TAG] == "false", seed
        assert "OLMoE source directory not found" in tags["mygo.error"]
    assert digest_of(first) != digest_of(second)


def test_a_wheel_install_composes_its_configs_and_finds_its_sweeps(tmp_path):
    """`pip install .` (not editable): the configs and sweeps ship inside the package."""
    project = copy_project(tmp_path / "project")
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(project)], check=True)
    (wheel,) = wheels.glob("mygo-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    probe = (
        "import mygo, json\n"
        "from mygo.config import config_dir, load_config\n"
        "from mygo.workflows.sweep import resolve_space_path\n"
        "from mygo.tracking.code_version import code_tags\n"
        "cfg = load_config('select', ['selection.percentage=0.1'])\n"
        "print(json.dumps({'package': mygo.__file__, 'configs': str(config_dir()), 'pct': cfg.selection.percentage,"
        " 'task_dir': (config_dir() / 'eval_tasks' / 'stdlib_mmlu').is_dir(),"
        " 'space': str(resolve_space_path('sweeps/selection.yaml')), 'tags': code_tags()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=clean_env("sqlite:///unused.db", PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    import json

    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site))
    assert found["configs"] == str(site / "mygo" / "configs")
    assert found["pct"] == 0.1 and found["task_dir"]
    assert found["space"] == str(site / "mygo" / "sweeps" / "selection.yaml")
    assert code_version.GIT_COMMIT_TAG not in found["tags"]  # an installed copy is no checkout
