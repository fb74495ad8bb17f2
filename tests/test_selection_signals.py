"""Quality signals through the real stages: a corruption-trained warmup, scoring with NLL and IFD, selecting by
each signal, and the per-noise-kind records every run leaves."""

from pathlib import Path

import mlflow
import numpy as np
import pytest

from mygo.analysis.noise_metrics import auroc_by_kind
from mygo.analysis.quality_signals import all_signal_values
from mygo.analysis.text_overlap import NgramWeights
from mygo.cli import main as mygo_main
from mygo.config import load_config
from mygo.stages.score import OVERLAP_WEIGHTS_FILE, run_score
from mygo.stages.select import run_select
from mygo.stages.warmup import run_warmup
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG, router_data_of
from mygo.tracking.runs import get_run
from tests.helpers import artifact_paths, quick_warmup_overrides, scored_copy, use_store

KINDS = ("cut_off_answer", "mismatched_answer", "random_chars", "repeated_token", "shuffled_words")


@pytest.fixture(scope="module")
def scored(scored_template, tmp_path_factory):
    """A corruption-detection warmup of the quick tiny setup, scored with every signal (IFD on), in a copy of the
    session's store (its base, conversion and pool reused)."""
    store = scored_copy(scored_template, tmp_path_factory)
    root = store["root"]
    with pytest.MonkeyPatch.context() as patch:
        use_store(store["uri"], patch)
        warmup_cfg = load_config(
            "warmup",
            quick_warmup_overrides(root)
            + ["select_moe.quality_loss_type=corruption_detection", "select_moe.quality_loss_weight=1.0"],
        )
        warmup = run_warmup(warmup_cfg)
        overrides = [f"upstream.warmup_run={warmup}", f"score.output_dir={root / 'score'}", "score.ifd=true"]
        score = run_score(load_config("score", overrides))
    return store | {"warmup_run": warmup, "score_run": score}


def test_warmup_probe_logs_per_kind_and_per_layer(store):
    metrics = mlflow.get_run(store["warmup_run"]).data.metrics
    kinds_in_probe = {k.split("/")[-1] for k in metrics if k.startswith("probe/noise_auroc/")}
    assert kinds_in_probe and kinds_in_probe <= set(KINDS)
    assert {"probe/good_ratio/clean", "probe/layer_00/noise_auroc", "probe/layer_01/noise_auroc"} <= set(metrics)
    assert 0 < metrics["loss/quality"] < 5  # the corruption-detection BCE was computed and logged
    params = mlflow.get_run(store["warmup_run"]).data.params
    assert params["select_moe.quality_loss_type"] == "corruption_detection" and params["corruption.fraction"] == "0.5"


def test_score_stores_every_signal_and_logs_its_auroc_per_kind(store):
    run = get_run(store["score_run"])
    data = router_data_of(run)
    assert set(data.signals) == {"nll", "ifd", "relevance", "overlap", "prompt_copy", "repetition"}
    answered = (data.index["num_label_tokens"] > 0).to_numpy()
    for name in ("nll", "ifd", "relevance"):
        values = data.signals[name]
        if name in ("nll", "ifd"):
            assert (values[answered] > 0).all()
        else:
            assert (abs(values[answered]) <= 1 + 1e-5).all()
        np.testing.assert_array_equal(np.isfinite(values), answered)  # undefined where no answer token is left
    for name in ("overlap", "prompt_copy", "repetition"):  # of the record's text: defined whatever truncation left
        values = data.signals[name]
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all() and values.max() > 0
    weights = NgramWeights.load(Path(run.data.tags[ROUTER_DATA_PATH_TAG]) / OVERLAP_WEIGHTS_FILE)
    assert weights.document_count >= 2 * len(data.index)  # every message of the pool kept: two or more a record
    kinds = data.index["mygo_noise"].tolist()
    metrics = run.data.metrics
    for name, values in all_signal_values(data.sample_quality, data.signals).items():
        for kind, auroc in auroc_by_kind(values, kinds).items():  # what was logged is what the data says
            assert metrics[f"noise/auroc/{name}/{kind}"] == pytest.approx(auroc)
    signals = ("gate", "nll", "ifd", "relevance", "overlap", "prompt_copy", "repetition", "rank_mean", "rank_min")
    assert {f"noise/auroc/{name}" for name in signals} <= set(metrics)
    # The NLL signal is the warmed-up model's answer perplexity: random characters are far less likely than text.
    assert metrics["noise/auroc/nll/random_chars"] > 0.8
    # An answer to another question shares less text with its prompt than a clean one does, and random
    # characters share none of it.
    assert metrics["noise/auroc/overlap/mismatched_answer"] > 0.7 and metrics["noise/auroc/overlap/random_chars"] > 0.8


