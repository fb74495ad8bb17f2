"""The knobs of configs/lineage.yaml."""

from mygo.knobs.declare import Block, Declared, Str
from mygo.knobs.groups import TRACKING, TRACKING_DEFAULT

CONFIG = Declared(
    "lineage",
    header=("Print the chain from a run back to its conversion, with key params and metrics."),
    defaults=(
        TRACKING_DEFAULT,
        "- _self_",
    ),
    body={
        "lineage": Block(
            "",
            {
                "run_id": Str(None, "any mygo run (a pipeline run is followed from its last stage)", null=True),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
