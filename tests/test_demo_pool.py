"""The offline demo pool: LESS layout and schema, exact injected noise, real doc text, determinism and caching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mygo.analysis.text_overlap import prompt_copy
from mygo.data.demo_pool.build import (
    DEMO_POOL_VERSION,
    DEMO_SOURCES,
    MANIFEST_NAME,
    DemoRecord,
    build_demo_pool,
    demo_pool_dir,
    ensure_demo_pool,
    generate_demo_records,
)
from mygo.data.demo_pool.noise import HELDOUT_NOISE_KINDS, NOISE_KINDS
from mygo.data.demo_pool.templates import COT_SUFFIX
from mygo.data.stdlib_corpus import Document, stdlib_documents

ARGS = dict(num_samples=400, noise_fraction=0.15, seed=3, max_answer_chars=300)
NUM_NOISY = 60  # round(0.15 * 400)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return stdlib_documents()


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("pool")
    build_demo_pool(output_dir, **ARGS)
    return output_dir


@pytest.fixture(scope="module")
def records(pool_dir: Path) -> list[dict]:
    found = []
    for source in DEMO_SOURCES:
        for line in (pool_dir / source / f"{source}_data.jsonl").read_text(encoding="utf-8").splitlines():
            found.append(json.loads(line))
    return found


@pytest.fixture(scope="module")
def generated(documents: list[Document]) -> list[DemoRecord]:
    return generate_demo_records(documents, **ARGS)


def _answers(record: dict) -> list[str]:
    return [m["content"] for m in record["messages"] if m["role"] == "assistant"]


def test_layout_and_record_schema(pool_dir: Path, records: list[dict]) -> None:
    assert sorted(p.name for p in pool_dir.iterdir()) == sorted([*DEMO_SOURCES, MANIFEST_NAME])
    assert not list(pool_dir.rglob("*.tmp"))  # atomic writes leave no temp files behind
    assert len(records) == ARGS["num_samples"]
    for source in DEMO_SOURCES:
        lines = (pool_dir / source / f"{source}_data.jsonl").read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line)["dataset"] == source for line in lines)
        assert abs(len(lines) - ARGS["num_samples"] / len(DEMO_SOURCES)) < 1
    for record in records:
        assert list(record) == ["dataset", "id", "messages", "mygo_noise", "mygo_topic"]
        assert record["id"].startswith(record["dataset"] + "_")
        assert record["mygo_noise"] is None or record["mygo_noise"] in NOISE_KINDS
        roles = [m["role"] for m in record["messages"]]
        assert set(roles) <= {"system", "user", "assistant"} and "system" not in roles[1:]
        assert "user" in roles and roles[-1] == "assistant"
        for message in record["messages"]:
            assert set(message) == {"role", "content"}
            assert isinstance(message["content"], str) and message["content"].strip()
    assert len({record["id"] for record in records}) == len(records)


def test_every_record_names_the_stdlib_module_or_topic_it_is_about(records: list[dict], documents) -> None:
    modules = {d.title for d in documents if d.source == "module_doc"}
    topics = Counter(record["mygo_topic"] for record in records)
    assert all(isinstance(topic, str) and topic for topic in topics)
    assert len(topics) >= 100  # hundreds of modules: enough for a selection's coverage of them to mean something
    assert sum(count for topic, count in topics.items() if topic in modules) > 0.5 * len(records)
    for record in records:  # a question that names a dotted object names one of the topic's module
        question = record["messages"][-2]["content"]
        if record["dataset"] == "cot" and question.startswith("In which module is `"):
            assert question.split("`")[1].startswith(record["mygo_topic"] + ".")


def test_manifest_matches_the_files(pool_dir: Path, records: list[dict]) -> None:
    manifest = json.loads((pool_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["format_version"] == DEMO_POOL_VERSION
    assert manifest["arguments"] == ARGS
    assert manifest["counts_by_source"] == Counter(record["dataset"] for record in records)
    noise = Counter(record["mygo_noise"] for record in records if record["mygo_noise"])
    assert manifest["counts_by_noise"] == {kind: noise[kind] for kind in NOISE_KINDS}


def test_exact_noise_count_with_every_kind_spread_over_sources(records: list[dict]) -> None:
    noisy = [record for record in records if record["mygo_noise"]]
    assert len(noisy) == NUM_NOISY
    assert Counter(record["mygo_noise"] for record in noisy) == {kind: NUM_NOISY // 5 for kind in NOISE_KINDS}
    assert {record["dataset"] for record in noisy} == set(DEMO_SOURCES)


def test_files_hold_exactly_the_generated_records(records: list[dict], generated: list[DemoRecord]) -> None:
    assert records == [item.record for item in generated]


def test_noise_kinds_corrupt_the_last_answer_as_described(generated: list[DemoRecord]) -> None:
    clean_answers = {item.clean_answer for item in generated if not item.record["mygo_noise"]}
    for item in generated:
        kind, answer, original = item.record["mygo_noise"], _answers(item.record)[-1], item.clean_answer
        if kind is None:
            assert answer == original
            continue
        assert answer != original, kind
        if kind == "repeated_token":
            assert len(set(answer.split())) == 1 and len(answer.split()) >= 3
        elif kind == "shuffled_words":
            assert sorted(answer.split()) == sorted(original.split())
        elif kind == "cut_off_answer":
            assert 1 <= len(answer.split()) <= 3 and original.split()[: len(answer.split())] == answer.split()
        elif kind == "mismatched_answer":
            assert answer in clean_answers  # another record's real answer
        elif kind == "random_chars":
            assert len(answer.split()) >= 2 and not {w for w in answer.split() if len(w) > 3} & set(original.split())


def test_source_styles(records: list[dict]) -> None:
    by_source = {source: [r for r in records if r["dataset"] == source] for source in DEMO_SOURCES}
    for record in by_source["cot"]:
        question = [m["content"] for m in record["messages"] if m["role"] == "user"][-1]
        assert question.endswith(COT_SUFFIX)
        if not record["mygo_noise"]:
            steps, conclusion = _answers(record)[-1].split(" So the answer is ")
            assert steps.strip() and conclusion.endswith(".") and "\n" not in conclusion
    cot_conclusions = Counter(_answers(r)[-1].rsplit(" ", 1)[1] for r in by_source["cot"] if not r["mygo_noise"])
    assert cot_conclusions["yes."] > 0 and cot_conclusions["no."] > 0
    assert all(len(_answers(record)) >= 2 for record in by_source["oasst1"])
    assert all(len(_answers(record)) == 1 for source in ("dolly", "flan_v2", "cot") for record in by_source[source])
    assert any(record["messages"][0]["role"] == "system" for record in by_source["flan_v2"])


def test_answers_are_bounded_real_documentation_text(records: list[dict], documents: list[Document]) -> None:
    corpus = "\n".join(" ".join(document.text.split()) for document in documents)
    for record in records:
        answers = _answers(record)
        assert all(len(answer) <= ARGS["max_answer_chars"] for answer in answers)
        if record["dataset"] not in ("dolly", "oasst1"):
            continue
        # Noise only ever touches the last answer: earlier turns of a noisy conversation stay real text.
        for answer in answers[:-1] if record["mygo_noise"] else answers:
            for paragraph in answer.split("\n\n"):
                assert paragraph in corpus, paragraph


def test_build_is_deterministic(tmp_path: Path, pool_dir: Path) -> None:
    build_demo_pool(tmp_path, **ARGS)
    files = sorted(p.relative_to(pool_dir) for p in pool_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for relative in files:
        assert (tmp_path / relative).read_bytes() == (pool_dir / relative).read_bytes(), relative


def test_tiny_pool_with_heavy_noise_and_short_answers(documents: list[Document]) -> None:
    items = generate_demo_records(documents, num_samples=20, noise_fraction=0.9, seed=1, max_answer_chars=40)
    kinds = Counter(item.record["mygo_noise"] for item in items)
    assert kinds[None] == 2 and set(kinds) - {None} == set(NOISE_KINDS)
    for item in items:
        assert all(m["content"].strip() for m in item.record["messages"])
        assert all(len(answer) <= 40 for answer in _answers(item.record))


def test_ensure_demo_pool_reuses_its_cache(tmp_path: Path) -> None:
    args = dict(num_samples=20, noise_fraction=0.25, seed=0, max_answer_chars=100)
    first = ensure_demo_pool(tmp_path, **args)
    assert first.parent == tmp_path and first.name.startswith(f"v{DEMO_POOL_VERSION}-") and len(first.name) == 15
    manifest = first / MANIFEST_NAME
    stamp = manifest.stat().st_mtime_ns
    assert ensure_demo_pool(tmp_path, **args) == first
    assert manifest.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert first == demo_pool_dir(tmp_path, **args)
    # Every argument is part of the key (checked on the path alone: each build reads the whole stdlib).
    changed = [{**args, name: value} for name, value in [("num_samples", 21), ("noise_fraction", 0.2), ("seed", 1)]]
    changed.append({**args, "max_answer_chars": 101})
    changed.append({**args, "noise_kinds": HELDOUT_NOISE_KINDS})
    assert len({first, *(demo_pool_dir(tmp_path, **other) for other in changed)}) == 6
    # The default kinds, named or not, are the same pool (so the default pool kept its cache key).
    assert demo_pool_dir(tmp_path, **args, noise_kinds=list(NOISE_KINDS)) == first


def test_held_out_noise_kinds_corrupt_as_described(documents: list[Document]) -> None:
    items = generate_demo_records(documents, **{**ARGS, "noise_kinds": HELDOUT_NOISE_KINDS})
    kinds = Counter(item.record["mygo_noise"] for item in items)
    assert kinds == {None: 340, **{kind: NUM_NOISY // 5 for kind in HELDOUT_NOISE_KINDS}}
    default_items = generate_demo_records(documents, **ARGS)
    # The same clean conversations underneath: only which records are noisy, and how, differs.
    assert [i.clean_answer for i in items] == [i.clean_answer for i in default_items]
    for item in items:
        kind, answer, original = item.record["mygo_noise"], _answers(item.record)[-1], item.clean_answer
        question = item.record["messages"][-2]["content"]
        assert len(answer) <= ARGS["max_answer_chars"]
        if kind is None:
            assert answer == original
            continue
        assert answer != original, kind
        if kind in ("refusal", "boilerplate"):  # fluent and the same whatever was asked: nothing of the answer
            assert "`" not in answer and item.record["mygo_topic"] not in answer
        elif kind == "echoed_question":
            assert answer == question.strip()[: ARGS["max_answer_chars"]].strip()
        elif kind == "wrong_script":
            assert not any("a" <= c.lower() <= "z" for c in answer)
            assert answer.count(" ") == original.count(" ") and len(answer) == len(original)
        else:  # wrong_facts: the answer's wording, with some of its names or numbers another record's
            assert len(answer.split()) == len(original.split()) or any(c.isdigit() or c == "." for c in original)
            assert sum(a != b for a, b in zip(answer.split(), original.split(), strict=False)) >= 1
    counts = Counter(
        answer for item in items if item.record["mygo_noise"] == "refusal" for answer in _answers(item.record)[-1:]
    )
    assert len(counts) > 1  # several refusals, not one string a filter could match
    # An echo copies its question: selection.max_prompt_copy's 0.8 keeps every echo out and no clean record.
    copy = prompt_copy([item.record["messages"] for item in items])
    echoes = [item.record["mygo_noise"] == "echoed_question" for item in items]
    clean = [item.record["mygo_noise"] is None for item in items]
    assert (copy[echoes] >= 0.8).all() and (copy[clean] < 0.8).all()


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("num_samples", 19),
        ("num_samples", 20.0),
        ("noise_fraction", -0.1),
        ("noise_fraction", 1.0),
        ("noise_fraction", float("nan")),
        ("seed", 1.5),
        ("max_answer_chars", 39),
        ("noise_kinds", ["random_chars", "typo"]),
        ("noise_kinds", []),
        ("noise_kinds", ["refusal", "refusal"]),
        ("noise_kinds", "refusal"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(tmp_path: Path, argument: str, value: object) -> None:
    with pytest.raises(ValueError, match=argument):
        build_demo_pool(tmp_path / "built", **{**ARGS, argument: value})
    with pytest.raises(ValueError, match=argument):
        ensure_demo_pool(tmp_path / "cache", **{**ARGS, argument: value})
    assert not list(tmp_path.iterdir())  # refused before anything was written
