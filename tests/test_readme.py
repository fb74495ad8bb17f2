"""The documented commands work as written (README.md, CONTRIBUTING.md, docs/): each fenced bash command is parsed
as its tool parses it and, for mygo's own commands, composed with Hydra (every stage a main or sweep command runs
too). `mlflow run` goes through MLflow's own project-spec loader against MLproject (parameter types and all); hub
models and GPUs are not needed, since composing a config loads nothing."""

from __future__ import annotations

import re
import shlex

import click
import pytest
from mlflow.cli import cli as mlflow_cli
from mlflow.projects._project_spec import load_project

from mygo.cli import COMMANDS, build_parser, command_overrides
from mygo.config import load_config
from mygo.workflows.pipeline import check_stage_configs, stages_until
from mygo.workflows.sweep import STORAGE_ENV, check_sweep_configs, load_space
from tests.helpers import REPO

RUN_ID = "0123456789abcdef0123456789abcdef"  # stands for <run id>
SCRIPTS = {command.entry_script: name for name, command in COMMANDS.items()}


DOCUMENTS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").rglob("*.md")])


def readme_commands() -> list[str]:
    """Every line of every fenced bash block of the README, CONTRIBUTING and docs/, split at `&&`."""
    text = "\n".join(path.read_text() for path in DOCUMENTS)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("<run id>", RUN_ID), comments=True)
            while words:  # `a && b`: each on its own
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(shlex.join(words[:cut]))
                words = words[cut + 1 :]
    return commands


def compose_mygo(argv: list[str]) -> None:
    """What `mygo <command> ...` does before it runs anything: parse, compose, check every stage it will run."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    cfg = load_config(command.config, command_overrides(command, args))
    if args.command == "main":
        check_stage_configs(cfg, stages_until(cfg.pipeline.until))
    elif args.command == "sweep":
        check_sweep_configs(cfg, load_space(cfg.sweep.space))


def mlflow_run(words: list[str], tmp_path) -> None:
    """`mlflow run . -e <entry> -P k=v ...`: MLflow's parameter parsing and command, then that command composed."""
    run = mlflow_cli.get_command(click.Context(mlflow_cli), "run")
    options = run.make_context("run", words, resilient_parsing=False).params
    assert options["uri"] == ".", words
    params = dict(item.split("=", 1) for item in options["param_list"])
    entry = load_project(str(REPO)).get_entry_point(options["entry_point"])
    command = shlex.split(entry.compute_command(params, str(tmp_path)))
    assert command[0] == "python" and command[1] in SCRIPTS, command
    compose_mygo([SCRIPTS[command[1]], *command[2:]])


def launched(words: list[str]) -> None:
    """`accelerate launch --config_file F entrypoints/x.py ...` and `torchrun ... entrypoints/x.py ...`."""
    if "--config_file" in words:
        assert (REPO / words[words.index("--config_file") + 1]).is_file()
    script = next(index for index, word in enumerate(words) if word.startswith("entrypoints/"))
    compose_mygo([SCRIPTS[words[script]], *words[script + 1 :]])


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_parses_and_composes(line, tmp_path):
    words = shlex.split(line)
    tool = words[0]
    if words[:2] == ["mlflow", "run"]:
        mlflow_run(words[2:], tmp_path)
    elif tool == "mlflow":  # ui, server: their options as MLflow's command line reads them
        subcommand = mlflow_cli.get_command(click.Context(mlflow_cli), words[1])
        subcommand.make_context(words[1], words[2:], resilient_parsing=False)
    elif tool == "mygo":
        compose_mygo(words[1:])
    elif tool in ("accelerate", "torchrun"):
        launched(words)
    elif tool == "bash":
        assert (REPO / words[1]).is_file(), line
    elif tool == "export":  # only variables that mygo, or libpq under it, reads
        assert words[1].split("=", 1)[0] in (STORAGE_ENV, "PGPASSWORD"), line
    elif words[:3] == ["python", "-m", "pytest"] or tool == "ruff":
        pass  # the suite and the linters run in CI themselves
    elif tool == "python" and words[1].startswith("benchmarks/"):  # the script exists and takes these options
        script = (REPO / words[1]).read_text()
        assert all(f'"{word}"' in script for word in words[2:] if word.startswith("--")), line
    elif words[:3] == ["python3", "-m", "venv"] or line == ". .venv/bin/activate":
        pass  # a virtual environment, as .ci/run makes one
    else:
        raise AssertionError(f"README command not covered by this test: {line}")


def test_readme_commands_are_found():
    commands = readme_commands()
    assert len(commands) > 20
    assert any("tasks=mmlu,arc_easy" in command for command in commands)
