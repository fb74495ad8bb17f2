"""`mygo <command>`: the one command line behind every MLflow entry point.

Named options are the common knobs (each maps to a Hydra key); `--overrides "a.b=1 c=2"` and
trailing `key=value` arguments reach any other key. Errors in the input end in one clear line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
from huggingface_hub.errors import StrictDataclassError
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from mygo.config import load_config, override_of, split_overrides
from mygo.knobs import option_type
from mygo.stages.table import STAGES, Knob, Stage
from mygo.tracking.failures import LOG_FORMAT, TrackingUnavailable, recording_failures
from mygo.tracking.redaction import redact_text, secret_params
from mygo.workflows.reproduce import ReproductionMismatch


@dataclass(frozen=True)
class Command:
    name: str
    config: str
    named: tuple[Knob, ...]  # --option -> Hydra key, applied only when given
    runner: str  # "module:function", imported when the command runs
    help: str
    positional: str | None = None  # a bare argument (`mygo lineage <run id>`) sets this Hydra key
    many: bool = False  # several bare arguments (`mygo compare <id> <id>`) set it together, space-separated
    script: str | None = None  # entrypoints/<script>; None: <name>.py

    @property
    def entry_script(self) -> str:
        return f"entrypoints/{self.script or self.name + '.py'}"

    def load_runner(self) -> Callable[[DictConfig], object]:
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)

    def option_type(self, knob: Knob) -> str:
        """str | int | float | bool | list: the declared type of the key the option sets."""
        return option_type(self.config, knob.key)

    def hydra_value(self, knob: Knob, value: str) -> str:
        """The value as Hydra reads it: a list option's `val,test` is `[val,test]`."""
        return f"[{value}]" if self.option_type(knob) == "list" and not value.startswith("[") else value

    def check(self, knob: Knob, value: str) -> None:
        """A given value must read as the option's type (an empty value means not given and is never checked)."""
        kind = self.option_type(knob)
        if kind == "bool" and value.lower() not in ("true", "false"):
            raise ValueError(f"--{knob.option}={value!r} ({knob.key}): expected true or false")
        if kind in ("int", "float"):
            try:
                (int if kind == "int" else float)(value)
            except ValueError:
                article = "an" if kind == "int" else "a"
                raise ValueError(f"--{knob.option}={value!r} ({knob.key}): expected {article} {kind}") from None


def stage_command(entry: Stage) -> Command:
    return Command(entry.name, entry.config, entry.options, entry.runner, entry.help, script=entry.script)


# The workflows over the stages; the stages themselves come from the stage table.
WORKFLOW_COMMANDS = (
    Command(
        "main",
        "main",
        (Knob("force", "pipeline.force"),),
        "mygo.workflows.pipeline:run_pipeline",
        "run the pipeline on the configured setup, reusing finished runs (--force <stage>|all reruns)",
    ),
    Command(
        "sweep",
        "sweep",
        (
            Knob("space", "sweep.space"),
            Knob("n_trials", "sweep.n_trials"),
            Knob("study", "sweep.study"),
            Knob("storage", "sweep.storage"),
        ),
        "mygo.workflows.sweep:run_sweep",
        "run or join an Optuna study over the pipeline; trials are child runs of the study's parent run",
    ),
    Command(
        "lineage",
        "lineage",
        (Knob("run_id", "lineage.run_id"),),
        "mygo.workflows.lineage:run_lineage",
        "print the chain from a run back to its conversion, with key params and metrics",
        positional="lineage.run_id",
    ),
    Command(
        "reproduce",
        "reproduce",
        (Knob("run_id", "reproduce.run_id"),),
        "mygo.workflows.reproduce:run_reproduce",
        "re-execute a run's stage with its logged config and upstream run, and compare the results",
        positional="reproduce.run_id",
    ),
    Command(
        "compare",
        "compare",
        (Knob("run_ids", "compare.run_ids"),),
        "mygo.workflows.compare:run_compare",
        "print the eval figures of pipeline or evaluate runs' arms side by side, with standard errors over seeds",
        positional="compare.run_ids",
        many=True,
    ),
)
COMMANDS = {command.name: command for command in (*map(stage_command, STAGES), *WORKFLOW_COMMANDS)}


# MLflow's parameter types (string, float, path, uri): numbers are `float`, an int knob too (the CLI checks it is
# whole). Every named parameter defaults to "": not given, so the stage's config and its presets decide.
MLPROJECT_TYPES = {"str": "string", "bool": "string", "list": "string", "int": "float", "float": "float"}
MLPROJECT_HEADER = """\
# Generated by scripts/write_mlproject.py from the stage table (mygo/stages/table.py) and mygo/cli.py: do not edit.
# A named parameter left at its default "" is not given: the stage's config (and its presets, e.g. configs/tuned/)
# decides. `overrides` takes any other Hydra override, "a.b=1 c=2".
"""


