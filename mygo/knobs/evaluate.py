"""The knobs of configs/evaluate.yaml."""

from mygo.knobs.declare import Any, Block, Bool, Choice, Declared, Float, Int, List, Str
from mygo.knobs.groups import TARGET, TRACKING, TRACKING_DEFAULT

CONFIG = Declared(
    "evaluate",
    header=(
        "Stage 4: lm-eval on the target model with a finetune run's LoRA adapter (or the base alone, as the baseline)."
    ),
    defaults=(
        TRACKING_DEFAULT,
        "- target: tiny            # used with base_only and no finetune run; otherwise the finetune run's target",
        "- _self_",
    ),
    body={
        "upstream": Block(
            "Nested, not top-level: `mlflow run` logs -P finetune_run itself.",
            {
                "finetune_run": Str(None, "a FINISHED finetune run: its target model plus its adapter", null=True),
                "model_uri": Str(
                    None, ("or a registered version, models:/<name>@<alias> or models:/<name>/<version>"), null=True
                ),
            },
        ),
        "evaluation": Block(
            "",
            {
                "base_only": Bool(False, "true: the base model alone (the baseline to compare against)"),
                "tasks": Any(
                    None, ("lm-eval task or group names; null: the target's (mmlu; stdlib_qa, stdlib_mmlu for tiny)")
                ),
                "splits": List(
                    str,
                    ["val", "test"],
                    ("val: each task's validation split (what to choose on); test: the final figure"),
                ),
                "num_fewshot": Int(None, "null: the target's (5 for MMLU)", ge=0, null=True),
                "limit": Float(
                    None, "at most this many examples per task (a fraction below 1); null: all", gt=0, null=True
                ),
                "batch_size": Any(None, "null: the target's"),
                "apply_chat_template": Any(
                    "auto",
                    (
                        "auto: as finetune trained: on with a finetune run (its adapter, or its "
                        "base as the baseline), whose conversations were chat-formatted, few-shot"
                        " examples as turns; off for a target alone (plain pretraining)"
                    ),
                ),
                "precision": Choice(
                    "auto", ("auto", "bf16", "float32"), "auto: bf16 on a GPU that has it, else float32"
                ),
                "seed": Int(1234),
                "task_dir": Str(None, "lm-eval task YAMLs beside lm-eval's own; null: configs/eval_tasks/", null=True),
            },
        ),
        "output_dir": Str(
            "outputs/evaluate", ("<output_dir>/<run id>/target: the tiny target, when no run has built it yet")
        ),
    },
    groups={"tracking": TRACKING, "target": TARGET},
)
