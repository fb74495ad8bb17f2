"""The knobs of configs/compare.yaml."""

from mygo.knobs.declare import Block, Declared, Str
from mygo.knobs.groups import TRACKING, TRACKING_DEFAULT

CONFIG = Declared(
    "compare",
    header=("Print the evaluation of each arm (selection, random, quality top-k, full pool, base) side by side."),
    defaults=(
        TRACKING_DEFAULT,
        "- _self_",
    ),
    body={
        "compare": Block(
            "",
            {
                "run_ids": Str(None, "pipeline, trial or evaluate run IDs, separated by spaces or commas", null=True),
                "output": Str(None, "a path: also write the table there as CSV", null=True),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
