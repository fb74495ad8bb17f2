"""The knobs of configs/sweep.yaml."""

from mygo.knobs.declare import Block, Bool, Declared, Float, Int, List, Str
from mygo.knobs.groups import STAGE_OVERRIDES_DEFAULTS, TRACKING

CONFIG = Declared(
    "sweep",
    header=(
        "An Optuna study over the pipeline: each trial is the pipeline with "
        "sampled settings, a child run of the study's parent run; stages whose "
        "config did not change are reused (one warmup per loss setting)."
    ),
    defaults=(
        STAGE_OVERRIDES_DEFAULTS[0],
        "# Overrides for every trial's stages (the same as main's), under the sampled ones.",
        *STAGE_OVERRIDES_DEFAULTS[1:],
    ),
    body={
        "pipeline": Block(
            "",
            {
                "seeds": List(
                    int,
                    [0, 1, 2],
                    (
                        "each trial's finetune seeds (main's pipeline.seeds); a delta_vs_<arm> "
                        "objective averages over them"
                    ),
                    null=True,
                ),
            },
        ),
        "sweep": Block(
            "",
            {
                "space": Str("sweeps/selection.yaml", "the search space (a path, or relative to this repository)"),
                "n_trials": Int(20, "COMPLETE trials the study should end with, over all workers", ge=1),
                "study": Str(None, "null: the space file's name", null=True),
                "storage": Str(
                    None,
                    (
                        "Optuna storage URL, no password in it; null: $MYGO_OPTUNA_STORAGE, else "
                        "optuna.db beside a SQLite MLflow store"
                    ),
                    null=True,
                ),
                "continue_changed_space": Bool(
                    False, "true: go on with a study whose search space changed since it was created"
                ),
                "max_retry": Int(2, "a trial whose worker died is retried this many times", ge=0),
                "heartbeat_interval": Int(
                    30, "seconds; a RUNNING trial without a heartbeat for grace_period is failed", ge=1
                ),
                "grace_period": Int(90, ge=1),
                "connect_timeout": Float(10, "seconds to wait for a storage server before giving up", gt=0),
            },
        ),
    },
    groups={"tracking": TRACKING},
)
