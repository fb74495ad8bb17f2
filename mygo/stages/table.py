"""The stage table: the one declaration of every stage, in pipeline order.

Each entry says what the stage is called, which config it composes, which function runs it (imported
only when it runs), which stage it builds on and under which config key, what it hands downstream
(artifact paths and tags, read through `mygo.tracking.handoffs`), its named command-line knobs, and
what lineage and the pipeline's summary show of it. The CLI (`mygo <stage>`), the MLproject entry
points (`scripts/write_mlproject.py`), the pipeline, sweeps, lineage, reproduce, run tracking and the
`stage_overrides` of `main`/`sweep` all read it. Adding a stage is one entry here plus its module.

This module is data: it imports nothing from mygo, so every layer may read it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Knob:
    """A named command-line option (`--option` / `-P option=`) that sets one Hydra key when it is given; its type
    is the key's declared one (`mygo.knobs.option_type`)."""

    option: str
    key: str


@dataclass(frozen=True)
class Stage:
    name: str
    config: str  # configs/<config>.yaml
    runner: str  # "module:function", imported when the stage runs
    help: str
    upstream: str | None = None  # the stage whose run this one builds on
    knobs: tuple[Knob, ...] = ()  # besides `--<upstream>_run`, which every stage with an upstream has
    artifacts: dict[str, str] = field(default_factory=dict)  # hand-off name -> artifact path in the run
    tags: dict[str, str] = field(default_factory=dict)  # hand-off name -> tag the run sets
    compared_weights: str | None = None  # the artifact reproduce compares tensor by tensor
    key_params: tuple[str, ...] = ()
    key_metrics: tuple[str, ...] = ()
    script: str | None = None  # entrypoints/<script>; None: <name>.py

    @property
    def upstream_key(self) -> str | None:
        """The config key naming the upstream run (nested under `upstream.`: `mlflow run` logs -P names itself)."""
        return f"upstream.{self.upstream}_run" if self.upstream else None

    @property
    def options(self) -> tuple[Knob, ...]:
        """Every named option: the upstream run first, then the stage's knobs."""
        upstream = (Knob(f"{self.upstream}_run", self.upstream_key),) if self.upstream else ()
        return upstream + self.knobs

    def load_runner(self) -> Callable[[Any], str | None]:
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)