def test_select_by_each_signal_and_logs_selected_noise_per_kind(store):
    base = [f"upstream.score_run={store['score_run']}", f"output_dir={store['root'] / 'select'}"]
    base += ["selection.percentage=0.25", "clustering.kmeans.k=4"]
    fractions = {}
    for signal in ("gate", "nll", "ifd", "rank_mean", "rank_min"):
        run = mlflow.get_run(
            run_select(
                load_config("select", base + ["selection.strategy=quality_topk", f"selection.quality_signal={signal}"])
            )
        )
        metrics = run.data.metrics
        fractions[signal] = metrics["noise/fraction_selected"]
        per_kind = [metrics.get(f"noise/fraction_selected/{kind}", 0.0) for kind in KINDS]
        assert sum(per_kind) == pytest.approx(metrics["noise/fraction_selected"])
        assert sum(metrics[f"noise/fraction_pool/{k}"] for k in KINDS if f"noise/fraction_pool/{k}" in metrics) == (
            pytest.approx(metrics["noise/fraction_pool"])
        )
        assert "plots/noise_selected_vs_pool.png" in artifact_paths(run.info.run_id, "plots")
        assert run.data.params["selection.quality_signal"] == signal
    assert fractions["nll"] < mlflow.get_run(store["score_run"]).data.metrics["noise/fraction_pool"]


def test_quality_floor_keeps_the_lowest_quality_out(store):
    base = [f"upstream.score_run={store['score_run']}", f"output_dir={store['root'] / 'select'}"]
    overrides = base + ["selection.percentage=0.1", "clustering.kmeans.k=4", "selection.quality_signal=nll"]
    run = run_select(load_config("select", overrides + ["selection.quality_floor=0.5"]))
    table = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="selection/samples.parquet")
    import pandas as pd

    samples = pd.read_parquet(table)
    median = np.median(samples["quality"])
    assert samples["selected"].sum() == 12 and (samples.loc[samples["selected"], "quality"] >= median).all()


def test_quality_within_source_gives_every_source_its_own_best(store):
    base = [f"upstream.score_run={store['score_run']}", f"output_dir={store['root'] / 'select'}"]
    overrides = base + ["selection.percentage=0.25", "selection.strategy=quality_topk", "selection.quality_signal=nll"]
    overrides += ["selection.quality_floor=0", "selection.quality_ceiling=0", "selection.veto_signals=null"]  # all
    import pandas as pd

    def selected_sources(run: str) -> pd.DataFrame:
        path = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="selection/samples.parquet")
        return pd.read_parquet(path)

    pooled = selected_sources(run_select(load_config("select", overrides + ["selection.quality_within=pool"])))
    within = selected_sources(run_select(load_config("select", overrides + ["selection.quality_within=source"])))
    shares = within.groupby("dataset")["selected"].mean()
    assert shares.max() - shares.min() <= 0.1, shares  # each source gives its own top quarter
    assert (within.groupby("dataset")["quality"].max() == 1.0).all()  # quality is the rank within the source
    assert not pooled["selected"].equals(within["selected"])


def test_a_signal_the_score_run_lacks_is_named(store, tmp_path, capsys):
    # A second score run of the same warmup without IFD: selecting by IFD names what it has.
    overrides = [f"upstream.warmup_run={store['warmup_run']}", f"score.output_dir={tmp_path / 'score'}"]
    score = run_score(load_config("score", overrides))
    code = mygo_main(["select", f"upstream.score_run={score}", "selection.quality_signal=ifd"])
    error = capsys.readouterr().err
    assert code == 2 and "'ifd' was not computed" in error
    assert "['gate', 'nll', 'relevance', 'overlap', 'prompt_copy', 'repetition', 'rank_mean', 'rank_min']" in error
