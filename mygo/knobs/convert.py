"""The knobs of configs/convert.yaml."""

from mygo.knobs.declare import Any, Block, Choice, Declared, Float, Int, Mapping, Str
from mygo.knobs.groups import MODEL, TRACKING, TRACKING_DEFAULT, quality_loss

CONFIG = Declared(
    "convert",
    header=("Convert an OLMoE checkpoint to Select-MoE, check parity, and record the result in MLflow."),
    defaults=(
        TRACKING_DEFAULT,
        "- model: tiny",
        "- _self_",
    ),
    body={
        "select_moe": Block(
            ("The Select-MoE fields written into the converted config (see SelectMoeConfig)."),
            {
                "quality_gate_init_mean": Float(0.0),
                "quality_gate_init_std": Float(0.02, ge=0),
                **quality_loss(enable_load_balancing=True),
            },
        ),
        "convert": Block(
            "",
            {
                "dtype": Choice(
                    "float32", ("float32", "bfloat16", "float16"), "bfloat16 halves memory for multi-GB checkpoints"
                ),
                "output_dir": Str("outputs/convert", "the converted model is saved to <output_dir>/<run id>/model"),
                "log_model_artifact": Any(
                    "auto", "true | false | auto: copy into the run's artifacts below max_artifact_mb"
                ),
                "max_artifact_mb": Float(2048, ge=0),
                "parity_seed": Int(0),
                "parity_tolerance": Mapping(
                    {"float32": 1e-05, "bfloat16": 0.05, "float16": 0.01}, "max abs logits difference allowed, by dtype"
                ),
            },
        ),
    },
    groups={"tracking": TRACKING, "model": MODEL},
)
