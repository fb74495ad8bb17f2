"""The knobs of configs/main.yaml."""

from mygo.knobs.declare import Block, Declared, List, Str
from mygo.knobs.groups import STAGE_OVERRIDES_DEFAULTS, TRACKING

CONFIG = Declared(
    "main",
    header=(
        "The pipeline on the configured setup (the embedded default unless told "
        "otherwise): convert -> warmup -> score -> select -> finetune -> "
        "evaluate, each a child run of one pipeline run; finished stages reused."
    ),
    defaults=(
        STAGE_OVERRIDES_DEFAULTS[0],
        '# Hydra overrides forwarded to each stage\'s own config, e.g. convert: "model=olmoe_1b_7b".',
        *STAGE_OVERRIDES_DEFAULTS[1:],
    ),
    body={
        "pipeline": Block(
            "",
            {
                "force": Str(
                    None,
                    (
                        "a stage name: rerun it and every stage after it, even when a finished "
                        "run matches; all: every stage"
                    ),
                    null=True,
                ),
                "until": Str(None, "a stage name: stop after it (null: run all six)", null=True),
                "controls": List(
                    str,
                    ["random"],
                    (
                        "Control arms, fine-tuned and evaluated with the pipeline's own settings "
                        "beside the selection (mygo.workflows.controls): random | quality_topk | "
                        "full (the whole pool) | base (no fine-tuning)."
                    ),
                    null=True,
                ),
                "seeds": List(
                    int,
                    [0, 1, 2],
                    ("finetune training.seed of every arm (and the random arm's draw); [] or null: the finetune's own"),
                    null=True,
                ),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
