"""The select stage on a real scored tiny pool: outputs, strategies side by side, determinism, bad input."""

import dataclasses
import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from mygo.analysis.clustering import prepare_features
from mygo.analysis.quality_signals import rank_within, robust_z_within, signal_values
from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.data.pool import PoolError
from mygo.signal_table import FAULT_LIMITS
from mygo.stages.select import run_select
from mygo.stages.selection_policy import SelectionPolicy
from mygo.tracking.handoffs import SELECTED_IDS_TAG, router_data_of
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from mygo.workflows.controls import control_overrides
from tests.helpers import artifact_paths, quick_warmup_overrides


def select_config(scored, *overrides: str):
    base = [f"upstream.score_run={scored['score_run']}", f"output_dir={scored['root'] / 'select'}"]
    return load_config("select", [*base, "selection.percentage=0.1", "clustering.kmeans.k_range=[2,8]", *overrides])


def pool_lines(root: Path) -> dict[str, bytes]:
    lines = {}
    for path in sorted((root / "cache" / "demo_pool").glob("*/*/*.jsonl")):
        for raw in path.read_bytes().splitlines(keepends=True):
            lines[json.loads(raw)["id"]] = raw
    return lines


def test_round_robin_selection_writes_pool_records_and_records_everything(store):
    run = mlflow.get_run(run_select(select_config(store, "selector=upstream")))  # MyGO's own round robin
    assert run.info.status == "FINISHED" and run.data.tags[STAGE_TAG] == "select"
    assert run.data.tags[UPSTREAM_TAG] == store["score_run"]
    metrics = run.data.metrics
    assert metrics["selection/num_selected"] == 12 and 2 <= metrics["clustering/chosen_k"] <= 8
    assert metrics["clustering/num_clusters"] == metrics["clustering/chosen_k"]
    assert {"noise/auroc", "noise/fraction_pool", "noise/fraction_selected"} <= set(metrics)
    assert sum(v for k, v in metrics.items() if k.startswith("selection/source/")) == pytest.approx(1.0)
    assert {
        "selection/selected_data.jsonl",
        "selection/samples.parquet",
        "plots/elbow.png",
        "plots/cluster_sizes.png",
        "plots/quality_selected_vs_all.png",
        "plots/projection_2d.png",
    } <= artifact_paths(run.info.run_id)

    selected_file = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="selection/selected_data.jsonl"
    )
    selected = Path(selected_file).read_bytes().splitlines(keepends=True)
    originals = pool_lines(store["root"])
    ids = [json.loads(line)["id"] for line in selected]
    assert len(ids) == 12 == len(set(ids)) and all(originals[i] == line for i, line in zip(ids, selected, strict=True))
    assert run.data.tags[SELECTED_IDS_TAG] == hashlib.sha256("\n".join(ids).encode()).hexdigest()

    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="selection/samples.parquet")
    )
    assert list(table.columns) == ["id", "dataset", "quality", "cluster", "selected", "round"] and len(table) == 120
    assert table["selected"].sum() == 12 and set(table.loc[table["selected"], "id"]) == set(ids)
    # Round robin: round 0 holds the best sample of every cluster.
    best = table.loc[table.groupby("cluster")["quality"].idxmax()]
    assert (best["round"] == 0).all()
    # The logged silhouette is the cosine silhouette of these clusters on the scored features (all 120 rows).
    features = prepare_features(router_data_of(mlflow.get_run(store["score_run"])).features)
    expected = silhouette_score(features, table["cluster"], metric="cosine")
    assert metrics["clustering/silhouette"] == pytest.approx(expected, rel=1e-4)

    again = mlflow.get_run(run_select(select_config(store, "selector=upstream")))
    assert again.data.tags[SELECTED_IDS_TAG] == run.data.tags[SELECTED_IDS_TAG]


def test_the_default_selects_within_the_band_of_source_ranks_by_cluster_size(store):
    run = mlflow.get_run(run_select(select_config(store)))
    assert run.data.params["selection.quality_signal"] == "nll" and run.data.params["selection.cluster_quota"] == (
        "proportional"
    )
    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="selection/samples.parquet")
    )
    low, high = np.quantile(table["quality"], [0.4, 0.7])  # quality: the NLL's rank within the source
    chosen = table.loc[table["selected"]]
    assert len(chosen) == 12 and chosen["quality"].between(low, high).all()
    assert (table.groupby("dataset")["quality"].max() == 1.0).all()


