"""The overlap and prompt_copy signals: what an answer's text shares with its prompt's."""

import numpy as np
import pytest

from mygo.analysis.text_overlap import prompt_answer_overlap, prompt_copy

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


def turns(*pairs: tuple[str, str], system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


MC_PROMPT = (
    "Which module defines csv.DictReader?\nOptions:\n(A) json\n(B) csv\n(C) pickle\n(D) shelve\nAnswer with the option."
)


def test_only_an_answer_that_repeats_its_question_is_a_copy():
    copy, own, contained, restated, other = prompt_copy(
        [
            turns((PROMPT, PROMPT)),
            turns((PROMPT, ANSWER)),
            turns((MC_PROMPT, "(B) csv")),  # wholly contained in its prompt, but a small part of it
            turns(("What is csv.DictReader?", "csv.DictReader is a class of csv that reads rows as dicts.")),
            turns((PROMPT, OTHER)),
        ]
    )
    assert copy == pytest.approx(1.0)
    assert max(own, contained, restated) < 0.5 and other < 0.05
    assert prompt_copy([turns((PROMPT, "  " + PROMPT.upper() + "\n"))])[0] == pytest.approx(1.0)  # case, space


def test_each_turn_is_compared_with_the_question_it_answers_and_the_worst_counts():
    follow_up = "And what does csv.DictWriter do?"
    echoed = turns((PROMPT, ANSWER), (follow_up, follow_up))  # the first question is not the second's
    answered = turns((PROMPT, ANSWER), (follow_up, "It writes dicts as CSV rows, the header from fieldnames."))
    with_system = turns((PROMPT, PROMPT), system="You are a helpful assistant who answers briefly.")
    values = prompt_copy([echoed, answered, with_system])
    assert values[0] == pytest.approx(1.0) and values[1] < 0.5
    assert values[2] == pytest.approx(1.0)  # the system turn is context, not the question


def test_a_conversation_with_no_answered_question_copies_nothing():
    no_user = [{"role": "system", "content": PROMPT}, {"role": "assistant", "content": PROMPT}]
    values = prompt_copy([no_user, turns(("", "")), turns((PROMPT, ANSWER))])
    assert values[:2].tolist() == [0.0, 0.0] and values[2] > 0
    assert prompt_copy([]).shape == (0,)
