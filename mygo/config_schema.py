"""The types and ranges of the config keys that matter, written once, checked when a config is composed.

Each entry is `key: "spec"`, where the spec is what the error says was expected:

    "int", "float", "bool", "str"            the type (an int is a float too; a bool is neither)
    "float in (0, 1]", "int >= 1"            a type and a range ((a, b) open, [a, b] closed, >=, >)
    "one of kmeans, hdbscan"                 a closed set of strings
    "list of str", "list of int"             a list whose items have the type
    "... or null"                            null is allowed too

A key that a config does not have is not checked (a schema may name keys that a config gains later).
A bad value fails composition with one line: the key, what was expected and what was given.
`DECLARED` also says which keys `+key=value` may add (none but those a schema names).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from mygo.signal_table import SIGNALS

TYPES = {"int": int, "float": float, "bool": bool, "str": str}
_RANGE = re.compile(r"^(?P<type>int|float) in (?P<open>[\[(])(?P<low>[^,]+), (?P<high>[^\])]+)(?P<close>[\])])$")
_BOUND = re.compile(r"^(?P<type>int|float) (?P<op>>=|>) (?P<low>\S+)$")
_MISSING = object()


@dataclass(frozen=True)
class Spec:
    text: str
    type: str  # int | float | bool | str | list
    nullable: bool = False
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    item: str | None = None  # the items' type of a list

    @classmethod
    def parse(cls, text: str) -> Spec:
        body, nullable = (text[: -len(" or null")], True) if text.endswith(" or null") else (text, False)
        if body in TYPES:
            return cls(text, body, nullable)
        if body.startswith("one of "):
            return cls(text, "str", nullable, choices=tuple(c.strip() for c in body[len("one of ") :].split(",")))
        if body.startswith("list of ") and body[len("list of ") :] in TYPES:
            return cls(text, "list", nullable, item=body[len("list of ") :])
        if match := _RANGE.match(body):
            return cls(
                text,
                match["type"],
                nullable,
                low=float(match["low"]),
                high=float(match["high"]),
                low_open=match["open"] == "(",
                high_open=match["close"] == ")",
            )
        if match := _BOUND.match(body):
            return cls(text, match["type"], nullable, low=float(match["low"]), low_open=match["op"] == ">")
        raise ValueError(f"config schema: cannot read the spec {text!r}")

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if self.type == "list":
            return isinstance(value, list | tuple) and all(_is_type(item, self.item) for item in value)
        if not _is_type(value, self.type):
            return False
        if self.choices:
            return value in self.choices
        if self.type in ("int", "float"):
            above = value > self.low if self.low_open else value >= self.low
            below = value < self.high if self.high_open else value <= self.high
            return above and below
        return True


def _is_type(value: object, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "float":
        return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))
    return isinstance(value, TYPES[kind])


# ---------------------------------------------------------------------------------------------- the schema
TRACKING = {
    "tracking.uri": "str or null",
    "tracking.experiment": "str",
    "tracking.system_metrics": "bool",  # MLflow system metrics on stage runs (mygo.tracking.system_metrics)
    "tracking.system_metrics_interval": "float > 0",  # seconds between samples
    "tracking.log_model": "bool",  # finetune's tuned model and score's selector as MLflow Models
    "tracking.log_model_max_mb": "float >= 0",  # a non-hub base up to this size travels with the adapter
    "tracking.registered_model": "str or null",  # auto: mygo-<target preset>; null: not registered
    "tracking.registered_selector": "str or null",
}
MODEL = {  # configs/model/*.yaml, in convert and warmup
    "model.name": "str",
    "model.source": "str",
    "model.seed": "int",
    "model.vocab_size": "int >= 16",
    "model.architecture.hidden_size": "int >= 1",
    "model.architecture.num_hidden_layers": "int >= 1",
    "model.architecture.num_experts": "int >= 1",
    "model.architecture.num_experts_per_tok": "int >= 1",
    "model.training.steps": "int >= 0",
    "model.training.batch_size": "int >= 1",
    "model.training.block_size": "int >= 2",
    "model.training.learning_rate": "float > 0",
}
SELECT_MOE = {
    "select_moe.trash_expert_mode": "str",  # zero | noise | custom:<name>: checked against the registry
    "select_moe.quality_loss_type": "str",
    "select_moe.quality_loss_weight": "float >= 0",
    "select_moe.quality_gate_init_mean": "float",
    "select_moe.quality_gate_init_std": "float >= 0",
    "select_moe.enable_load_balancing": "bool",
}
DATASET = {  # configs/dataset/*.yaml
    "dataset.data_dir": "str",
    "dataset.dataset_names": "list of str or null",
    "dataset.demo.num_samples": "int >= 1",
    "dataset.demo.noise_fraction": "float in [0, 1)",
    "dataset.demo.noise_kinds": "list of str",
    "dataset.skip_bad_lines": "bool",
    "dataset.max_sequence_length": "int >= 8",
    "dataset.full_sequence_prediction": "bool",
    "dataset.mask_special_tokens": "bool",
    "dataset.format": "one of auto, messages, alpaca, sharegpt, openai, prompt_response",
    "dataset.train_on_tool_turns": "bool",
    "dataset.dedup.enabled": "bool",  # mygo/data/dedup.py
    "dataset.dedup.near": "bool",
    "dataset.dedup.threshold": "float in (0, 1]",
    "dataset.dedup.num_perm": "int >= 2",
    "dataset.dedup.shingle": "int in [1, 64]",
    "dataset.dedup.min_words": "int >= 1",
}
TARGET = {  # configs/target/*.yaml, in finetune and evaluate
    "target.name": "str",
    "target.source": "str",
    "target.max_sequence_length": "int >= 8",
    "target.lora.r": "int >= 1",
    "target.lora.alpha": "float > 0",
    "target.lora.dropout": "float in [0, 1)",
    "target.lora.target_modules": "list of str",
    "target.training.learning_rate": "float > 0",
    "target.training.batch_size": "int >= 1",
    "target.training.micro_batch_size": "int >= 1",
    "target.training.epochs": "float > 0",
    "target.training.warmup_ratio": "float in [0, 1]",
    "target.training.weight_decay": "float >= 0",
    "target.training.max_grad_norm": "float > 0",
    "target.training.gradient_checkpointing": "bool",
    "target.evaluation.num_fewshot": "int >= 0 or null",
    "target.evaluation.in_domain": "list of str or null",
    "target.evaluation.out_of_domain": "list of str or null",
}
PIPELINE = {
    "pipeline.force": "str or null",
    "pipeline.until": "str or null",
    "pipeline.controls": "list of str or null",  # which: checked by mygo.workflows.controls
    "pipeline.seeds": "list of int or null",
}

SCHEMAS: dict[str, dict[str, str]] = {
    "convert": TRACKING
    | MODEL
    | SELECT_MOE
    | {
        "convert.dtype": "one of float32, bfloat16, float16",
        "convert.max_artifact_mb": "float >= 0",
        "convert.parity_seed": "int",
    },
    "warmup": TRACKING
    | MODEL
    | SELECT_MOE
    | DATASET
    | {
        "upstream.convert_run": "str or null",
        "upstream.convert_overrides": "str",
        "select_moe.sample_wise_averaging": "bool",
        "select_moe.beta_target_mean": "float in (0, 1)",
        "select_moe.beta_target_var": "float > 0",
        "select_moe.lambda_var": "float",
        "dataset.subset_ratio": "float in (0, 1]",
        "dataset.seed": "int",
        "dataset.shuffle": "bool",
        "training.peft_mode": "one of full_rank, lora",
        "training.train_router_gates": "bool",
        "training.lora.r": "int >= 1",
        "training.lora.alpha": "float > 0",
        "training.lora.dropout": "float in [0, 1)",
        "training.learning_rate": "float > 0",
        "training.epochs": "float > 0",
        "training.batch_size": "int >= 1",
        "training.micro_batch_size": "int >= 1",
        "training.weight_decay": "float >= 0",
        "training.warmup_ratio": "float in [0, 1]",
        "training.max_grad_norm": "float > 0",
        "training.seed": "int",
        "training.precision": "one of auto, bf16, float32",
        "training.gradient_checkpointing": "bool",
        "training.logging_steps": "int >= 1",
        "training.resume": "bool",
        "training.save_steps": "int >= 0",
        "training.tracking_flush_s": "float >= 0",
        "training.probe_samples": "int >= 0",
        "training.probe_every": "int >= 1",
        "training.probe_batch_size": "int >= 1",
        # corruption-detection warmups (configs/objective/corruption.yaml)
        "corruption.fraction": "float in [0, 1)",
        "corruption.kinds": "list of str",
        "corruption.seed": "int",
    },
    "score": TRACKING
    | {
        "upstream.warmup_run": "str or null",
        "upstream.dataset_overrides": "str",
        "score.shard_size": "int >= 1",
        "score.max_batch_tokens": "int >= 1",
        "score.max_batch_size": "int >= 1",
        "score.precision": "one of auto, bf16, float32",
        "score.feature_dtype": "one of float16, bfloat16, float32",
        "score.ifd": "bool",
    },
    "select": TRACKING
    | {
        "upstream.score_run": "str or null",
        "selection.percentage": "float in (0, 1]",
        "selection.count": "int >= 1 or null",  # when set, the budget (percentage not used)
        "selection.source_balance": "one of none, proportional, equal",
        # selection.source_caps is a mapping (no spec for it): checked by the stage, names against the pool
        "selection.strategy": "str",  # the strategies' names are checked by the stage
        "selection.seed": "int",
        "selection.quality_signal": "one of " + ", ".join(SIGNALS),
        "selection.veto_signals": "list of str or null",  # which: checked by the stage (a stored signal)
        "selection.veto_share": "float in [0, 1)",
        "selection.outlier_signals": "list of str or null",
        "selection.outlier_z": "float > 0",
        "selection.max_prompt_copy": "float in (0, 1] or null",
        "selection.max_repetition": "float in (0, 1] or null",
        "selection.rank_mean_of": "list of str or null",
        "selection.quality_floor": "float in [0, 1)",
        "selection.quality_ceiling": "float in [0, 1)",
        "selection.within_cluster": "one of quality, random, coverage",
        "selection.cluster_quota": "one of equal, proportional",
        "selection.cover": "one of band, pool",
        "selection.floor_scope": "one of pool, cluster",
        "selection.quality_within": "one of pool, source",
        "clustering.method": "one of kmeans, hdbscan",
        "clustering.pca_components": "int >= 1 or null",
        "clustering.seed": "int",
        "clustering.silhouette_sample": "int >= 2",
        "clustering.kmeans.k": "int >= 2 or null",
        "clustering.kmeans.k_range": "list of int",
        "clustering.kmeans.elbow_points": "int >= 2",
        "clustering.kmeans.elbow_sample": "int >= 2",
        "clustering.kmeans.max_iters": "int >= 1",
        "clustering.hdbscan.min_cluster_size": "int >= 2",
        "clustering.hdbscan.min_samples": "int >= 1 or null",
        "clustering.hdbscan.auto_tune": "bool",
        "clustering.hdbscan.backend": "one of auto, sklearn, fast_hdbscan, cuml",
        "clustering.hdbscan.pca_components": "int >= 1 or null",
        "clustering.hdbscan.fit_sample": "int >= 2 or null",
        "plots.projection_sample": "int >= 0",
        "diversity.coverage_sample": "int >= 1",
    },
    "finetune": TRACKING
    | TARGET
    | {
        "upstream.select_run": "str or null",
        "data.path": "str or null",
        "data.skip_bad_lines": "bool",
        "data.full_sequence_prediction": "bool",
        "data.mask_special_tokens": "bool",
        "data.train_on_tool_turns": "bool",
        "training.seed": "int",
        "training.logging_steps": "int >= 1",
        "training.resume": "bool",
        "training.save_steps": "int >= 0",
        "training.tracking_flush_s": "float >= 0",
    },
    "evaluate": TRACKING
    | TARGET
    | {
        "upstream.finetune_run": "str or null",
        "upstream.model_uri": "str or null",  # models:/<name>@<alias> | models:/<name>/<version>: its finetune run
        "evaluation.base_only": "bool",
        "evaluation.num_fewshot": "int >= 0 or null",
        "evaluation.limit": "float > 0 or null",
        "evaluation.splits": "list of str",  # which splits, and apply_chat_template (auto | bool): checked by evaluate
        "evaluation.precision": "one of auto, bf16, float32",
        "evaluation.seed": "int",
        "evaluation.task_dir": "str or null",
    },
    "main": TRACKING | PIPELINE,
    "sweep": TRACKING
    | {
        "pipeline.seeds": "list of int or null",
        "sweep.space": "str",
        "sweep.n_trials": "int >= 1",
        "sweep.study": "str or null",
        "sweep.storage": "str or null",
        "sweep.continue_changed_space": "bool",
        "sweep.max_retry": "int >= 0",
        "sweep.heartbeat_interval": "int >= 1",
        "sweep.grace_period": "int >= 1",
        "sweep.connect_timeout": "float > 0",
    },
    "lineage": TRACKING | {"lineage.run_id": "str or null"},
    "compare": TRACKING | {"compare.run_ids": "str or null", "compare.output": "str or null"},
    "reproduce": TRACKING
    | {
        "reproduce.run_id": "str or null",
        "reproduce.weights_atol": "float >= 0",
        "reproduce.metrics_rtol": "float >= 0",
    },
}
SPECS: dict[str, dict[str, Spec]] = {
    config: {key: Spec.parse(text) for key, text in schema.items()} for config, schema in SCHEMAS.items()
}


def spec_of(config: str, key: str) -> Spec | None:
    return SPECS.get(config, {}).get(key)


def check_value(config: str, key: str, value: object) -> None:
    """One value against the schema (a key the schema does not name passes)."""
    spec = spec_of(config, key)
    if spec is not None and not spec.accepts(value):
        shown = "null" if value is None else repr(value)
        raise ValueError(f"{key}: expected {spec.text}, got {shown}")


def validate(config: str, cfg: DictConfig) -> None:
    """Every key the schema names that the composed config has, against its spec."""
    for key in SPECS.get(config, {}):
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING:
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        check_value(config, key, value)