def test_coverage_order_picks_within_the_band_by_the_records_text_and_is_seeded(store, caplog):
    caplog.set_level("INFO", logger="mygo.stages.select")
    run = mlflow.get_run(run_select(select_config(store, "selection.within_cluster=coverage", "selection.count=24")))
    assert "inputs (embedding) of 120 records" in caplog.text  # read from the pool files, not from the router data
    table, vetoed = (
        selected_table(run.info.run_id),
        vetoed_rows(store, "overlap", 0.1) | vetoed_rows(store, "relevance", 0.1),
    )
    low, high = np.quantile(table["quality"], [0.4, 0.7])
    chosen = table.loc[table["selected"]]
    assert len(chosen) == 24 and chosen["quality"].between(low, high).all() and not table.loc[vetoed, "selected"].any()
    assert chosen.groupby("cluster")["round"].apply(lambda r: sorted(r) == list(range(len(r)))).all()
    metrics = run.data.metrics
    assert {"diversity/coverage_distance", "diversity/coverage_distance/random"} <= set(metrics)
    again = mlflow.get_run(run_select(select_config(store, "selection.within_cluster=coverage", "selection.count=24")))
    shuffled = mlflow.get_run(run_select(select_config(store, "selection.within_cluster=random", "selection.count=24")))
    assert again.data.tags[SELECTED_IDS_TAG] == run.data.tags[SELECTED_IDS_TAG]
    assert shuffled.data.tags[SELECTED_IDS_TAG] != run.data.tags[SELECTED_IDS_TAG]
    settings = ("selection.within_cluster=coverage", "selection.count=24", "selection.novelty=bigrams")
    bigrams = mlflow.get_run(run_select(select_config(store, *settings)))
    assert "inputs (bigrams) of 120 records" in caplog.text
    assert bigrams.data.tags[SELECTED_IDS_TAG] != run.data.tags[SELECTED_IDS_TAG]
    assert selected_table(bigrams.info.run_id).loc[lambda t: t["selected"], "quality"].between(low, high).all()


def vetoed_rows(store, name: str, share: float) -> np.ndarray:
    """Rows whose `name` signal ranks within their source's worst `share` (as the stage should veto them)."""
    data = router_data_of(mlflow.get_run(store["score_run"]))
    values = signal_values(name, data.sample_quality, data.signals)
    return rank_within(values, data.index["dataset"].to_numpy()) <= share


def test_outlier_signals_keep_what_lies_far_below_its_source_out_whatever_the_share(store):
    data = router_data_of(mlflow.get_run(store["score_run"]))
    z = robust_z_within(signal_values("nll", data.sample_quality, data.signals), data.index["dataset"].to_numpy())
    outliers = z < -1.5
    assert 0 < outliers.sum() < len(z) / 3
    settings = ("selection.count=24", "selection.outlier_signals=[nll]", "selection.outlier_z=1.5")
    run = mlflow.get_run(run_select(select_config(store, *settings)))
    table = selected_table(run.info.run_id)
    assert table["selected"].sum() == 24 and not table.loc[outliers, "selected"].any()
    assert run.data.metrics["selection/vetoed/outlier_nll"] == outliers.sum()
    with pytest.raises(ValueError, match="selection.outlier_signals names 'gate'; a veto is a stored signal"):
        run_select(select_config(store, "selection.outlier_signals=[gate]"))
    # The control arms decide it: off, as every other filter.
    assert "selection.outlier_signals=null" in control_overrides("random", None)


