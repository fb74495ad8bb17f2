"""The pool in the formats people publish (Alpaca, ShareGPT, OpenAI chat, prompt/response), as JSONL, JSON arrays and
Parquet: detection, conversion, ids, errors that name the record, tool turns kept out of the loss, and copies back."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mygo.builtin.tokenizer import train_bpe_tokenizer
from mygo.config import load_config
from mygo.data.chat import IGNORE_INDEX, ChatEncoding, encode_messages
from mygo.data.pool import (
    PoolError,
    load_configured_pool,
    load_pool,
    load_records_file,
    pool_source,
    record_digest,
    record_texts,
    records_at,
    source_digest,
)

# Written by hand after the public formats: tatsu-lab/stanford_alpaca's alpaca_data.json (a JSON array, no ids),
# ShareGPT dumps (and LLaMA-Factory's function-calling variant), OpenAI's chat fine-tuning JSONL with a tool call.
ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {
        "instruction": "Translate the sentence into French.",
        "input": "The cat sits on the mat.",
        "output": "Le chat est assis sur le tapis.",
    },
]
SHAREGPT = [
    {
        "id": "QWJhYvA_0",
        "conversations": [
            {"from": "human", "value": "What is a monad?"},
            {"from": "gpt", "value": "A monoid in the category of endofunctors."},
            {"from": "human", "value": "Simpler, please."},
            {"from": "gpt", "value": "A way to chain computations."},
        ],
    },
    {
        "id": "fc_1",
        "system": "You can call get_weather.",
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": '{"temp_c": 18}'},
            {"from": "gpt", "value": "It is 18 degrees in Paris."},
        ],
    },
]
OPENAI_TOOL_CALL = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": [{"type": "text", "text": "What is the weather in San Francisco?"}]},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": '{"location": "San Francisco"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21.0 celsius"},
        {"role": "assistant", "content": "It is 21 degrees celsius in San Francisco."},
    ],
    "tools": [{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}],
}
PROMPT_RESPONSE = [{"prompt": "Name a prime number.", "response": "Seven."}]
MESSAGES = [
    {"dataset": "mixed", "id": 7, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
]


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def write_json_array(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2))  # pretty-printed, as alpaca_data.json is
    return path


def turns(record: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in record["messages"]]


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """One dataset folder holding every format, in each kind of file."""
    folder = tmp_path / "pool" / "mixed"
    write_json_array(folder / "alpaca_data.json", ALPACA)
    write_jsonl(folder / "sharegpt.jsonl", SHAREGPT)
    write_jsonl(folder / "openai.jsonl", [OPENAI_TOOL_CALL])
    pd.DataFrame(PROMPT_RESPONSE).to_parquet(folder / "prompt_response.parquet")
    write_jsonl(folder / "tulu.jsonl", MESSAGES)
    return tmp_path / "pool"


def test_every_format_in_a_mixed_folder_is_detected_converted_and_logged(mixed_dir):
    pool = load_pool(mixed_dir)
    by_id = {record["id"]: record for record in pool.records}
    folder = mixed_dir / "mixed"
    assert {Path(file).name: kind for file, kind in pool.formats.items()} == {
        "alpaca_data.json": "alpaca",
        "openai.jsonl": "openai",
        "prompt_response.parquet": "prompt_response",
        "sharegpt.jsonl": "sharegpt",
        "tulu.jsonl": "messages",
    }
    metrics = pool.stats.metrics()
    assert metrics["data/format/mixed/alpaca"] == 2 and metrics["data/format/mixed/sharegpt"] == 2
    assert metrics["data/format/mixed/openai"] == metrics["data/format/mixed/messages"] == 1
    assert metrics["data/format/mixed/prompt_response"] == 1 and metrics["data/pool_records"] == 7

    # Alpaca: no ids, so each gets folder/file:record; instruction and input joined by a blank line.
    assert turns(by_id["mixed/alpaca_data.json:1"]) == [
        ("user", "Give three tips for staying healthy."),
        ("assistant", "Eat well, sleep, move."),
    ]
    assert turns(by_id["mixed/alpaca_data.json:2"])[0] == (
        "user",
        "Translate the sentence into French.\n\nThe cat sits on the mat.",
    )
    # ShareGPT: roles mapped, the top-level system first, a function call is the assistant's, its result a tool turn.
    assert [role for role, _ in turns(by_id["QWJhYvA_0"])] == ["user", "assistant", "user", "assistant"]
    assert turns(by_id["fc_1"]) == [
        ("system", "You can call get_weather."),
        ("user", "Weather in Paris?"),
        ("assistant", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
        ("tool", '{"temp_c": 18}'),
        ("assistant", "It is 18 degrees in Paris."),
    ]
    # OpenAI: text parts joined, a tool-call-only turn carries its call as JSON, the tool turn kept.
    assert turns(by_id["mixed/openai.jsonl:1"]) == [
        ("system", "You are a weather bot."),
        ("user", "What is the weather in San Francisco?"),
        ("assistant", '{"name": "get_current_weather", "arguments": {"location": "San Francisco"}}'),
        ("tool", "21.0 celsius"),
        ("assistant", "It is 21 degrees celsius in San Francisco."),
    ]
    parquet = by_id["mixed/prompt_response.parquet:1"]
    assert turns(parquet) == [("user", "Name a prime number."), ("assistant", "Seven.")] and parquet["line"] == 1
    assert by_id["7"]["dataset"] == "mixed"  # an integer id, kept as given and held as a string
    assert pool.records.features["id"].dtype == "string"
    # The pool's digest is the one reuse computes from the files, whatever their kind.
    assert source_digest(pool_source(pool)) == pool.digest
    (folder / "prompt_response.parquet").unlink()
    assert source_digest(pool_source(pool)) != pool.digest


def test_ids_derived_from_the_position_are_stable_and_integer_ids_compare_as_strings(tmp_path):
    folder = tmp_path / "pool" / "alpaca"
    write_jsonl(folder / "a.jsonl", ALPACA)
    ids = list(load_pool(tmp_path / "pool").records["id"])
    assert ids == ["alpaca/a.jsonl:1", "alpaca/a.jsonl:2"] == list(load_pool(tmp_path / "pool").records["id"])

    record = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    write_jsonl(folder / "b.jsonl", [record | {"id": 7}, record | {"id": "7"}])
    with pytest.raises(PoolError, match=r"duplicate record id '7': .*b.jsonl:1 and .*b.jsonl:2"):
        load_pool(tmp_path / "pool")


def test_auto_reads_a_file_whose_records_change_format_and_records_each_one(tmp_path):
    """A selection made from a mixed pool is such a file: the select stage copies records as written."""
    path = write_jsonl(tmp_path / "selected.jsonl", [*MESSAGES, ALPACA[0], OPENAI_TOOL_CALL])
    pool = load_records_file(path)
    assert pool.formats == {str(path): "messages+alpaca+openai"} and len(pool.records) == 3


def test_a_forced_format_that_does_not_fit_names_file_line_and_fields(tmp_path):
    path = write_jsonl(tmp_path / "pool" / "sg" / "data.jsonl", SHAREGPT)
    with pytest.raises(PoolError) as error:
        load_pool(tmp_path / "pool", data_format="alpaca")
    message = str(error.value)
    assert f"{path}:1 (id 'QWJhYvA_0')" in message and "alpaca format (dataset.format)" in message
    assert "field 'instruction' must be a string" in message and "fields: ['conversations', 'id']" in message
    assert len(load_pool(tmp_path / "pool", data_format="sharegpt").records) == 2


def test_a_record_that_fits_no_format_names_its_fields_and_its_index_in_an_array(tmp_path):
    path = write_json_array(tmp_path / "pool" / "q" / "qa.json", [{"question": "Why?", "answer": "Because."}])
    with pytest.raises(PoolError) as error:
        load_pool(tmp_path / "pool")
    message = str(error.value)
    assert f"{path}: record 1" in message and "fits no format" in message
    assert "fields: ['answer', 'question']" in message and "alpaca: instruction + output" in message


def test_a_parquet_row_that_breaks_the_files_format_names_the_row(tmp_path):
    folder = tmp_path / "pool" / "alpaca"
    folder.mkdir(parents=True)
    rows = [ALPACA[0], {"instruction": "Say hi.", "input": None, "output": None}]  # Parquet: absent is null
    pd.DataFrame(rows).to_parquet(folder / "train.parquet")
    with pytest.raises(PoolError, match=r"train.parquet: record 2 .*field 'output' must be a string, got None"):
        load_pool(tmp_path / "pool")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"conversations": [{"from": "wizard", "value": "hi"}]}, r"conversations\[0\]\.from is 'wizard'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            r"messages\[0\]\.content\[0\] is not a text part \('image_url'\)",
        ),
        ({"messages": [{"role": "oracle", "content": "hi"}]}, r"messages\[0\]\.role is 'oracle'"),
        ({"instruction": "Do it.", "output": 3}, r"field 'output' must be a string, got 3"),
        ({"id": True, "prompt": "p", "response": "r"}, r"field 'id' must be a non-empty string or an integer"),
    ],
)
def test_what_is_wrong_inside_a_record_is_named(tmp_path, record, message):
    write_jsonl(tmp_path / "pool" / "d" / "d.jsonl", [record])
    with pytest.raises(PoolError, match=r"d\.jsonl:1\b.*" + message):
        load_pool(tmp_path / "pool")


def test_skips_folder_checks_and_the_config_key_hold_for_every_format(tmp_path):
    folder = tmp_path / "pool" / "dolly"
    rows = [
        ALPACA[1],
        {"instruction": "Answer.", "input": "", "output": "   "},  # empty answer: skipped
        {"conversations": [{"from": "human", "value": "Anyone?"}]},  # no assistant turn: skipped
    ]
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:2]), folder / "a.parquet")
    write_jsonl(folder / "b.jsonl", rows[2:])
    pool = load_pool(tmp_path / "pool")
    assert len(pool.records) == 1 and pool.stats.skipped_empty_content == pool.stats.skipped_no_assistant == 1

    write_jsonl(folder / "c.jsonl", [PROMPT_RESPONSE[0] | {"dataset": "cot"}])
    with pytest.raises(PoolError, match=r"c.jsonl:1 .*'dataset' is 'cot' but the file is in folder 'dolly'"):
        load_pool(tmp_path / "pool")
    (folder / "c.jsonl").unlink()

    cfg = load_config("warmup", [f"dataset.data_dir={tmp_path / 'pool'}", "dataset.format=prompt_response"])
    with pytest.raises(PoolError, match="prompt_response format"):
        load_configured_pool(cfg.dataset)
    with pytest.raises(ValueError, match="dataset.format"):
        load_config("warmup", ["dataset.format=csv"])


def test_a_json_file_of_json_lines_reads_as_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "export.json", ALPACA)
    pool = load_records_file(path)
    assert list(pool.records["line"]) == [1, 2] and pool.formats == {str(path): "alpaca"}


def test_records_at_and_the_selection_copy_round_trip_json_arrays_and_parquet(tmp_path):
    folder = tmp_path / "pool" / "sg"
    write_json_array(folder / "alpaca.json", ALPACA)
    pq.write_table(pa.Table.from_pylist(SHAREGPT), folder / "sharegpt.parquet")
    pool = load_pool(tmp_path / "pool")
    wanted = [pool.records[i] for i in (3, 0, 2)]  # out of order, across files
    locations = [(r["file"], r["line"]) for r in wanted]

    written = records_at(locations)
    assert written[1] == ALPACA[0]  # as written: the Alpaca record itself, not its conversion
    assert written[0]["id"] == "fc_1" and written[0]["conversations"][1]["from"] == "function_call"

    # What the select stage does: the record as written at (file, line), checked against its digest, copied.
    texts = {file: dict(record_texts(file)) for file in {file for file, _ in locations}}
    lines = [texts[file][line] for file, line in locations]
    assert [record_digest(raw) for raw in lines] == [r["record_digest"] for r in wanted]
    selected = tmp_path / "selected_data.jsonl"
    selected.write_bytes(b"".join(raw.rstrip(b"\n") + b"\n" for raw in lines))
    copied = load_records_file(selected)
    assert [turns(r) for r in copied.records] == [turns(r) for r in wanted]
    assert copied.formats == {str(selected): "sharegpt+alpaca"}
    with pytest.raises(PoolError, match="has no line 9"):
        records_at([(locations[0][0], 9)])


@pytest.fixture(scope="module")
def tokenizer():
    words = "what is the weather in san francisco it degrees celsius name arguments location you are a bot"
    return train_bpe_tokenizer([words] * 30, vocab_size=320)


def labelled(tokenizer, encoded) -> str:
    return "".join(
        tokenizer.decode([token])
        for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True)
        if label != IGNORE_INDEX
    )


def test_tool_turns_are_context_not_targets_unless_asked(tmp_path, tokenizer):
    messages = load_records_file(write_jsonl(tmp_path / "t.jsonl", [OPENAI_TOOL_CALL])).records[0]["messages"]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|tool|>\n21.0 celsius" in text  # in the rendered conversation

    default = labelled(tokenizer, encode_messages(tokenizer, messages, ChatEncoding()))
    assert '"name": "get_current_weather"' in default and "It is 21 degrees" in default
    assert "21.0" not in default and "weather bot" not in default

    full = labelled(tokenizer, encode_messages(tokenizer, messages, ChatEncoding(full_sequence_prediction=True)))
    assert "What is the weather" in full and "21.0" not in full

    asked = labelled(tokenizer, encode_messages(tokenizer, messages, ChatEncoding(train_on_tool_turns=True)))
    assert "21.0 celsius" in asked and "<|tool|>" not in asked and "What is the weather" not in asked
