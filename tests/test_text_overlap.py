"""The overlap and prompt_copy signals: what an answer's text shares with its prompt's."""

import re

import numpy as np
import pytest

from mygo.analysis.text_overlap import NgramWeights, answer_overlap, message_texts, prompt_answer_overlap, prompt_copy

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


# A pool in which "python" is in every text and "pandas" in one: sharing the rare word is the evidence.
POOL = ["python lists and python tuples", "python dicts", "python sets and python loops", "pandas frames"]


def test_rare_shared_grams_weigh_more_than_common_ones_once_weighted_by_the_pool():
    weights = NgramWeights.fit(POOL * 5)
    assert weights.document_count == 20
    prompt = "python pandas"
    rare, common = "pandas reads rows", "python reads rows"
    plain = prompt_answer_overlap([prompt, prompt], [rare, common])
    weighted = prompt_answer_overlap([prompt, prompt], [rare, common], weights)
    assert plain[0] == pytest.approx(plain[1])  # the same share of 4-grams, unweighted
    assert weighted[0] > 2 * weighted[1]  # the common word says little of what the answer is about
    np.testing.assert_allclose(prompt_answer_overlap([prompt], [rare], NgramWeights.uniform()), plain[:1])


def test_weights_survive_a_round_trip_through_their_file(tmp_path):
    weights = NgramWeights.fit(message_texts([turns((PROMPT, ANSWER)), turns((OTHER, PROMPT))]))
    assert weights.document_count == 4
    loaded = NgramWeights.load(weights.save(tmp_path / "weights.npz"))
    assert loaded.document_count == 4
    np.testing.assert_array_equal(loaded.idf, weights.idf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.npz"]  # written in place, no temporary left
    with pytest.raises(ValueError, match="one per hash"):
        NgramWeights(4, np.zeros(10))


def test_each_answer_is_compared_with_all_before_it_and_the_weakest_turn_counts():
    weights = NgramWeights.fit([PROMPT, ANSWER, OTHER] * 3)
    follow_up = ("Can you go into more detail?", "csv.DictReader maps each CSV row to a dict keyed by the header.")
    detailed = turns((PROMPT, ANSWER), follow_up)  # the follow-up shares nothing, the conversation does
    derailed = turns((PROMPT, ANSWER), ("Can you go into more detail?", OTHER))
    system = [{"role": "system", "content": PROMPT}, {"role": "assistant", "content": ANSWER}]
    single, multi, bad, with_system = answer_overlap([turns((PROMPT, ANSWER)), detailed, derailed, system], weights)
    assert multi > 0.3 and bad < 0.1 and with_system == pytest.approx(single)
    assert bad == pytest.approx(answer_overlap([turns(("Can you go into more detail?", OTHER))], weights)[0], abs=0.1)


def test_a_conversation_without_an_answer_to_anything_has_no_overlap():
    weights = NgramWeights.uniform()
    alone = [{"role": "assistant", "content": ANSWER}]
    values = answer_overlap([alone, turns(("", ANSWER)), [{"role": "user", "content": PROMPT}]], weights)
    assert np.isnan(values).all()
    assert answer_overlap([], weights).shape == (0,)


def test_weights_from_a_file_that_is_not_theirs_name_the_file(tmp_path):
    broken = tmp_path / "overlap_weights.npz"
    broken.write_text("not an npz")
    with pytest.raises(ValueError, match=re.escape(f"{broken}: not a file of 4-gram weights")):
        NgramWeights.load(broken)
    np.savez(other := tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(f"{other}: not a file of 4-gram weights")):
        NgramWeights.load(other)


def test_a_resumed_scoring_reads_the_weights_its_first_attempt_wrote(tmp_path):
    from datasets import Dataset

    from mygo.stages.score import OVERLAP_WEIGHTS_FILE, overlap_weights

    first = overlap_weights(Dataset.from_dict({"messages": [turns((PROMPT, ANSWER))]}), tmp_path, write=True)
    assert (tmp_path / OVERLAP_WEIGHTS_FILE).is_file() and first.document_count == 2
    again = overlap_weights(Dataset.from_dict({"messages": [turns((PROMPT, ANSWER), (OTHER, OTHER))]}), tmp_path, True)
    assert again.document_count == 2  # read, not counted anew
    np.testing.assert_array_equal(again.idf, first.idf)
