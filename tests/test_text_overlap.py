"""The overlap signal: what an answer's text shares with its prompt's."""

import numpy as np
import pytest

from mygo.analysis.text_overlap import prompt_answer_overlap

PROMPT = "How do I read a CSV file with csv.DictReader in Python?"
ANSWER = "Open the file and pass it to csv.DictReader: each row is a dict keyed by the CSV header."
OTHER = "Preheat the oven to 200 degrees and bake the bread for forty minutes."


def test_an_answer_to_its_prompt_overlaps_more_than_an_answer_to_another():
    own, other, noise = prompt_answer_overlap([PROMPT] * 3, [ANSWER, OTHER, "qz xv kj wp"])
    assert 0 <= noise < other < own <= 1
    assert own > 0.3 and other < 0.15


def test_the_measure_is_symmetric_case_blind_and_one_for_the_same_text():
    forward = prompt_answer_overlap([PROMPT, PROMPT], [ANSWER, PROMPT.upper()])
    backward = prompt_answer_overlap([ANSWER], [PROMPT])
    assert forward[0] == pytest.approx(backward[0]) and forward[1] == pytest.approx(1.0)


def test_an_empty_text_has_no_overlap():
    values = prompt_answer_overlap([PROMPT, "", " \n "], ["", ANSWER, ANSWER])
    assert np.isnan(values).all()
    assert prompt_answer_overlap([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 prompts but 1 answers"):
        prompt_answer_overlap([PROMPT, PROMPT], [ANSWER])