def test_veto_signals_keep_each_signals_worst_share_out_of_the_selection(store):
    assert list(select_config(store).selection.veto_signals) == ["overlap", "relevance"]  # the default
    no_limits = tuple(f"selection.{key}=null" for key in FAULT_LIMITS)  # the share vetoes alone
    only = ("selection.count=24", "selection.veto_share=0.2", "selection.veto_signals=[overlap]", *no_limits)
    run = mlflow.get_run(run_select(select_config(store, *only)))
    assert run.data.params["selection.veto_signals"] == "['overlap']"
    table, vetoed = selected_table(run.info.run_id), vetoed_rows(store, "overlap", 0.2)
    assert table["selected"].sum() == 24 and not table.loc[vetoed, "selected"].any()
    low, high = np.quantile(table["quality"], [0.4, 0.7])
    assert table.loc[table["selected"], "quality"].between(low, high).all()  # the band holds beside the veto
    metrics = run.data.metrics
    assert metrics["selection/vetoed"] == metrics["selection/vetoed/overlap"] == vetoed.sum() >= 20
    noisy = table["id"].isin(noisy_ids(store))
    assert metrics["noise/fraction_vetoed/overlap"] == pytest.approx(noisy[vetoed].mean())

    both = mlflow.get_run(
        run_select(
            select_config(
                store,
                "selection.count=24",
                "selection.veto_share=0.2",
                "selection.veto_signals=[overlap,relevance]",
                *no_limits,
            )
        )
    )
    either = vetoed | vetoed_rows(store, "relevance", 0.2)
    assert not selected_table(both.info.run_id).loc[either, "selected"].any()
    assert both.data.metrics["selection/vetoed"] == either.sum() > vetoed.sum()

    off_cfg = select_config(store, "selection.count=24", "selection.veto_share=0")
    off = mlflow.get_run(run_select(off_cfg))
    assert not any(
        key.startswith(("selection/vetoed/overlap", "selection/vetoed/relevance")) for key in off.data.metrics
    )
    data = router_data_of(mlflow.get_run(store["score_run"]))
    faulty = np.logical_or.reduce(
        [data.signals[signal] >= off_cfg.selection[key] for key, signal in FAULT_LIMITS.items()]
    )
    assert off.data.metrics["selection/vetoed"] == faulty.sum()  # what is left: the fault limits' own
    assert off.data.tags[SELECTED_IDS_TAG] != run.data.tags[SELECTED_IDS_TAG]


@pytest.mark.parametrize(("key", "signal"), list(FAULT_LIMITS.items()))
def test_a_fault_limit_keeps_answers_at_or_over_it_out(store, key, signal):
    data = router_data_of(mlflow.get_run(store["score_run"]))
    values = data.signals[signal]
    default = select_config(store).selection[key]
    assert default == {"max_prompt_copy": 0.8, "max_repetition": 0.5}[key]
    limit = float(np.quantile(values, 0.8))  # as if the fifth that read most had the fault
    assert 0 < limit < default  # so the limit below acts on what the default lets through
    overrides = ("selection.count=24", "selection.veto_signals=null")
    run = mlflow.get_run(run_select(select_config(store, *overrides, f"selection.{key}={limit}")))
    table, faulty = selected_table(run.info.run_id), values >= limit
    assert table["selected"].sum() == 24 and not table.loc[faulty, "selected"].any()
    assert run.data.metrics[f"selection/vetoed/{key}"] == faulty.sum() >= 20
    low, high = np.quantile(table["quality"], [0.4, 0.7])
    assert table.loc[table["selected"], "quality"].between(low, high).all()  # the band holds beside the limit

    at_default = mlflow.get_run(run_select(select_config(store, *overrides)))
    assert at_default.data.metrics[f"selection/vetoed/{key}"] == (values >= default).sum()
    if not (values >= default).any():  # a pool without the fault loses nothing to its limit
        off = mlflow.get_run(run_select(select_config(store, *overrides, f"selection.{key}=null")))
        assert off.data.tags[SELECTED_IDS_TAG] == at_default.data.tags[SELECTED_IDS_TAG]
    assert at_default.data.tags[SELECTED_IDS_TAG] != run.data.tags[SELECTED_IDS_TAG]

    # A score run from before the signal existed: the limit says what is missing and how to go on.
    stale = dataclasses.replace(data, signals={k: v for k, v in data.signals.items() if k != signal})
    with pytest.raises(ValueError, match=rf"{key}={default} needs the {signal} signal.*selection.{key}=null"):
        SelectionPolicy.of(select_config(store)).vetoes(stale)