def mlproject_text() -> str:
    """The MLproject file: one entry point per command, its named knobs typed, each passed on to `mygo <command>`."""
    lines = [MLPROJECT_HEADER + "name: mygo", "", "conda_env: conda.yaml", "", "entry_points:"]
    for command in COMMANDS.values():
        lines += [f"  {command.name}:", "    parameters:"]
        arguments = []
        for knob in (*command.named, Knob("overrides", "overrides")):
            kind = MLPROJECT_TYPES[command.option_type(knob)]
            required = command.positional == knob.key  # `mygo lineage <run id>`: nothing to run without it
            lines.append(
                f"      {knob.option}: {{type: {kind}}}"
                if required
                else f'      {knob.option}: {{type: {kind}, default: ""}}'
            )
            arguments.append(f"--{knob.option} {{{knob.option}}}")
        words, folded = ["python", command.entry_script, *arguments], [""]
        for word in words:
            if folded[-1] and len(folded[-1]) + 1 + len(word) > 100:
                folded.append("")
            folded[-1] = f"{folded[-1]} {word}" if folded[-1] else word
        lines += ["    command: >-", *(f"      {line}" for line in folded), ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mygo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        for knob in command.named:
            sub.add_argument(
                f"--{knob.option}",
                default="",
                help=f"sets {knob.key} ({command.option_type(knob)}); not given: the config's",
            )
        sub.add_argument("--overrides", default="", help='Hydra overrides, e.g. "a.b=1 c=2"')
        sub.add_argument("extra", nargs="*", help="more Hydra overrides (key=value)")
    return parser


def command_overrides(command: Command, args: argparse.Namespace) -> list[str]:
    given = [(knob, getattr(args, knob.option)) for knob in command.named if getattr(args, knob.option)]
    for knob, value in given:
        command.check(knob, value)
    named = [override_of(knob.key, command.hydra_value(knob, value)) for knob, value in given]
    # Group choices (model=tiny) must precede keys inside the group (model.source=...).
    named.sort(key=lambda override: "." in override.split("=", 1)[0])
    extra = list(args.extra)
    if command.positional:
        bare = [item for item in extra if "=" not in item]
        extra = [item for item in extra if "=" in item]
        if command.many and bare:
            extra.insert(0, override_of(command.positional, " ".join(bare)))
        else:
            extra = [f"{command.positional}={item}" for item in bare] + extra
    return named + split_overrides(args.overrides) + extra


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def refuse_recorded_secrets(run_id: str | None) -> None:
    """Under `mlflow run`, MLflow logged every `-P` value raw before this process started: one carrying a password
    is in the store already. Stop at once and say how to purge it, rather than run with it."""
    if not run_id:
        return
    try:
        params = mlflow.MlflowClient().get_run(run_id).data.params
    except MlflowException:  # the store is unreachable: the command fails on it soon enough, with its own error
        return
    leaked = secret_params(params)
    if not leaked:
        return
    store = redact_text(mlflow.get_tracking_uri())
    raise ValueError(
        f"-P {', '.join(leaked)} carries a password or token, and MLflow has already recorded it, unmasked, in "
        f"the params of run {run_id}. Purge it: `mlflow runs delete --run-id {run_id}`, then "
        f"`mlflow gc --backend-store-uri {store} --run-ids {run_id}`. Pass secrets through the environment "
        "instead: a storage URL without its password plus PGPASSWORD or ~/.pgpass, or the whole URL in "
        "MYGO_OPTUNA_STORAGE; MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for a tracking server; HF_TOKEN"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # `mlflow run` stops its command with SIGTERM on Ctrl-C: treat it as Ctrl-C, so runs end KILLED.
    signal.signal(signal.SIGTERM, _interrupt)
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        # Under `mlflow run` the command's run exists before anything here runs: a failure before any stage run
        # started (a bad override, a missing upstream run) is recorded on it too.
        with recording_failures(command.name, os.environ.get("MLFLOW_RUN_ID"), overwrite=False):
            refuse_recorded_secrets(os.environ.get("MLFLOW_RUN_ID"))
            cfg = load_config(command.config, command_overrides(command, args))
            command.load_runner()(cfg)
    except (ValueError, FileNotFoundError, StrictDataclassError) as error:
        print(f"mygo {args.command}: error: {redact_text(str(error))}", file=sys.stderr)
        return 2
    except TrackingUnavailable as error:
        print(f"mygo {args.command}: error: {redact_text(str(error))}", file=sys.stderr)
        return 3
    except ReproductionMismatch as error:
        print(f"mygo {args.command}: {redact_text(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mygo {args.command}: interrupted; the runs in progress are marked KILLED", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
