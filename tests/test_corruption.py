"""On-the-fly corruptions and the corruption-detection loss that teaches the quality gate from them."""

import numpy as np
import pytest
import torch

from mygo.data.corruption import CORRUPTIONS, IGNORE_INDEX, Vocabulary, corrupt_batch, corrupt_sample
from mygo.models import SelectMoeConfig
from mygo.models.losses import corruption_detection_loss, pooled_corruption_detection_loss, quality_loss

VOCABULARY = Vocabulary(size=200, special_ids=frozenset({0, 1}))  # 0 pad, 1 EOS
PROMPT = [5, 6, 7, 8]
ANSWER = list(range(20, 44))


def sample(answer=ANSWER):
    ids = PROMPT + answer + [1]
    labels = [IGNORE_INDEX] * len(PROMPT) + answer + [1]
    return {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_changes_the_answer_only_and_marks_it(kind):
    rng = np.random.default_rng(0)
    donor = np.arange(100, 130)
    s = sample()
    ids, labels, targets = corrupt_sample(s["input_ids"], s["labels"], kind, rng, donor, VOCABULARY)
    assert ids[: len(PROMPT)] == PROMPT and ids[-1] == 1  # the prompt and the EOS that ends the turn stay
    assert ids != s["input_ids"]
    assert all(label == IGNORE_INDEX for label in labels)  # the LM never learns from a corrupted answer
    assert len(targets) == len(ids)
    assert all(t == IGNORE_INDEX for t in targets[: len(PROMPT)])
    assert all(t == 0.0 for t in targets[len(PROMPT) :])
    assert not set(ids[len(PROMPT) : -1]) & VOCABULARY.special_ids
    if kind == "truncation":
        assert len(ids) < len(s["input_ids"]) and ids[len(PROMPT) : -1] == ANSWER[: len(ids) - len(PROMPT) - 1]
    else:
        assert len(ids) == len(s["input_ids"])


def test_batches_are_corrupted_at_the_given_rate_reproducibly():
    features = [sample(list(range(20 + i, 40 + i))) for i in range(400)]
    kinds = sorted(CORRUPTIONS)
    first, applied = corrupt_batch(features, 0.3, kinds, np.random.default_rng(7), VOCABULARY)
    again, applied_again = corrupt_batch(features, 0.3, kinds, np.random.default_rng(7), VOCABULARY)
    assert applied == applied_again and first == again
    share = np.mean([kind is not None for kind in applied])
    assert 0.24 < share < 0.36
    assert set(applied) - {None} == set(kinds)
    for out, kind, feature in zip(first, applied, features, strict=True):
        if kind is None:  # clean samples are untouched, their answer tokens targeted as clean
            assert out["input_ids"] == feature["input_ids"] and out["labels"] == feature["labels"]
            assert [t for t in out["quality_targets"] if t != IGNORE_INDEX] == [1.0] * len(ANSWER[:20]) + [1.0]


def test_corruption_detection_loss_is_the_masked_bce_of_the_scores():
    scores = [torch.tensor([[[2.0], [-1.0], [0.5]]]), torch.tensor([[[0.0], [3.0], [-2.0]]])]
    targets = torch.tensor([[1.0, 0.0, IGNORE_INDEX]])
    expected = np.mean(
        [
            np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))]),  # layer 0: clean at 2.0, corrupted at -1.0
            np.mean([np.log(2.0), np.log1p(np.exp(3.0))]),  # layer 1: clean at 0.0, corrupted at 3.0
        ]
    )
    assert corruption_detection_loss(scores, targets, sample_wise=False).item() == pytest.approx(expected, rel=1e-6)
    config = SelectMoeConfig(quality_loss_type="corruption_detection")
    with pytest.raises(ValueError, match="needs quality_targets"):
        quality_loss(scores, None, config)


def test_pooled_corruption_detection_is_the_bce_of_each_samples_mean_score():
    scores = [torch.tensor([[[2.0], [-1.0], [0.5]], [[0.0], [-3.0], [9.0]]])]
    targets = torch.tensor([[1.0, 1.0, IGNORE_INDEX], [0.0, 0.0, 0.0]])
    # sample 0: clean, mean score 0.5 over its two target tokens; sample 1: corrupted, mean score 2.0
    expected = np.mean([np.log1p(np.exp(-0.5)), np.log1p(np.exp(2.0))])
    assert pooled_corruption_detection_loss(scores, targets).item() == pytest.approx(expected, rel=1e-6)
    config = SelectMoeConfig(quality_loss_type="pooled_corruption_detection")
    assert quality_loss(scores, None, config, targets).item() == pytest.approx(expected, rel=1e-6)
    no_targets = torch.full_like(targets, IGNORE_INDEX)  # a batch with no answer token to judge: zero, not NaN
    assert pooled_corruption_detection_loss(scores, no_targets).item() == 0.0


def test_gate_trained_on_corruptions_learns_to_tell_them_apart():
    """A quality gate on hidden states that differ between clean and corrupted samples learns the difference."""
    torch.manual_seed(0)
    gate = torch.nn.Linear(8, 1, bias=False)
    optimizer = torch.optim.Adam(gate.parameters(), lr=0.05)
    clean_direction = torch.randn(8)
    for _ in range(100):
        targets = (torch.rand(16, 10) < 0.5).float()
        hidden = torch.randn(16, 10, 8) + (targets[..., None] * 2 - 1) * clean_direction
        loss = corruption_detection_loss([gate(hidden)], targets, sample_wise=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2