def test_a_veto_that_leaves_too_few_samples_is_dropped_before_the_band(store, caplog):
    # Vetoing the worst 90% of three signals leaves fewer than 24 in the band: the band alone is used.
    overrides = ["selection.count=24", "selection.veto_signals=[overlap,relevance,nll]", "selection.veto_share=0.9"]
    run = mlflow.get_run(run_select(select_config(store, *overrides)))
    table = selected_table(run.info.run_id)
    assert "the band less the vetoes (selection.veto_signals, max_prompt_copy, max_repetition) leave" in caplog.text
    assert "vetoed samples selected" in run.data.tags["mygo.vetoes_dropped"]  # the run says they did not act
    assert not any(key.startswith(("selection/vetoed", "noise/fraction_vetoed")) for key in run.data.metrics)
    low, high = np.quantile(table["quality"], [0.4, 0.7])
    assert table.loc[table["selected"], "quality"].between(low, high).all() and table["selected"].sum() == 24


def noisy_ids(store) -> set[str]:
    index = router_data_of(mlflow.get_run(store["score_run"])).index
    return set(index.loc[index["mygo_noise"].map(lambda kind: isinstance(kind, str)), "id"])


def test_baselines_and_hdbscan_produce_the_same_outputs(store):
    topk = mlflow.get_run(run_select(select_config(store, "selection.strategy=quality_topk")))
    rand = mlflow.get_run(run_select(select_config(store, "selection.strategy=random")))
    robin = mlflow.get_run(run_select(select_config(store, "clustering.kmeans.k=4")))
    assert robin.data.metrics["clustering/chosen_k"] == 4 and "plots/elbow.png" not in artifact_paths(robin.info.run_id)
    best = topk.data.metrics["selection/quality_mean_selected"]
    assert best >= robin.data.metrics["selection/quality_mean_selected"]
    assert best >= rand.data.metrics["selection/quality_mean_selected"]
    density = mlflow.get_run(
        run_select(select_config(store, "clustering.method=hdbscan", "clustering.hdbscan.min_cluster_size=5"))
    )
    for run in (topk, rand, robin, density):
        assert run.data.metrics["selection/num_selected"] == 12
        assert "selection/selected_data.jsonl" in artifact_paths(run.info.run_id)


def test_a_k_range_the_pool_cannot_support_is_clamped_with_a_warning(store, caplog):
    run = mlflow.get_run(run_select(select_config(store, "clustering.kmeans.k_range=[100,500]")))
    assert run.data.metrics["clustering/k_range_high"] == 60  # 120 samples: two a cluster on average
    assert run.data.metrics["clustering/k_range_low"] == 58
    assert "k_range=[100, 500] does not fit 120 samples: the elbow searches [58, 60]" in caplog.text


def test_a_clustering_that_leaves_round_robin_nothing_to_do_is_flagged(store, caplog):
    settings = ["clustering.method=hdbscan", "clustering.hdbscan.min_cluster_size=100"]
    run = mlflow.get_run(run_select(select_config(store, *settings)))
    assert "round robin reduces to a ranking" in run.data.tags["mygo.clustering_degenerate"]
    assert "round robin reduces to a ranking" in caplog.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("selection.percentage=0", "selection.percentage: expected float in (0, 1], got 0"),
        ("selection.percentage=1.5", "selection.percentage: expected float in (0, 1], got 1.5"),
        ("clustering.kmeans.k_range=[20,10]", "k_range=[20, 10] is reversed"),
        ("clustering.kmeans.k=500", "clustering.kmeans: k=500 must be in [2, n=120]"),
        ("selection.strategy=best", "selection.strategy='best' is not valid"),
        ("clustering.method=dbscan", "clustering.method: expected one of kmeans, hdbscan, got 'dbscan'"),
        ("selection.count=500", "selection.count=500 is larger than the pool: the score run has 120 samples"),
        ("selection.count=0", "selection.count: expected int >= 1 or null, got 0"),
        ("selection.source_balance=even", "selection.source_balance: expected one of none, proportional, equal"),
        (
            "selection.source_caps={cot:0.5,lima:10}",
            "selection.source_caps names ['lima'], not a source of this pool; its sources are ['cot', 'dolly', "
            "'flan_v2', 'oasst1']",
        ),
        ("selection.source_caps={cot:1.5}", "selection.source_caps.cot must be a fraction of the selection in [0, 1]"),
        ("selection.veto_signals=[overlap,gate]", "selection.veto_signals names 'gate'; a veto is a stored signal"),
        ("selection.veto_share=1.0", "selection.veto_share: expected float in [0, 1), got 1.0"),
        (
            "selection.source_caps={cot:0,dolly:0,flan_v2:0,oasst1:5}",
            "allow at most 5 samples of this pool, fewer than the 6 to select",
        ),
    ],
)
def test_bad_settings_are_named(store, capsys, override, message):
    base = [f"upstream.score_run={store['score_run']}", f"output_dir={store['root'] / 'select'}"]
    assert mygo_main(["select", *base, override]) == 2
    assert message in capsys.readouterr().err


