"""The knobs of configs/score.yaml."""

from mygo.knobs.declare import Block, Bool, Choice, Declared, Int, Str
from mygo.knobs.groups import TRACKING, TRACKING_DEFAULT

CONFIG = Declared(
    "score",
    header=("Stage 2a: run the pool through a warmup run's router once; keep per-sample quality and router logits."),
    defaults=(
        TRACKING_DEFAULT,
        "- _self_",
    ),
    body={
        "upstream": Block(
            ("Nested, not top-level: `mlflow run` logs every -P (warmup_run, dataset_overrides) as a param itself."),
            {
                "warmup_run": Str(None, "a FINISHED warmup run (required)", null=True),
                "dataset_overrides": Str(
                    "",
                    (
                        "The pool is the warmup run's (its dataset settings, all of it rather "
                        "than its subset); change settings with key=value pairs, e.g. "
                        '"data_dir=/data/less/train/processed num_proc=16".'
                    ),
                ),
            },
        ),
        "score": Block(
            "",
            {
                "shard_size": Int(
                    4096, "samples per shard: the unit of resuming and of splitting over processes", ge=1
                ),
                "max_batch_tokens": Int(16384, "padded tokens per forward pass (rows are sorted by length)", ge=1),
                "max_batch_size": Int(64, ge=1),
                "precision": Choice("auto", ("auto", "bf16", "float32"), "auto | bf16 (GPU) | float32"),
                "ifd": Bool(
                    False, ("also IFD: one more decoder pass over the answers alone (NLL and the gate always)")
                ),
                "feature_dtype": Choice(
                    "float16",
                    ("float16", "bfloat16", "float32"),
                    "router-logit features on disk: float16 halves 270k x 16 x 64",
                ),
                "output_dir": Str(
                    "outputs/score", "<output_dir>/<scoring key>/: shards, index; logged as router_data/"
                ),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
