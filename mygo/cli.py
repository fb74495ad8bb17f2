"""`mygo <command>`: the one command line behind every MLflow entry point.

Named options are the common knobs (each maps to a Hydra key); `--overrides "a.b=1 c=2"` and
trailing `key=value` arguments reach any other key. Errors in the input end in one clear line.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from huggingface_hub.errors import StrictDataclassError
from omegaconf import DictConfig

from mygo.config import load_config, split_overrides
from mygo.workflows.reproduce import ReproductionMismatch


@dataclass(frozen=True)
class Command:
    config: str
    named: dict[str, str]  # option name -> Hydra key
    runner: Callable[[DictConfig], object]
    help: str
    positional: str | None = None  # a bare argument (`mygo lineage <run id>`) sets this Hydra key


def _run_convert(cfg: DictConfig) -> str:
    from mygo.stages.convert import run_convert

    return run_convert(cfg)


def _run_warmup(cfg: DictConfig) -> str | None:
    from mygo.stages.warmup import run_warmup

    return run_warmup(cfg)


def _run_score(cfg: DictConfig) -> str | None:
    from mygo.stages.score import run_score

    return run_score(cfg)


def _run_select(cfg: DictConfig) -> str:
    from mygo.stages.select import run_select

    return run_select(cfg)


def _run_finetune(cfg: DictConfig) -> str | None:
    from mygo.stages.finetune import run_finetune

    return run_finetune(cfg)


def _run_evaluate(cfg: DictConfig) -> str | None:
    from mygo.stages.evaluate import run_evaluate

    return run_evaluate(cfg)


def _run_lineage(cfg: DictConfig) -> str:
    from mygo.workflows.lineage import run_lineage

    return run_lineage(cfg)


def _run_reproduce(cfg: DictConfig) -> str:
    from mygo.workflows.reproduce import run_reproduce

    return run_reproduce(cfg)


def _run_sweep(cfg: DictConfig) -> str:
    from mygo.workflows.sweep import run_sweep

    return run_sweep(cfg)


def _run_pipeline(cfg: DictConfig) -> str:
    from mygo.workflows.pipeline import run_pipeline

    return run_pipeline(cfg)


COMMANDS = {
    "convert": Command(
        "convert",
        {
            "model": "model",
            "source": "model.source",
            "trash_expert_mode": "select_moe.trash_expert_mode",
            "quality_gate_init_std": "select_moe.quality_gate_init_std",
        },
        _run_convert,
        "convert an OLMoE checkpoint to Select-MoE and check parity",
    ),
    "warmup": Command(
        "warmup",
        {
            "model": "model",
            "convert_run": "upstream.convert_run",
            "loss_type": "select_moe.quality_loss_type",
            "quality_loss_weight": "select_moe.quality_loss_weight",
            "trash_expert_mode": "select_moe.trash_expert_mode",
            "learning_rate": "training.learning_rate",
            "epochs": "training.epochs",
            "peft_mode": "training.peft_mode",
            "subset_ratio": "dataset.subset_ratio",
        },
        _run_warmup,
        "warm up the quality gates (and router) of a converted model on a subset of the pool",
    ),
    "score": Command(
        "score",
        {"warmup_run": "upstream.warmup_run", "dataset_overrides": "dataset_overrides"},
        _run_score,
        "score the pool with a warmup run's router: per-sample quality and router-logit features",
    ),
    "select": Command(
        "select",
        {
            "score_run": "upstream.score_run",
            "selection_percentage": "selection.percentage",
            "strategy": "selection.strategy",
            "clustering_method": "clustering.method",
            "k": "clustering.kmeans.k",
            "min_cluster_size": "clustering.hdbscan.min_cluster_size",
        },
        _run_select,
        "cluster the scored pool by router logits and select a subset (round robin over clusters)",
    ),
    "finetune": Command(
        "finetune",
        {
            "select_run": "upstream.select_run",
            "data_path": "data.path",
            "target": "target",
            "learning_rate": "target.training.learning_rate",
            "epochs": "target.training.epochs",
            "lora_r": "target.lora.r",
        },
        _run_finetune,
        "LoRA-tune the target model on a select run's selection (or any JSONL in the pool format)",
    ),
    "evaluate": Command(
        "evaluate",
        {
            "finetune_run": "upstream.finetune_run",
            "tasks": "evaluation.tasks",
            "base_only": "evaluation.base_only",
            "num_fewshot": "evaluation.num_fewshot",
            "limit": "evaluation.limit",
            "target": "target",
        },
        _run_evaluate,
        "evaluate the target with a finetune run's adapter (or alone) with the lm-eval harness",
    ),
    "main": Command(
        "main",
        {"force": "pipeline.force"},
        _run_pipeline,
        "run the pipeline on the configured setup, reusing finished runs (--force <stage>|all reruns)",
    ),
    "sweep": Command(
        "sweep",
        {"space": "sweep.space", "n_trials": "sweep.n_trials", "study": "sweep.study", "storage": "sweep.storage"},
        _run_sweep,
        "run or join an Optuna study over the pipeline; trials are child runs of the study's parent run",
    ),
    "lineage": Command(
        "lineage",
        {"run_id": "lineage.run_id"},
        _run_lineage,
        "print the chain from a run back to its conversion, with key params and metrics",
        positional="lineage.run_id",
    ),
    "reproduce": Command(
        "reproduce",
        {"run_id": "reproduce.run_id"},
        _run_reproduce,
        "re-execute a run's stage with its logged config and upstream run, and compare the results",
        positional="reproduce.run_id",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mygo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        for option, key in command.named.items():
            sub.add_argument(f"--{option}", default="", help=f"sets {key}")
        sub.add_argument("--overrides", default="", help='Hydra overrides, e.g. "a.b=1 c=2"')
        sub.add_argument("extra", nargs="*", help="more Hydra overrides (key=value)")
    return parser


def command_overrides(command: Command, args: argparse.Namespace) -> list[str]:
    named = [f"{key}={getattr(args, option)}" for option, key in command.named.items() if getattr(args, option)]
    # Group choices (model=tiny) must precede keys inside the group (model.source=...).
    named.sort(key=lambda override: "." in override.split("=", 1)[0])
    extra = list(args.extra)
    if command.positional:
        extra = [f"{command.positional}={item}" if "=" not in item else item for item in extra]
    return named + split_overrides(args.overrides) + extra


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `mlflow run` stops its command with SIGTERM on Ctrl-C: treat it as Ctrl-C, so runs end KILLED.
    signal.signal(signal.SIGTERM, _interrupt)
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        cfg = load_config(command.config, command_overrides(command, args))
        command.runner(cfg)
    except (ValueError, FileNotFoundError, StrictDataclassError) as error:
        print(f"mygo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ReproductionMismatch as error:
        print(f"mygo {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mygo {args.command}: interrupted; the runs in progress are marked KILLED", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
