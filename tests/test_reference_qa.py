"""The out-of-domain tasks (debian_qa, man_qa, perldiag_qa): parsers on small inputs, the committed files, lm-eval."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from mygo.data.reference_qa import (
    OTHER_DOMAINS,
    Item,
    answer_from,
    build_splits,
    disjoint,
    drop_boilerplate,
    parse_dpkg_status,
    parse_man_page,
    parse_perldiag,
    sentences,
)
from mygo.data.stdlib_corpus import stdlib_documents
from mygo.data.stdlib_qa import pool_text
from tests.helpers import REPO, tiny_llama

TASKS_DIR = REPO / "configs" / "eval_tasks"
TASK_DIR = TASKS_DIR / "reference_qa"
TASKS = ("debian_qa", "man_qa", "perldiag_qa")
SIZES = {"dev": 5, "validation": 200, "test": 200}
SOURCES = {"debian_qa": r"dpkg:\S+", "man_qa": r"man[18]:\S+", "perldiag_qa": r"perldiag:.+"}
RESERVED = ("numpy", "pandas", "sklearn", "scikit-learn", "scikit", "scipy", "matplotlib")


def _records(task: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (TASK_DIR / task / f"{split}.jsonl").read_text().splitlines()]


def _answers(task: str) -> list[str]:
    return [r["answer"] for split in SIZES for r in _records(task, split)]


# ---------------------------------------------------------------------------------------------------- parsers
DPKG_STATUS = """\
Package: frobber
Status: install ok installed
Depends: libc6
Description: twiddle the bits of files
 Frobber reads each file you name and twiddles its bits in place,
 without changing its size.
 .
 It keeps a journal, so that every change can be undone.
 .
 It supports:
  - ext4 and XFS;
  - tmpfs.
 .
 This paragraph, after the list, is not part of the answer.

Package: python3-frobber
Description: twiddle bits from Python
 This package provides the Python bindings of frobber, a bit twiddler.

Package: frob-arrays
Description: twiddle arrays
 This package twiddles the bits of numpy arrays, as fast as it can.

Package: frob-doc
Description: documentation of frobber
 Manual.
"""


def test_a_dpkg_stanza_gives_its_description_up_to_the_first_list() -> None:
    """Continuation lines join, " ." splits paragraphs; Python and the reserved libraries drop the package."""
    answer = (
        "Frobber reads each file you name and twiddles its bits in place, without changing its size.\n\n"
        "It keeps a journal, so that every change can be undone."
    )
    assert list(parse_dpkg_status(DPKG_STATUS)) == [
        Item("dpkg:frobber", "frobber", "twiddle the bits of files", answer)
    ]


MAN_PAGE = rb"""
.TH FROB 1 "2024" "frob 1.0" "User Commands"
.SH NAME
frob \- twiddle the bits of a file
.SH SYNOPSIS
.B frob
[\fIOPTION\fR]... \fIFILE\fR
.SH DESCRIPTION
.B frob
reads each
.I FILE
and twiddles its bits in place.
It never changes the size of a file.
.PP
A second paragraph explains the \fBfrob\fR defaults.
.TP
.B \-v
print every bit twiddled
.PP
Text after the options is not part of the answer.
"""


def test_a_man_page_gives_its_name_line_and_the_opening_of_its_description() -> None:
    answer = (
        "Twiddle the bits of a file.\n\n"
        "frob reads each FILE and twiddles its bits in place. It never changes the size of a file.\n\n"
        "A second paragraph explains the frob defaults."
    )
    assert parse_man_page("frob", "1", MAN_PAGE) == Item("man1:frob", "frob", "command", answer)


def test_a_man_page_whose_description_repeats_its_name_line_says_it_once() -> None:
    page = b""".TH FROBD 8
