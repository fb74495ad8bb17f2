"""The knobs of configs/warmup.yaml."""

from mygo.knobs.declare import Block, Bool, Choice, Declared, Float, Int, List, Str
from mygo.knobs.groups import DATASET, MODEL, TRACKING, TRACKING_DEFAULT, quality_loss, trainer_mechanics

CONFIG = Declared(
    "warmup",
    header=(
        "Stage 1: warm up the router (quality gates, and the MoE router gates or "
        "LoRA on them) on a subset of the pool. Defaults for real runs follow "
        "upstream MyGO; tuned/warmup_<model>.yaml adapts a preset."
    ),
    defaults=(
        TRACKING_DEFAULT,
        "- model: tiny",
        "- dataset: demo",
        "- _self_",
        "- optional tuned: warmup_${model}",
        "- objective: null     # upstream | corruption (configs/objective/): a named objective over the tuned one",
    ),
    body={
        "upstream": Block(
            (
                "Nested, not top-level: `mlflow run` logs -P convert_run itself, and a "
                "flattened key must not collide with it."
            ),
            {
                "convert_run": Str(
                    None, "a FINISHED convert run; null: reuse (or make) the conversion of `model`", null=True
                ),
                "convert_overrides": Str("", "Hydra overrides for that conversion when it has to be made"),
            },
        ),
        "select_moe": Block(
            ("Select-MoE fields applied to the converted model for training (see SelectMoeConfig)."),
            {
                **quality_loss(enable_load_balancing=False),
                "sample_wise_averaging": Bool(False),
                "beta_target_mean": Float(0.5, gt=0, lt=1),
                "beta_target_var": Float(0.05, gt=0),
                "w_mean": Float(1.0),
                "w_var": Float(1.0),
                "lambda_var": Float(0.1),
                "quality_loss_debug": Bool(False),
            },
        ),
        "corruption": Block(
            (
                "On-the-fly corruptions that `quality_loss_type: corruption_detection` "
                "learns from (mygo.data.corruption): a share of every batch is corrupted "
                "by one of `kinds`, and the gate learns to trash those answers."
            ),
            {
                "fraction": Float(0.5, ge=0, lt=1),
                "kinds": List(
                    str, ["token_substitution", "token_permutation", "answer_swap", "span_repetition", "truncation"]
                ),
                "seed": Int(0),
            },
        ),
        "dataset": Block(
            "",
            {
                "subset_ratio": Float(0.05, gt=0, le=1),
                "seed": Int(42),
                "shuffle": Bool(True),
            },
        ),
        "training": Block(
            "",
            {
                "peft_mode": Choice(
                    "full_rank",
                    ("full_rank", "lora"),
                    ("full_rank: quality gates (+ router gates) train | lora: LoRA on the router"),
                ),
                "train_router_gates": Bool(True, "full_rank only: also train the MoE router gates"),
                "lora": Block(
                    "",
                    {
                        "r": Int(8, ge=1),
                        "alpha": Float(16, gt=0),
                        "dropout": Float(0.0, ge=0, lt=1),
                        "target_parameters": List(str, ["mlp.gate.weight"], "the MoE router gate is a bare parameter"),
                        "target_modules": List(str, []),
                    },
                ),
                "learning_rate": Float(0.0001, gt=0),
                "epochs": Float(1, gt=0),
                "batch_size": Int(16, "global: micro_batch_size x processes x gradient accumulation", ge=1),
                "micro_batch_size": Int(2, ge=1),
                "weight_decay": Float(0.0, ge=0),
                "warmup_ratio": Float(0.03, ge=0, le=1),
                "lr_scheduler": Str("cosine"),
                "max_grad_norm": Float(1.0, gt=0),
                "precision": Choice(
                    "auto",
                    ("auto", "bf16", "float32"),
                    "auto: bf16 on a GPU that has it, else float32 | bf16 | float32",
                ),
                "gradient_checkpointing": Bool(False),
                "probe_samples": Int(256, "a fixed sample of the pool scored during training (0: off)", ge=0),
                "probe_every": Int(50, ge=1),
                "probe_batch_size": Int(16, ge=1),
                **trainer_mechanics(10, "outputs/warmup", "the router weights"),
            },
        ),
    },
    groups={"tracking": TRACKING, "model": MODEL, "dataset": DATASET},
)
