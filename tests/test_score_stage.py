"""Scoring: the shard format, and the score stage on tiny real models against a real MLflow store."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mygo.analysis.score_shards import (
    RouterDataError,
    load_router_data,
    plan_shards,
    shard_problem,
    write_index,
    write_shard,
)
from mygo.config import load_config
from mygo.models.scoring import length_batches
from mygo.stages.score import run_score
from mygo.stages.warmup import run_warmup
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG
from mygo.tracking.runs import STAGE_TAG, UPSTREAM_TAG
from tests.helpers import artifact_paths, quick_warmup_overrides, run_two_processes


def test_plan_puts_longest_first_and_covers_every_row_once():
    lengths = np.array([5, 9, 1, 9, 3, 7, 2])
    plan = plan_shards(lengths, shard_size=3)
    assert [list(shard) for shard in plan] == [[1, 3, 5], [0, 4, 6], [2]]
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(lengths, 0)


def test_length_batches_keep_to_the_token_budget():
    lengths = np.array([100, 60, 50, 50, 10, 10, 10, 10])
    batches = length_batches(lengths, max_batch_tokens=120, max_batch_size=3)
    assert [(b.start, b.stop) for b in batches] == [(0, 1), (1, 3), (3, 5), (5, 8)]
    assert all((b.stop - b.start) * lengths[b.start] <= 120 for b in batches)


def write_router_data(directory: Path, samples: int = 7, shard_size: int = 3):
    rng = np.random.default_rng(0)
    quality = rng.random((samples, 2), dtype=np.float32)
    features = rng.standard_normal((samples, 2, 4)).astype(np.float16)
    plan = plan_shards(rng.integers(1, 50, samples), shard_size)
    for number, rows in enumerate(plan):
        write_shard(directory, number, rows, quality[rows], features[rows])
    write_index(directory, pd.DataFrame({"id": [f"s{i}" for i in range(samples)], "dataset": "cot"}))
    return quality, features, plan


def test_shards_load_back_in_pool_order(tmp_path):
    quality, features, _ = write_router_data(tmp_path)
    data = load_router_data(tmp_path)
    np.testing.assert_array_equal(data.quality, quality)
    np.testing.assert_array_equal(data.features, features)
    assert list(data.index["id"]) == [f"s{i}" for i in range(7)]
    assert not list(tmp_path.glob("*.tmp"))


def test_sharded_features_gather_any_rows_in_the_order_asked(tmp_path):
    _, features, plan = write_router_data(tmp_path, samples=23, shard_size=5)
    sharded = load_router_data(tmp_path).features  # left in the shards' files
    assert sharded.shape == features.shape and sharded.dtype == features.dtype and len(sharded) == 23
    rows = np.array([22, 0, 7, 7, 13, 1])
    np.testing.assert_array_equal(sharded[rows], features[rows])
    np.testing.assert_array_equal(sharded[3:9], features[3:9])
    np.testing.assert_array_equal(sharded[features[:, 0, 0] > 0], features[features[:, 0, 0] > 0])
    np.testing.assert_array_equal(sharded[4], features[4])
    assert sharded[np.array([], dtype=np.int64)].shape == (0, 2, 4)
    blocks = list(sharded.shards())
    assert [list(rows) for rows, _ in blocks] == [list(rows) for rows in plan]
    for rows, block in blocks:
        np.testing.assert_array_equal(block, features[rows])


def test_truncated_corrupt_and_missing_shards_are_named(tmp_path):
    _, _, plan = write_router_data(tmp_path)
    features_file = tmp_path / "shard-00001.features.npy"
    features_file.write_bytes(features_file.read_bytes()[:-8])  # truncated
    assert "shard-00001.features.npy does not match its checksum" in shard_problem(tmp_path, 1)
    with pytest.raises(RouterDataError, match="shard-00001.features.npy"):
        load_router_data(tmp_path)
    (tmp_path / "shard-00001.json").unlink()  # a shard never finished
    assert "not finished" in shard_problem(tmp_path, 1)
    with pytest.raises(RouterDataError, match="3 of 7 pool samples are in no shard"):
        load_router_data(tmp_path)
    assert "other pool rows" in shard_problem(tmp_path, 0, expected_rows=plan[0][::-1])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_score_resumes_after_damage_and_splits_over_processes(tracking_store, tmp_path):
    warmup = run_warmup(load_config("warmup", quick_warmup_overrides(tmp_path)))
    overrides = [f"upstream.warmup_run={warmup}", "score.shard_size=32", f"score.output_dir={tmp_path / 'score'}"]
    first = mlflow.get_run(run_score(load_config("score", overrides)))
    assert first.data.tags[STAGE_TAG] == "score" and first.data.tags[UPSTREAM_TAG] == warmup
    metrics = first.data.metrics
    assert metrics["score/samples"] == 120 and metrics["score/shards_reused"] == 0
    assert metrics["score/samples_per_s"] > 0 and metrics["score/tokens_per_s"] > metrics["score/samples_per_s"]
    assert {"score/quality_mean/cot", "score/quality_mean/oasst1", "noise/auroc"} <= set(metrics)
    assert first.data.params["dataset.name"] == "demo" and "dataset.subset_ratio" not in first.data.params
    paths = artifact_paths(first.info.run_id)
    assert {"router_data/index.parquet", "router_data/shard-00003.json", "plots/quality_histogram.png"} <= paths
    work_dir = Path(first.data.tags[ROUTER_DATA_PATH_TAG])
    reference = load_router_data(
        mlflow.artifacts.download_artifacts(run_id=first.info.run_id, artifact_path="router_data")
    )
    assert reference.quality.shape == (120, 2) and reference.features.shape == (120, 2, 8)
    # The logged means are the artifact's (a sigmoid's mean in (0, 1) says nothing), and the scores vary by sample.
    assert metrics["score/quality_mean"] == pytest.approx(float(reference.sample_quality.mean()), rel=1e-5)
    assert metrics["score/quality_std"] == pytest.approx(float(reference.sample_quality.std()), rel=1e-4)
    assert reference.sample_quality.std() > 0
    assert list(reference.index.columns[:3]) == ["id", "dataset", "length"]
    assert {"mygo_noise", "mygo_topic"} <= set(reference.index)

    # A shard cut short and one never finished: the rerun scores those two again, and only those.
    damaged = work_dir / "shard-00001.quality.npy"
    damaged.write_bytes(damaged.read_bytes()[:-4])
    (work_dir / "shard-00002.json").unlink()
    resumed = mlflow.get_run(run_score(load_config("score", overrides)))
    assert resumed.data.metrics["score/shards_reused"] == 2 and resumed.data.metrics["score/scored_now"] == 64
    again = load_router_data(work_dir)
    np.testing.assert_array_equal(again.quality, reference.quality)
    np.testing.assert_array_equal(again.features, reference.features)

    # Two processes split a fresh plan between them; the merged data equals the one-process result.
    two = [f"upstream.warmup_run={warmup}", "score.shard_size=16", f"score.output_dir={tmp_path / 'score2'}"]
    result = run_two_processes("score.py", two, tmp_path, tracking_store)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`mygo.stage` = 'score'", output_format="list"
    )
    assert len(runs) == 3  # one run for the two processes
    split = load_router_data(runs[0].data.tags[ROUTER_DATA_PATH_TAG])
    np.testing.assert_allclose(split.quality, reference.quality, atol=1e-5)
    split_features, reference_features = np.asarray(split.features, np.float32), np.asarray(reference.features)
    np.testing.assert_allclose(split_features, reference_features.astype(np.float32), atol=2e-2)


def test_score_refuses_a_missing_or_wrong_upstream(tracking_store, capsys):
    from mygo.cli import main as mygo_main

    assert mygo_main(["score"]) == 2
    assert "score needs a warmup run" in capsys.readouterr().err
    mlflow.set_experiment("other")
    with mlflow.start_run() as other:
        mlflow.set_tag(STAGE_TAG, "convert")
    assert mygo_main(["score", "--warmup_run", other.info.run_id]) == 2
    assert "is a convert run, expected a warmup run" in capsys.readouterr().err
    assert mygo_main(["score", "--warmup_run", "0123456789abcdef0123456789abcdef"]) == 2
    assert "not found in tracking store" in capsys.readouterr().err


def test_batched_padded_scores_equal_each_sample_scored_alone():
    """Quality is the mean good_ratio over a sample's answer tokens, whatever it is batched and padded with."""
    import torch
    from tqdm.auto import tqdm

    from mygo.models import SelectMoeConfig, SelectMoeForCausalLM
    from mygo.models.scoring import score_rows
    from tests.conftest import TINY_ARCH

    torch.manual_seed(0)
    model = SelectMoeForCausalLM(SelectMoeConfig(**TINY_ARCH, quality_gate_init_std=1.0)).eval()
    generator = np.random.default_rng(0)
    sequences = [list(map(int, generator.integers(2, 128, n))) for n in (12, 9, 9, 5, 3)]  # sorted by length
    labels = [[-100] * (len(s) // 2) + s[len(s) // 2 :] for s in sequences]  # the second half is the answer
    score = load_config("score").score
    with tqdm(disable=True) as progress:  # a budget of 30 tokens: batches of 2-3 rows, padded
        quality, _, signals = score_rows(
            model, sequences, labels, 0, 30, score.max_batch_size, score.ifd, torch.float32, progress
        )
    for row, (sequence, label) in enumerate(zip(sequences, labels, strict=True)):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([sequence]), output_router_logits=True)
        answer = torch.tensor([value != -100 for value in label])
        expected = [torch.sigmoid(layer["quality_score"][0, answer, 0]).mean().item() for layer in out.router_logits]
        np.testing.assert_allclose(quality[row], expected, rtol=1e-5)
    assert quality.std() > 0 and np.isfinite(signals["nll"]).all()