.SH NAME
frobd \\- twiddle bits at boot
.SH DESCRIPTION
Twiddle bits at boot: frobd runs once, before any user logs in, and twiddles every file it is told to.
"""
    assert parse_man_page("frobd", "8", page) == Item(
        "man8:frobd",
        "frobd",
        "system administration command",
        "Twiddle bits at boot: frobd runs once, before any user logs in, and twiddles every file it is told to.",
    )


PERLDIAG = """\
=head1 DESCRIPTION

These messages are classified as follows.

=over 4

=item Can't frobnicate %s

=item Cannot frobnicate %s

(F) You tried to frobnicate C<%s>, which L<perlfunc/frob> forbids.  See
L<perlfrob>.

    frob $x;   # a verbatim example

Text after the example is not part of the answer.

=item Useless use of E<lt>E<gt> in void context

(W void) A B<< <> >> read whose value is thrown away S<<-- HERE> is useless.

=over 4

=item * a nested list, not part of the answer

=back

=item Too short

(W) Short.

=back

=head1 SEE ALSO
"""


def test_perldiag_gives_each_message_its_explanation_in_plain_text() -> None:
    """POD's codes are taken out, the classification becomes the kind; consecutive =items share one explanation."""
    assert list(parse_perldiag(PERLDIAG)) == [
        Item(
            "perldiag:Can't frobnicate %s",
            "Can't frobnicate %s",
            "fatal error",
            'You tried to frobnicate %s, which "frob" in perlfunc forbids. See perlfrob.',
        ),
        Item(
            "perldiag:Useless use of <> in void context",
            "Useless use of <> in void context",
            "warning",
            "A <> read whose value is thrown away <-- HERE is useless.",
        ),
    ]


def test_answers_are_cut_at_a_sentence_end_within_400_characters() -> None:
    sentence = "Every sentence of this paragraph says the same thing about twiddling bits. "
    answer = answer_from("frob", [sentence * 8, "A second paragraph that cannot fit."])
    assert 200 <= len(answer) <= 400 and answer.endswith("bits.") and "\n" not in answer
    assert answer_from("frob", ["This paragraph leads into a list. It supports the following:"]) == (
        "This paragraph leads into a list."
    )


def test_shared_sentences_go_as_boilerplate_and_overlapping_answers_leave_both_tasks() -> None:
    common = "Mandatory arguments to long options are mandatory for short options too."
    items = [
        Item(f"man1:c{i}", f"c{i}", "command", f"Command number {i} prints its own number and exits.\n\n{common}")
        for i in range(3)
    ]
    family = [
        Item(f"dpkg:g{i}", f"g{i}", "", f"{common} It is part {i} of the option parser family.") for i in range(3)
    ]
    assert [item.answer for item in drop_boilerplate(items + family)] == [
        *(f"Command number {i} prints its own number and exits." for i in range(3)),
        family[0].answer,  # the family's first, opening with the shared sentence; the others would start with "It"
    ]
    shared = "Bash is an sh-compatible command language interpreter."
    tasks = {
        "debian_qa": [Item("dpkg:bash", "bash", "shell", f"{shared} It is the default shell.")],
        "man_qa": [
            Item("man1:bash", "bash", "command", f"GNU Bourne-Again SHell. {shared}"),
            Item("man1:ls", "ls", "command", "List directory contents. It sorts entries by name."),
        ],
    }
    kept = disjoint(tasks, pool="The pool's text. It sorts entries by name. Then it stops.")
    assert kept == {"debian_qa": [], "man_qa": []}


def test_splits_are_seeded_and_share_no_question_or_answer() -> None:
    items = [Item(f"dpkg:p{i}", f"p{i}", "a package", f"Package {i % 30} does one thing well.") for i in range(60)]
    splits = build_splits("debian_qa", items, {"dev": 2, "validation": 10, "test": 10}, seed=3)
    assert splits == build_splits("debian_qa", list(reversed(items)), {"dev": 2, "validation": 10, "test": 10}, 3)
    records = [r for split in splits.values() for r in split]
    assert len({r["answer"] for r in records}) == len({r["question"] for r in records}) == len(records) == 22
    with pytest.raises(ValueError, match="30 distinct records"):
        build_splits("debian_qa", items, {"dev": 5, "validation": 30, "test": 30})