STAGES: tuple[Stage, ...] = (
    Stage(
        "convert",
        config="convert",
        runner="mygo.stages.convert:run_convert",
        help="convert an OLMoE checkpoint to Select-MoE and check parity",
        knobs=(
            Knob("model", "model"),
            Knob("source", "model.source"),
            Knob("trash_expert_mode", "select_moe.trash_expert_mode"),
            Knob("quality_gate_init_std", "select_moe.quality_gate_init_std"),
        ),
        artifacts={"model": "model"},
        tags={"model_path": "mygo.model_path"},
        compared_weights="model/model.safetensors",
        key_params=("model.name", "model.source", "select_moe.trash_expert_mode"),
        key_metrics=("parity/bypass_logits_max_abs_diff",),
    ),
    Stage(
        "warmup",
        config="warmup",
        runner="mygo.stages.warmup:run_warmup",
        help="warm up the quality gates (and router) of a converted model on a subset of the pool",
        upstream="convert",
        knobs=(
            Knob("model", "model"),
            Knob("loss_type", "select_moe.quality_loss_type"),
            Knob("quality_loss_weight", "select_moe.quality_loss_weight"),
            Knob("trash_expert_mode", "select_moe.trash_expert_mode"),
            Knob("learning_rate", "training.learning_rate"),
            Knob("epochs", "training.epochs"),
            Knob("peft_mode", "training.peft_mode"),
            Knob("subset_ratio", "dataset.subset_ratio"),
        ),
        artifacts={"router_weights": "router/weights.safetensors"},
        compared_weights="router/weights.safetensors",
        key_params=(
            "select_moe.quality_loss_type",
            "select_moe.quality_loss_weight",
            "training.learning_rate",
            "training.peft_mode",
            "dataset.subset_ratio",
        ),
        key_metrics=("train/final_loss", "probe/noise_auroc"),
    ),
    Stage(
        "score",
        config="score",
        runner="mygo.stages.score:run_score",
        help="score the pool with a warmup run's router: per-sample quality and router-logit features",
        upstream="warmup",
        knobs=(Knob("dataset_overrides", "upstream.dataset_overrides"),),
        artifacts={"router_data": "router_data"},
        tags={"router_data_path": "mygo.router_data_path"},
        key_params=("dataset.data_dir",),
        key_metrics=("score/samples", "noise/auroc"),
    ),
    Stage(
        "select",
        config="select",
        runner="mygo.stages.select:run_select",
        help="cluster the scored pool by router logits and select a subset (round robin over clusters)",
        upstream="score",
        knobs=(
            Knob("selection_percentage", "selection.percentage"),
            Knob("strategy", "selection.strategy"),
            Knob("clustering_method", "clustering.method"),
            Knob("k", "clustering.kmeans.k"),
            Knob("min_cluster_size", "clustering.hdbscan.min_cluster_size"),
        ),
        artifacts={"selected_data": "selection/selected_data.jsonl"},
        tags={"selected_ids": "mygo.selected_ids_sha256"},
        key_params=("selection.percentage", "selection.strategy", "clustering.method", "clustering.kmeans.k"),
        key_metrics=(
            "selection/num_selected",
            "clustering/chosen_k",
            "noise/fraction_selected",
            "diversity/coverage_distance",
            "diversity/topic_coverage",
        ),
        script="select_data.py",  # entrypoints/select.py would shadow the standard library's `select`
    ),
    Stage(
        "finetune",
        config="finetune",
        runner="mygo.stages.finetune:run_finetune",
        help="LoRA-tune the target model on a select run's selection (or any JSONL in the pool format)",
        upstream="select",
        knobs=(
            Knob("data_path", "data.path"),
            Knob("target", "target"),
            Knob("learning_rate", "target.training.learning_rate"),
            Knob("epochs", "target.training.epochs"),
            Knob("lora_r", "target.lora.r"),
        ),
        artifacts={"adapter": "adapter"},
        tags={"adapter_path": "mygo.adapter_path", "target_path": "mygo.target_path"},
        compared_weights="adapter/adapter_model.safetensors",
        key_params=("target.name", "target.training.learning_rate", "target.training.epochs", "target.lora.r"),
        key_metrics=("train/final_loss", "data/train_samples"),
    ),
    Stage(
        "evaluate",
        config="evaluate",
        runner="mygo.stages.evaluate:run_evaluate",
        help="evaluate the target with a finetune run's adapter (or alone) with the lm-eval harness",
        upstream="finetune",
        knobs=(
            Knob("model_uri", "upstream.model_uri"),  # models:/<name>@<alias> or models:/<name>/<version>
            Knob("tasks", "evaluation.tasks"),
            Knob("splits", "evaluation.splits"),
            Knob("chat_template", "evaluation.apply_chat_template"),
            Knob("base_only", "evaluation.base_only"),
            Knob("num_fewshot", "evaluation.num_fewshot"),
            Knob("limit", "evaluation.limit"),
            Knob("target", "target"),
        ),
        tags={"base_only": "mygo.eval_base_only"},  # true: the target alone (a control arm of its own)
        key_params=("evaluation.base_only", "evaluation.tasks", "evaluation.splits", "evaluation.num_fewshot"),
        key_metrics=(),  # eval/<task>/<split>/<headline metric>, whichever ran (see mygo.workflows.lineage.key_metrics)
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(entry.name for entry in STAGES)
_BY_NAME = {entry.name: entry for entry in STAGES}


def stage(name: str) -> Stage:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages are {list(STAGE_NAMES)}") from None


def upstream_keys() -> tuple[str, ...]:
    """Every config key that names a run a stage builds on."""
    return tuple(entry.upstream_key for entry in STAGES if entry.upstream_key)
