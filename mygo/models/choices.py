"""The built-in names of the model's pluggable choices, apart from the code behind them.

The config checks a name (`SelectMoeConfig.validate_select_moe`) and the losses implement it; both
import the names from here, so neither imports the other.
"""

BUILTIN_QUALITY_LOSSES = (
    "sigmoid",
    "mse",
    "beta_moment_matching",
    "mean_variance_regularization",
    "corruption_detection",
    "pooled_corruption_detection",
)
# Losses that learn from quality_targets (the warmup's corruptions).
TARGETED_LOSSES = ("corruption_detection", "pooled_corruption_detection")
