"""The knobs of configs/select.yaml."""

from mygo.knobs.declare import Any, Block, Bool, Choice, Declared, Float, Int, List, Str
from mygo.knobs.groups import TRACKING, TRACKING_DEFAULT
from mygo.signal_table import SIGNALS

CONFIG = Declared(
    "select",
    header=(
        "Stage 2b: cluster the scored pool by router logits and select a diverse,"
        " high-quality subset. The defaults below were chosen on the validation "
        "splits of every task, in and out of the pool's domain "
        "(sweeps/generalization.yaml; docs/results/); `selector=upstream` "
        "(configs/selector/) is MyGO's own."
    ),
    defaults=(
        TRACKING_DEFAULT,
        "- _self_",
        "- selector: null",
    ),
    body={
        "upstream": Block(
            "Nested, not top-level: `mlflow run` logs -P score_run itself.",
            {
                "score_run": Str(None, "a FINISHED score run (required)", null=True),
            },
        ),
        "selection": Block(
            "",
            {
                "percentage": Float(0.05, "of the pool, in (0, 1]", gt=0, le=1),
                "count": Int(
                    None,
                    (
                        "a number of samples instead; when set (not null) it wins and percentage "
                        "is not used; more than the scored pool holds is an error"
                    ),
                    ge=1,
                    null=True,
                ),
                "tokens": Int(
                    None,
                    (
                        "a budget in tokens of the trained (assistant) turns instead: records are taken in"
                        " the strategy's order until the nearest total; count and tokens: set one at most"
                    ),
                    ge=1,
                    null=True,
                ),
                "tokenizer": Str(
                    None,
                    (
                        "what counts tokens: a hub name or directory (main: the target's); null: the"
                        " scoring model's (the tiny target shares it)"
                    ),
                    null=True,
                ),
                "target": Str(
                    None,
                    (
                        "select for a task: an lm-eval task (its validation and few-shot items) or a file of"
                        " examples in a pool format; the pool by round robin over the examples' nearest samples"
                        " (router features), within the budget and vetoes; null: untargeted"
                    ),
                    null=True,
                ),
                "target_share": Float(
                    0.5,
                    (
                        "with a target: the share of the budget aimed at it, the rest the untargeted selection's"
                        " (0.5, chosen on validation: 1.0 gains more on the target and loses to random elsewhere)"
                    ),
                    ge=0,
                    le=1,
                ),
                "source_balance": Choice(
                    "none",
                    ("none", "proportional", "equal"),
                    (
                        "how the budget is split over sources (a record's `dataset`): none (the "
                        "strategy over the whole pool) | proportional (by each source's share of "
                        "the pool) | equal (the same for each; what a small source cannot fill "
                        "goes to the others); the strategy then runs within each source on its "
                        "share, over the same (global) clusters"
                    ),
                ),
                "source_caps": Any(
                    None,
                    (
                        "none (null), or source -> the most it may give: a float in [0, 1] is a "
                        "fraction of the selection (rounded down), an int a number of samples; a "
                        "name that is not a source of the pool is an error. On the command line, "
                        "the whole mapping: selection.source_caps={oasst1:0.25,cot:500}"
                    ),
                ),
                "strategy": Str("round_robin", "round_robin (the method) | quality_topk | random (baselines)"),
                "quality_signal": Choice(
                    "nll",
                    SIGNALS,
                    (
                        "gate (MyGO's) | nll | ifd (needs score.ifd) | relevance | overlap | "
                        "prompt_copy | repetition | rank_mean | rank_min (the mean or the lowest "
                        'of several signals\' ranks): what "best" is'
                    ),
                ),
                "rank_mean_of": List(
                    str,
                    None,
                    ("signals rank_mean and rank_min combine (null: every signal the score run computed)"),
                    null=True,
                ),
                "quality_within": Choice(
                    "source",
                    ("pool", "source"),
                    ("compare quality over the whole pool | within each sample's source dataset (its rank there)"),
                ),
                "quality_floor": Float(
                    0.4, ("share of the pool, lowest quality first, that is never selected (0: none)"), ge=0, lt=1
                ),
                "quality_ceiling": Float(
                    0.3,
                    ("share of the pool, highest quality first, never selected: what the model knows already"),
                    ge=0,
                    lt=1,
                ),
                "veto_signals": List(
                    str,
                    ["overlap", "relevance"],
                    (
                        "signals whose worst veto_share is never selected, whatever the band: a "
                        "sample must pass every detector (null or []: none); ranked within "
                        "sources as quality is (quality_within)"
                    ),
                    null=True,
                ),
                "veto_share": Float(
                    0.1, ("measured: 0.2 keeps less noise and trains a slightly worse model (README)"), ge=0, lt=1
                ),
                "outlier_signals": List(
                    str,
                    None,
                    (
                        "signals whose outliers are never selected: a sample more than outlier_z "
                        "robust standard deviations (median absolute deviation) below its "
                        "source's median; a cut by how far out a sample lies, not a share (null "
                        "or []: none)"
                    ),
                    null=True,
                ),
                "outlier_z": Float(2.0, gt=0),
                "max_prompt_copy": Float(
                    0.8,
                    (
                        "an answer this alike its question (Jaccard of 4-gram sets; 1: the "
                        "question repeated back) is never selected; 0.8 is what near dedup calls "
                        "a duplicate (null: no limit)"
                    ),
                    gt=0,
                    le=1,
                    null=True,
                ),
                "max_repetition": Float(
                    0.5,
                    (
                        "an answer with at least this share of its word 3-grams repeated (a loop:"
                        " near 1) is never selected (null: no limit)"
                    ),
                    gt=0,
                    le=1,
                    null=True,
                ),
                "floor_scope": Choice(
                    "pool",
                    ("pool", "cluster"),
                    ("where the floor's and ceiling's quantiles are taken: the whole pool, or each sample's cluster"),
                ),
                "within_cluster": Choice(
                    "coverage",
                    ("quality", "random", "coverage"),
                    (
                        "round robin: the member that best covers its cluster, its text least "
                        "like what is selected (coverage: chosen on every task's validation "
                        "split, docs/results/2026-12-07-defaults-chosen-on-every-task.md) | each"
                        " cluster's best first (quality, MyGO's) | in random order (random)"
                    ),
                ),
                "cluster_quota": Choice(
                    "proportional",
                    ("equal", "proportional"),
                    ("round robin: every cluster gets as many picks (MyGO's) | picks by its size (proportional)"),
                ),
                "cover": Choice(
                    "band",
                    ("band", "pool"),
                    (
                        "what the covering order represents: the band less the vetoes | the pool "
                        "less the vetoes (pool: picks still come from the band, placed and shared"
                        " out over the clusters by the whole pool, so the parts a band thins keep"
                        " their share)"
                    ),
                ),
                "novelty": Choice(
                    "embedding",
                    ("embedding", "bigrams", "both"),
                    (
                        "the covering order's text novelty: one minus the highest cosine to a pick in a TF-IDF + SVD "
                        "embedding of prompt and answer | the share of the answer's word bigrams no pick holds yet | "
                        "the product of the two"
                    ),
                ),
                "bigram_weight": Float(
                    1.0,
                    "novelty: both: the exponent on the bigrams' novelty (0: the embedding's alone)",
                    ge=0,
                ),
                "seed": Int(42),
            },
        ),
        "clustering": Block(
            "",
            {
                "method": Choice("kmeans", ("kmeans", "hdbscan"), "kmeans | hdbscan"),
                "backend": Str(
                    "auto", ("k-means': auto: cuML or torch on a GPU, faiss or scikit-learn on CPU (HDBSCAN's: below)")
                ),
                "pca_components": Int(
                    None, "reduce the L2-normalised features first (null: keep all)", ge=1, null=True
                ),
                "seed": Int(42),
                "silhouette_sample": Int(5000, "cosine silhouette on a seeded sample", ge=2),
                "kmeans": Block(
                    "",
                    {
                        "k": Int(None, "null: choose k by the elbow method over k_range (auto_k)", ge=2, null=True),
                        "k_range": List(int, [10, 100]),
                        "elbow_points": Int(10, "k values tried over k_range", ge=2),
                        "elbow_sample": Int(
                            20000, "samples the elbow is measured on (the final fit: fit_sample)", ge=2
                        ),
                        "max_iters": Int(300, ge=1),
                        "fit_sample": Int(
                            300000,
                            (
                                "above this many samples the final Lloyd fit runs on a seeded sample of this"
                                " many and every sample is assigned to its nearest centre (null: fit all)"
                            ),
                            ge=2,
                            null=True,
                        ),
                    },
                ),
                "hdbscan": Block(
                    "",
                    {
                        "min_cluster_size": Int(10, ge=2),
                        "min_samples": Int(None, ge=1, null=True),
                        "metric": Str("euclidean", "on L2-normalised features: cosine geometry"),
                        "auto_tune": Bool(
                            False, "try min_cluster_size/min_samples around these, keep the best silhouette"
                        ),
                        "backend": Choice(
                            "auto",
                            ("auto", "sklearn", "fast_hdbscan", "cuml"),
                            ("auto: cuML on a GPU, else scikit-learn | sklearn | fast_hdbscan (if installed) | cuml"),
                        ),
                        "pca_components": Int(
                            16,
                            ("wider features are PCA-reduced to this many dims first (null: keep all; slow)"),
                            ge=1,
                            null=True,
                        ),
                        "fit_sample": Int(
                            20000,
                            (
                                "fit on this many rows, assign the rest by mutual reachability (null: fit"
                                " all; HDBSCAN's cost grows with n^2: 270k x 1024 would take about a day "
                                "on 2 cores)"
                            ),
                            ge=2,
                            null=True,
                        ),
                    },
                ),
            },
        ),
        "plots": Block(
            "",
            {
                "projection_sample": Int(5000, ge=0),
            },
        ),
        "diversity": Block(
            ("the selection beside random and quality top-k ones of its size (diversity/...)"),
            {
                "coverage_sample": Int(
                    20000,
                    ("pool samples coverage_distance averages over (a fixed sample; all of a smaller pool)"),
                    ge=1,
                ),
            },
        ),
        "output_dir": Str("outputs/select", "<output_dir>/<run id>/: selected_data.jsonl, samples.parquet"),
    },
    groups={"tracking": TRACKING},
)