# -------------------------------------------------------------------------------------------- committed files
@pytest.mark.parametrize("task", TASKS)
def test_the_committed_splits_have_their_sizes_and_fields(task: str) -> None:
    for split, size in SIZES.items():
        records = _records(task, split)
        assert len(records) == size, split
        for record in records:
            assert set(record) == {"id", "kind", "source", "question", "answer"}
            assert record["id"].startswith(f"{task}/") and record["kind"] in {"dolly", "flan_v2", "oasst1"}
            assert re.fullmatch(SOURCES[task], record["source"]), record["source"]
            assert 40 <= len(record["answer"]) <= 400 and re.search(r"[.!?][\"')\]]*$", record["answer"])
            assert record["question"].strip() and record["answer"] == record["answer"].strip()
    ids = [r["id"] for split in SIZES for r in _records(task, split)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("task", TASKS)
def test_the_splits_of_a_task_share_no_question_and_no_answer(task: str) -> None:
    for field in ("question", "answer"):
        values = [r[field] for split in SIZES for r in _records(task, split)]
        assert len(set(values)) == len(values) == sum(SIZES.values()), field


def test_no_task_shares_a_sentence_with_another() -> None:
    answers = {task: _answers(task) for task in TASKS}
    for task in TASKS:
        others = "\n".join(a for other in TASKS if other != task for a in answers[other])
        shared = [s for a in answers[task] for s in sentences(a) if s[:40] in others]
        assert not shared, (task, shared[:5])


def test_no_committed_file_names_a_reserved_library_and_the_tasks_keep_off_python() -> None:
    files = sorted([*TASK_DIR.glob("*.py"), *TASK_DIR.glob("*.yaml"), *TASK_DIR.glob("*/*.jsonl")])
    assert len(files) == 1 + 3 + 9
    for path in files:
        text = path.read_text(encoding="utf-8").lower()
        assert not [name for name in RESERVED if name in text], path
    for task in ("debian_qa", "man_qa"):
        for record in (r for split in SIZES for r in _records(task, split)):
            assert not OTHER_DOMAINS.search(record["question"] + record["answer"]), record["source"]


def test_no_answer_quotes_the_default_demo_pool() -> None:
    text = pool_text(stdlib_documents())
    for task in TASKS:
        quoted = [s for a in _answers(task) for s in sentences(a) if s[:40] in text]
        assert not quoted, (task, quoted[:5])


# -------------------------------------------------------------------------------------------------- lm-eval
@pytest.mark.slow
def test_lm_eval_scores_a_task_on_its_validation_split_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from mygo.builtin.tokenizer import train_bpe_tokenizer
    from mygo.stages.evaluate import SplitTaskManager

    # Relative paths in the task (its `!function` loader, the JSONL files) must not depend on the working directory.
    monkeypatch.chdir(tmp_path)
    records = _records("perldiag_qa", "validation")
    tokenizer = train_bpe_tokenizer((r["question"] + "\n" + r["answer"] for r in records), vocab_size=512)
    model = tiny_llama(len(tokenizer))

    manager = TaskManager(include_path=str(TASKS_DIR))
    assert set(TASKS) <= set(manager.all_tasks)
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8),
        tasks=["perldiag_qa"],
        num_fewshot=1,
        limit=3,
        task_manager=SplitTaskManager(manager, "val"),
        log_samples=True,
    )
    assert results is not None
    scores = results["results"]["perldiag_qa"]
    assert sorted(s["doc"]["id"] for s in results["samples"]["perldiag_qa"]) == sorted(r["id"] for r in records[:3])
    for metric in ("bpb,none", "nll,none", "bits_per_byte,none"):
        assert math.isfinite(scores[metric]) and scores[metric] > 0, metric