def selected_table(run_id: str) -> pd.DataFrame:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="selection/samples.parquet")
    return pd.read_parquet(path)


# 40 samples, the same number from each source but oasst1 (a tenth: 4) and cot (5 samples).
BALANCED = ["selection.count=40", "selection.source_balance=equal", "selection.source_caps={oasst1:0.1,cot:5}"]


def test_a_count_budget_balanced_over_sources_with_caps_logs_the_source_mix(store):
    run = mlflow.get_run(run_select(select_config(store, *BALANCED)))
    assert run.info.run_name.endswith("-n40-equal")
    table = selected_table(run.info.run_id)
    chosen = table.loc[table["selected"], "dataset"].value_counts().to_dict()
    assert len(table) == 120 and sum(chosen.values()) == 40 == run.data.metrics["selection/num_selected"]
    assert chosen["oasst1"] == 4 and chosen["cot"] == 5  # the caps
    assert chosen["dolly"] + chosen["flan_v2"] == 31 and abs(chosen["dolly"] - chosen["flan_v2"]) <= 1  # equal
    metrics, pool = run.data.metrics, table["dataset"].value_counts(normalize=True).to_dict()
    for source, share in pool.items():
        assert metrics[f"selection/source/{source}"] == pytest.approx(chosen[source] / 40)
        assert metrics[f"selection/source_pool/{source}"] == pytest.approx(share)
    distance = 0.5 * sum(abs(chosen[source] / 40 - share) for source, share in pool.items())
    assert metrics["selection/source_mix_distance"] == pytest.approx(distance) and distance > 0.1


def test_proportional_balance_gives_each_source_its_pool_share_within_the_band(store):
    run = mlflow.get_run(
        run_select(select_config(store, "selection.count=24", "selection.source_balance=proportional"))
    )
    table = selected_table(run.info.run_id)
    low, high = np.quantile(table["quality"], [0.4, 0.7])
    chosen = table.loc[table["selected"]]
    assert len(chosen) == 24 and chosen["quality"].between(low, high).all()  # the band still holds
    counts = chosen["dataset"].value_counts()
    for source, share in table["dataset"].value_counts(normalize=True).items():
        assert abs(counts.get(source, 0) - 24 * share) < 1
    assert run.data.metrics["selection/source_mix_distance"] < 0.05


def test_control_arms_get_the_selections_size_and_source_mix_whatever_the_budget_form(store):
    select_run = run_select(select_config(store, *BALANCED, "clustering.kmeans.k=4"))
    mix = selected_table(select_run).query("selected")["dataset"].value_counts().to_dict()
    for arm in ("random", "quality_topk"):
        run = run_select(select_config(store, *BALANCED, "clustering.kmeans.k=4", *control_overrides(arm, None)))
        assert selected_table(run).query("selected")["dataset"].value_counts().to_dict() == mix, arm
    full = mlflow.get_run(
        run_select(select_config(store, *BALANCED, "clustering.kmeans.k=4", *control_overrides("full", None)))
    )
    assert full.data.metrics["selection/num_selected"] == 120  # the whole pool: no count, balance or cap
    percentage = run_select(select_config(store, "clustering.kmeans.k=4", *control_overrides("random", None)))
    assert mlflow.get_run(percentage).data.metrics["selection/num_selected"] == 12  # the selection's 10%


def test_wrong_stage_upstream_is_named(store, capsys):
    score = mlflow.get_run(store["score_run"])
    assert mygo_main(["select", "--score_run", score.data.tags[UPSTREAM_TAG]]) == 2
    assert "is a warmup run, expected a score run" in capsys.readouterr().err


