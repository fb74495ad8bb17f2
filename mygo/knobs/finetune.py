"""The knobs of configs/finetune.yaml."""

from mygo.knobs.declare import Any, Block, Bool, Declared, Str
from mygo.knobs.groups import TARGET, TRACKING, TRACKING_DEFAULT, trainer_mechanics

CONFIG = Declared(
    "finetune",
    header=(
        "Stage 3: LoRA-tune the target model on the selected data (a select run's"
        " selected_data.jsonl, or any JSONL in the pool format). The target "
        "preset (configs/target/) brings the model and its recipe."
    ),
    defaults=(
        TRACKING_DEFAULT,
        "- target: tiny",
        "- _self_",
    ),
    body={
        "upstream": Block(
            "Nested, not top-level: `mlflow run` logs -P select_run itself.",
            {
                "select_run": Str(
                    None, "a FINISHED select run: trains on its selection/selected_data.jsonl", null=True
                ),
            },
        ),
        "data": Block(
            "",
            {
                "path": Str(None, "or any JSONL file in the pool format (exactly one of the two)", null=True),
                "skip_bad_lines": Bool(False),
                "full_sequence_prediction": Bool(False, "assistant-only labels, as LESS and MyGO train"),
                "mask_special_tokens": Bool(True),
                "train_on_tool_turns": Bool(False, "tool results are context, never labels, unless asked"),
                "num_proc": Any("auto", "tokenizing processes; auto: one per core for large pools"),
                "cache_dir": Str("outputs/cache"),
            },
        ),
        "training": Block(
            ("Mechanics; the recipe (learning rate, batch, epochs, precision) is the target's: target.training.*"),
            {
                **trainer_mechanics(5, "outputs/finetune", "the adapter"),
            },
        ),
    },
    groups={"tracking": TRACKING, "target": TARGET},
)
