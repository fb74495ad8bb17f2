"""The blocks that configs take from a config group: `tracking` (configs/tracking/default.yaml, declared and written
here) and the keys of the model, target and dataset presets (configs/model/, target/, dataset/: each preset has
its own values, so these are checked, not written)."""

from mygo.knobs.declare import PRESET, Any, Block, Bool, Choice, Float, Int, Knob, List, Str

# The first entry of every config's defaults list.
TRACKING_DEFAULT = "- tracking: default   # configs/tracking/default.yaml: where and how runs are recorded"
# main's and sweep's: `stage_overrides`, a node that mygo.config registers.
STAGE_OVERRIDES_DEFAULTS = (
    '# stage_overrides.<stage>: "" for each stage of the table (mygo/stages/table.py, see mygo.config).',
    TRACKING_DEFAULT,
    "- stage_overrides",
    "- _self_",
)

TRACKING = Block(
    "Where and how every command records its runs: the `tracking` block of every config (override a key as "
    "tracking.uri=..., tracking.experiment=...).",
    {
        "uri": Str(None, "null: $MLFLOW_TRACKING_URI (set by `mlflow run`) or MLflow's default store", null=True),
        "experiment": Str("mygo"),
        "system_metrics": Bool(True, "MLflow system metrics (CPU, memory, disk; GPU where present) on stage runs"),
        "system_metrics_interval": Float(10, "seconds between samples", gt=0),
        "log_model": Bool(True, "finetune logs the tuned model (and score the selector) as MLflow Models"),
        "log_model_max_mb": Float(
            2048, "a base that is no hub id is logged with its adapter up to this size, else referenced", ge=0
        ),
        "registered_model": Str(
            "auto", "the tuned model's registry name; auto: mygo-<target preset>; null: not registered", null=True
        ),
        "registered_selector": Str("mygo-selector", "the selector's registry name; null: not registered", null=True),
    },
)

MODEL = Block(  # configs/model/*.yaml, in convert and warmup
    "",
    {
        "name": Str(PRESET),
        "source": Str(PRESET),
        "seed": Int(PRESET),
        "vocab_size": Int(PRESET, ge=16),
        "architecture": Block(
            "",
            {
                "hidden_size": Int(PRESET, ge=1),
                "num_hidden_layers": Int(PRESET, ge=1),
                "num_experts": Int(PRESET, ge=1),
                "num_experts_per_tok": Int(PRESET, ge=1),
            },
        ),
        "training": Block(
            "",
            {
                "steps": Int(PRESET, ge=0),
                "batch_size": Int(PRESET, ge=1),
                "block_size": Int(PRESET, ge=2),
                "learning_rate": Float(PRESET, gt=0),
            },
        ),
    },
)