def test_a_pool_edited_after_scoring_is_refused_by_select_and_reruns_warmup_and_score(store):
    """One line inserted at the top of every pool file: no stage reuses a run that read the old pool, and select
    (on the old score run) refuses instead of writing the records that now sit at the scored lines."""
    root, files = store["root"], sorted((store["root"] / "cache" / "demo_pool").glob("*/*/*.jsonl"))
    warmup_cfg = load_config("warmup", quick_warmup_overrides(root))
    score_run = mlflow.get_run(store["score_run"])
    score_cfg = load_config("score", score_cfg_overrides(score_run, root))
    assert run_or_reuse("score", score_cfg, lambda cfg: "new") == (store["score_run"], True)
    select_run = run_select(select_config(store))
    assert run_or_reuse("select", select_config(store), lambda cfg: "new") == (select_run, True)
    originals = {path: path.read_bytes() for path in files}
    try:
        for path in files:
            first = json.loads(originals[path].splitlines()[0])
            path.write_bytes(json.dumps(first | {"id": f"inserted-{path.stem}"}).encode() + b"\n" + originals[path])
        for stage, cfg in (("warmup", warmup_cfg), ("score", score_cfg), ("select", select_config(store))):
            assert run_or_reuse(stage, cfg, lambda cfg: "new") == ("new", False), stage
        with pytest.raises(PoolError, match=r"\.jsonl:\d+: the score run's index has record '.+' there, the file now"):
            run_select(select_config(store))
    finally:
        for path, content in originals.items():
            path.write_bytes(content)
    assert run_or_reuse("score", score_cfg, lambda cfg: "new") == (store["score_run"], True)


def score_cfg_overrides(score_run, root: Path) -> list[str]:
    return [f"upstream.warmup_run={score_run.data.tags[UPSTREAM_TAG]}", f"score.output_dir={root / 'score'}"]


def test_a_token_budget_is_met_by_the_selection_and_by_its_random_arm(store):
    budget = [
        "selection.tokens=3000",
        "clustering.kmeans.k=4",
        "selection.quality_floor=0",
        "selection.quality_ceiling=0",
    ]
    run = mlflow.get_run(run_select(select_config(store, *budget)))
    metrics = run.data.metrics
    assert run.info.run_name.endswith("-t3000")
    assert abs(metrics["selection/tokens"] - 3000) / 3000 < 0.01
    assert metrics["selection/pool_tokens"] > 3 * metrics["selection/tokens"]  # a quarter of the quick pool at most
    random_arm = select_config(store, *budget, *control_overrides("random", 1))
    drawn = mlflow.get_run(run_select(random_arm)).data.metrics
    assert abs(drawn["selection/tokens"] - metrics["selection/tokens"]) / metrics["selection/tokens"] <= 0.01
    assert drawn["selection/num_selected"] != metrics["selection/num_selected"] or drawn["selection/tokens"] > 0
    with pytest.raises(ValueError, match="selection.count=5 and selection.tokens=3000 are both set"):
        run_select(select_config(store, "selection.tokens=3000", "selection.count=5"))


def test_a_selection_aimed_at_a_task_takes_the_samples_nearest_its_examples(store):
    untargeted = mlflow.get_run(run_select(select_config(store, "clustering.kmeans.k=4")))
    run = mlflow.get_run(run_select(select_config(store, "clustering.kmeans.k=4", "selection.target=stdlib_qa")))
    metrics, params = run.data.metrics, run.data.params
    assert params["target/name"] == "stdlib_qa" and len(params["target/digest"]) == 16
    assert metrics["target/examples"] == 255  # stdlib_qa's 250 validation and 5 few-shot items
    assert metrics["target/similarity_mean_selected"] > metrics["target/similarity_mean_all"]
    assert metrics["selection/num_selected"] == untargeted.data.metrics["selection/num_selected"] == 12
    assert run.data.tags[SELECTED_IDS_TAG] != untargeted.data.tags[SELECTED_IDS_TAG]
    assert "plots/target_similarity.png" in artifact_paths(run.info.run_id)
    again = mlflow.get_run(run_select(select_config(store, "clustering.kmeans.k=4", "selection.target=stdlib_qa")))
    assert again.data.tags[SELECTED_IDS_TAG] == run.data.tags[SELECTED_IDS_TAG]
