"""The repetition signal: how much of an answer repeats itself."""

import numpy as np
import pytest

from mygo.analysis.repetition import answer_repetition, repeated_share

ANSWER = "Open the file and pass it to csv.DictReader: each row is a dict keyed by the CSV header."


def test_a_loop_reads_near_one_and_prose_near_zero():
    loop = "the value is the value is the value is the value is the value is"
    assert repeated_share(loop) > 0.9
    assert repeated_share(ANSWER) == 0.0
    restated = f"{ANSWER} In short: {ANSWER}"  # an answer that restates itself once repeats all of itself
    assert repeated_share(restated) > 0.8
    summary = f"{ANSWER} So each row is a dict."  # one phrase again: a small share, under the default limit 0.5
    assert 0 < repeated_share(summary) < 0.3


def test_case_and_punctuation_do_not_hide_a_loop_and_short_texts_are_not_judged():
    assert repeated_share("Yes, yes. YES! yes yes; yes") == 1.0
    assert repeated_share("") == repeated_share("a b c") == 0.0  # fewer than two 3-grams: nothing can repeat
    assert repeated_share("a b c a") == 0.0


def test_each_assistant_turn_is_judged_and_the_worst_counts():
    loop = " ".join(["try again"] * 10)
    conversations = [
        [
            {"role": "user", "content": loop},
            {"role": "assistant", "content": ANSWER},
        ],  # a loop in the question: not the answer's fault
        [
            {"role": "user", "content": "How do I read a CSV file?"},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": "And then?"},
            {"role": "assistant", "content": loop},
        ],
        [{"role": "user", "content": "Hello?"}],
    ]
    values = answer_repetition(conversations)
    assert values[0] == 0.0 and values[1] == pytest.approx(1.0) and values[2] == 0.0
    assert answer_repetition([]).shape == (0,) and values.dtype == np.float64