DATASET = Block(  # configs/dataset/*.yaml, in warmup: the shared knobs written to configs/dataset/_shared.yaml
    "What every pool preset shares (configs/dataset/: each preset starts from it and sets its pool).",
    {
        "name": Str(PRESET),
        "data_dir": Str(PRESET),
        "dataset_names": List(str, PRESET, null=True),
        "demo": Block(
            "",
            {
                "num_samples": Int(PRESET, ge=1),
                "noise_fraction": Float(PRESET, ge=0, lt=1),
                "noise_kinds": List(str, PRESET),
            },
        ),
        "max_sequence_length": Int(PRESET, ge=8),
        "format": Choice(
            "auto",
            ("auto", "messages", "alpaca", "sharegpt", "openai", "prompt_response"),
            "auto (each file's own) | messages | alpaca | sharegpt | openai | prompt_response",
        ),
        "skip_bad_lines": Bool(False, "true: skip lines that are not JSON and count them (data/bad_lines)"),
        "full_sequence_prediction": Bool(False, "true: labels on user and assistant turns; false: assistant only"),
        "mask_special_tokens": Bool(True, "no loss on role markers"),
        "train_on_tool_turns": Bool(False, "true: labels on tool turns (tool results) too"),
        "num_proc": Any("auto", "tokenizing processes; auto: one per core for large pools"),
        "cache_dir": Str("outputs/cache", "the demo pool and tokenized pools, keyed by content"),
        "dedup": Block(
            "Duplicates removed before warmup and scoring (mygo/data/dedup.py); the first in pool order is kept.",
            {
                "enabled": Bool(True, "exact: the same conversation once case-folded and whitespace-collapsed"),
                "near": Bool(PRESET),
                "threshold": Float(0.8, "near: Jaccard similarity of the answers' shingle sets", gt=0, le=1),
                "num_perm": Int(128, "near: MinHash permutations for the LSH index", ge=2),
                "shingle": Int(5, "near: words per shingle", ge=1, le=64),
                "min_words": Int(10, 'near: shorter answers ("yes", "(B)") are compared exactly only', ge=1),
            },
        ),
        "decontamination": Block(
            "Pool records holding an evaluation item removed before warmup and scoring (mygo/data/decontamination.py).",
            {
                "enabled": Bool(True, "check the pool against the tasks' validation, test and few-shot items"),
                "tasks": List(
                    str, PRESET, "lm-eval tasks or groups (those evaluate runs); one not loadable here: named"
                ),
                "ngram": Int(8, "words per gram (PaLM's 8)", ge=1, le=64),
                "min_ngram": Int(6, "items shorter than ngram words: one gram of all of them, down to this", ge=1),
                "threshold": Float(0.7, "share of an item's grams one record must hold (PaLM's 0.7)", gt=0, le=1),
                "max_items": Int(10, "a gram of more items than this is the tasks' template: not counted", ge=1),
                "task_dir": Str(None, "lm-eval task YAMLs beside lm-eval's own; null: configs/eval_tasks/", null=True),
            },
        ),
    },
)

TARGET = Block(  # configs/target/*.yaml, in finetune and evaluate
    "",
    {
        "name": Str(PRESET),
        "source": Str(PRESET),
        "max_sequence_length": Int(PRESET, ge=8),
        "lora": Block(
            "",
            {
                "r": Int(PRESET, ge=1),
                "alpha": Float(PRESET, gt=0),
                "dropout": Float(PRESET, ge=0, lt=1),
                "target_modules": List(str, PRESET),
            },
        ),
        "training": Block(
            "",
            {
                "learning_rate": Float(PRESET, gt=0),
                "batch_size": Int(PRESET, ge=1),
                "micro_batch_size": Int(PRESET, ge=1),
                "epochs": Float(PRESET, gt=0),
                "warmup_ratio": Float(PRESET, ge=0, le=1),
                "weight_decay": Float(PRESET, ge=0),
                "max_grad_norm": Float(PRESET, gt=0),
                "gradient_checkpointing": Bool(PRESET),
            },
        ),
        "evaluation": Block(
            "",
            {
                "num_fewshot": Int(PRESET, ge=0, null=True),
                "in_domain": List(str, PRESET, null=True),
                "out_of_domain": List(str, PRESET, null=True),
            },
        ),
    },
)


def trainer_mechanics(logging_steps: int, output_dir: str, holds: str) -> dict[str, Knob]:
    """The mechanics of a Trainer run (warmup's and finetune's `training`): what it logs, checkpoints and resumes."""
    return {
        "seed": Int(42),
        "logging_steps": Int(logging_steps, ge=1),
        "resume": Bool(False, "true: continue an unfinished run with this config from its last checkpoint"),
        "save_steps": Int(0, "> 0: a Trainer checkpoint every save_steps steps", ge=0),
        "tracking_flush_s": Float(
            120, "after training, how long unsent metrics wait for an unreachable tracking store", ge=0
        ),
        "output_dir": Str(output_dir, f"<output_dir>/<run id>/ holds checkpoints and {holds}"),
    }


def quality_loss(enable_load_balancing: bool) -> dict[str, Knob]:
    """The Select-MoE fields of the quality loss, as convert writes them into a model and warmup trains with them."""
    return {
        "trash_expert_mode": Str("zero", "zero | noise | custom:<name> (mygo.registry)"),
        "quality_loss_type": Str(
            "sigmoid", "sigmoid (MyGO's) | one of mygo/models/choices.py | custom:<name> (mygo.registry)"
        ),
        "quality_loss_weight": Float(0.01, ge=0),
        "enable_load_balancing": Bool(enable_load_balancing),
    }
