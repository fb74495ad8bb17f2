"""The knobs of configs/reproduce.yaml."""

from mygo.knobs.declare import Block, Declared, Float, Str
from mygo.knobs.groups import TRACKING, TRACKING_DEFAULT

CONFIG = Declared(
    "reproduce",
    header=("Re-execute a run's stage with its logged resolved config and the same upstream run, then compare."),
    defaults=(
        TRACKING_DEFAULT,
        "- _self_",
    ),
    body={
        "reproduce": Block(
            "",
            {
                "run_id": Str(None, "the run to reproduce", null=True),
                "weights_atol": Float(
                    1e-05,
                    ("max abs difference of any weight (router weights, adapter, converted model, router data)"),
                    ge=0,
                ),
                "metrics_rtol": Float(0.0001, "relative difference of any metric (timings are not compared)", ge=0),
                "output_dir": Str("outputs/reproduce"),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
