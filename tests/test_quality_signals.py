"""Quality signals beside the gate: orientation, rank averaging, unavailable signals, the NLL of answers."""

import numpy as np
import pytest
import torch

from mygo.analysis.noise_metrics import auroc_by_kind, noise_metrics
from mygo.analysis.quality_signals import available_signals, rank_within, robust_z_within, signal_values
from mygo.models import SelectMoeConfig, SelectMoeForCausalLM
from mygo.models.scoring import answer_nll, answers_alone, prompt_answer_relevance
from tests.conftest import TINY_ARCH

GATE = np.array([0.9, 0.2, 0.5, 0.7])
STORED = {"nll": np.array([1.0, 4.0, 2.5, 2.0], dtype=np.float32)}


def test_every_signal_is_higher_is_better():
    assert np.argmax(signal_values("gate", GATE, STORED)) == 0
    assert np.argmax(signal_values("nll", GATE, STORED)) == 0  # lowest NLL
    ranks = signal_values("rank_mean", GATE, STORED)
    assert list(np.argsort(-ranks)) == [0, 3, 2, 1]
    assert available_signals(GATE, STORED) == ["gate", "nll", "rank_mean", "rank_min"]


def test_rank_min_is_as_good_as_the_detector_that_likes_a_sample_least():
    # Sample 1 is the gate's best and NLL's worst: the mean of its ranks is the middle, the least of them the bottom.
    gate, stored = np.array([0.5, 0.9, 0.4, 0.1]), {"nll": np.array([1.0, 9.0, 2.0, 3.0])}
    mean, low = signal_values("rank_mean", gate, stored), signal_values("rank_min", gate, stored)
    np.testing.assert_allclose(mean, [0.875, 0.625, 0.625, 0.375])
    np.testing.assert_allclose(low, [0.75, 0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match=r"rank_mean_of=\['nll', 'rank_mean'\] must name two or more"):
        signal_values("rank_min", gate, stored, ["nll", "rank_mean"])


@pytest.mark.parametrize("detector", ["prompt_copy", "repetition"])
def test_a_fault_detector_ranks_the_fault_last_and_joins_a_rank_combination_only_when_named(detector):
    stored = {**STORED, detector: np.array([0.1, 0.0, 1.0, 0.2])}
    assert np.argmin(signal_values(detector, GATE, stored)) == 2  # the copy, or the loop
    # Most answers lack the fault: its ranks would add ties, not judgement, so the default combination leaves it out.
    np.testing.assert_allclose(signal_values("rank_mean", GATE, stored), signal_values("rank_mean", GATE, STORED))
    named = signal_values("rank_min", GATE, stored, ["nll", detector])
    assert named[2] == named.min() < signal_values("rank_min", GATE, STORED)[2]


def test_a_signal_the_score_run_did_not_compute_names_the_ones_it_has():
    has = r"\['gate', 'nll', 'rank_mean', 'rank_min'\]"
    with pytest.raises(ValueError, match=rf"'ifd' was not computed.*{has}.*score.ifd"):
        signal_values("ifd", GATE, STORED)
    partial = {"nll": np.array([1.0, np.nan, 2.0, 3.0])}  # a row without answer tokens ranks last
    assert list(np.argsort(-signal_values("nll", GATE, partial))) == [0, 2, 3, 1]
    assert available_signals(GATE, {"nll": np.full(4, np.nan)}) == ["gate"]


def test_rank_within_ranks_each_value_among_its_own_group_only():
    values = np.array([5.0, 1.0, 100.0, 3.0, 200.0, 2.0])
    groups = np.array(["a", "a", "b", "a", "b", "a"])
    ranks = rank_within(values, groups)
    np.testing.assert_allclose(ranks, [1.0, 0.25, 0.5, 0.75, 1.0, 0.5])  # b's 100 is its median, not a's best


def test_noise_metrics_per_kind():
    kinds = [None, None, "a", "b", None, "a"]
    quality = np.array([0.9, 0.8, 0.1, 0.85, 0.7, 0.75])
    by_kind = auroc_by_kind(quality, kinds)
    assert by_kind == {"a": pytest.approx(5 / 6), "b": pytest.approx(1 / 3)}
    metrics = noise_metrics(quality, kinds, prefix="noise/auroc/gate")
    assert set(metrics) == {"noise/auroc/gate", "noise/auroc/gate/a", "noise/auroc/gate/b"}
    assert noise_metrics(quality, [None] * 6) == {}  # a pool without noise labels logs nothing


def test_answer_nll_is_the_full_lm_heads_nll_at_answer_positions():
    torch.manual_seed(0)
    model = SelectMoeForCausalLM(SelectMoeConfig(**TINY_ARCH)).eval()
    input_ids = torch.randint(2, TINY_ARCH["vocab_size"], (2, 10))
    answer = torch.zeros(2, 10, dtype=torch.bool)
    answer[0, 4:9] = True
    answer[1, 6:10] = True
    with torch.no_grad():
        hidden = model.model(input_ids=input_ids).last_hidden_state
        got = answer_nll(model, hidden, input_ids, answer)
        logits = model(input_ids=input_ids).logits
    for row in range(2):
        positions = answer[row].nonzero().squeeze(1)
        nll = torch.nn.functional.cross_entropy(logits[row, positions - 1], input_ids[row, positions])
        assert got[row].item() == pytest.approx(nll.item(), rel=1e-5)


def test_answers_alone_keep_the_opening_token_and_every_answer_token():
    sequence = [3, 4, 5, 6, 7, 8, 9]
    labels = [-100, -100, -100, 6, 7, -100, 9]
    assert answers_alone(sequence, labels) == [5, 6, 7, 9]


def test_relevance_is_high_for_an_answer_about_its_prompt_and_undefined_without_either():
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(50, 256)  # wide: unrelated tokens are near orthogonal
    topic_a, topic_b = [3, 4, 5, 6], [30, 31, 32, 33]
    # Rows: an answer about the prompt's topic, one about another topic, no answer tokens, no prompt tokens.
    input_ids = torch.tensor([topic_a + topic_a, topic_a + topic_b, topic_a + topic_a, topic_b + topic_b])
    answer = torch.tensor([[0] * 4 + [1] * 4, [0] * 4 + [1] * 4, [0] * 8, [1] * 8])
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 7] = 0  # padding is neither prompt nor answer
    with torch.no_grad():
        relevance = prompt_answer_relevance(embeddings, input_ids, attention_mask, answer)
    assert relevance[0] > 0.8 and abs(relevance[1]) < 0.3  # 3 of the prompt's 4 tokens; unrelated tokens
    assert torch.isnan(relevance[2:]).all()
    stored = {"nll": np.array([1.0, 1.0, 1.0, 1.0]), "relevance": relevance.numpy()}
    assert available_signals(GATE, stored) == ["gate", "nll", "relevance", "rank_mean", "rank_min"]
    assert list(np.argsort(-signal_values("relevance", GATE, stored))[:2]) == [0, 1]  # undefined rows rank last


def test_robust_z_says_how_far_out_a_value_lies_within_its_group():
    groups = np.array(["a"] * 6 + ["b"] * 4)
    values = np.array([1.0, 2.0, 2.0, 3.0, 3.0, -20.0, 5.0, 5.0, 5.0, 5.0])
    z = robust_z_within(values, groups)
    assert z[5] < -5 and np.abs(z[:5]).max() < 2  # the one far below its group's median, not the others
    assert (z[6:] == 0).all()  # a group that does not vary has no outliers
    # A shift or a scale of one group moves none of its z values: the cut follows the group, not the pool.
    shifted = values.copy()
    shifted[:6] = shifted[:6] * 10 + 7
    np.testing.assert_allclose(robust_z_within(shifted, groups), z)
