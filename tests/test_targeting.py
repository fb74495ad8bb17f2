"""Selection aimed at a task: the examples, the order round robin over them takes the pool in, the test-split guard."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mygo.config import config_dir
from mygo.data.decontamination import eval_items
from mygo.stages.targeting import examples_digest, similarity_order, target_examples

TASK_DIR = str(config_dir() / "eval_tasks")


def test_round_robin_over_the_examples_takes_each_examples_nearest_in_turn_and_never_a_vetoed_row():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32)  # three examples, orthogonal
    pool = np.concatenate([centres[i] + 0.05 * rng.normal(size=(20, 8)) for i in range(3)]).astype(np.float32)
    pool = np.concatenate([pool, rng.normal(size=(40, 8)).astype(np.float32)])  # 40 rows near none of them
    allowed = np.ones(len(pool), dtype=bool)
    allowed[[0, 20, 40]] = False  # vetoed: never taken, however near
    order, highest = similarity_order(pool.reshape(-1, 2, 4), centres, allowed, count=9)
    assert len(order) == allowed.sum() and len(set(order.tolist())) == len(order)
    assert not set(order.tolist()) & {0, 20, 40}
    assert [row // 20 for row in order[:9]] == [0, 1, 2] * 3  # one near each example, in turn
    cosine = (pool / np.linalg.norm(pool, axis=1, keepdims=True)) @ centres.T
    np.testing.assert_allclose(highest, cosine.max(axis=1), atol=1e-5)
    for example in range(3):  # each example's own picks come nearest first
        own = [row for row in order[:30] if row // 20 == example]
        assert list(cosine[own, example]) == sorted(cosine[own, example], reverse=True)


@pytest.mark.slow  # indexes lm-eval's tasks
def test_a_task_target_is_its_validation_and_fewshot_items_and_a_file_holding_a_test_item_is_refused(tmp_path):
    examples = target_examples("stdlib_qa", TASK_DIR, [])
    items, _ = eval_items(["stdlib_qa"], TASK_DIR)
    validation = [item for item in items if item.split in ("validation", "fewshot")]
    assert len(examples) == len(validation) and all(len(turns) == 2 for turns in examples)
    assert examples_digest(examples) == examples_digest(target_examples("stdlib_qa", TASK_DIR, []))
    with pytest.raises(ValueError, match="selection.target: unknown lm-eval task 'stdlib_qaa'"):
        target_examples("stdlib_qaa", TASK_DIR, [])

    test_item = next(item for item in items if item.split == "test")
    question, answer = test_item.text.rsplit("\n", 1)
    lines = [
        {"id": "a", "messages": examples[0]},
        {
            "id": "b",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer.strip()}],
        },
    ]
    leaking = tmp_path / "target.jsonl"
    leaking.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ValueError, match=r"example 2 holds a test item of stdlib_qa"):
        target_examples(str(leaking), TASK_DIR, ["stdlib_qa"])
    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(lines[0]) + "\n")
    assert target_examples(str(clean), TASK_DIR, ["stdlib_qa"]) == [examples[0]]
