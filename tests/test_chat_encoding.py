"""Chat encoding with a real (tiny, trained here) byte-level BPE tokenizer: labels, masking, truncation, caching."""

import json

import pytest

from mygo.builtin.tokenizer import train_bpe_tokenizer
from mygo.data.chat import IGNORE_INDEX, TULU_CHAT_TEMPLATE, ChatEncoding, encode_messages, tokenize_pool
from mygo.data.pool import load_pool

MESSAGES = [
    {"role": "system", "content": "be kind"},
    {"role": "user", "content": "what is json"},
    {"role": "assistant", "content": "a data format"},
    {"role": "user", "content": "and yaml"},
    {"role": "assistant", "content": "another one"},
]


@pytest.fixture(scope="module")
def tokenizer():
    words = "what is json a data format and yaml another one be kind the of to in"
    return train_bpe_tokenizer([words] * 30, vocab_size=320)


def labelled_text(tokenizer, encoded) -> str:
    """The text of labelled tokens, with '_' for each unlabelled token."""
    return "".join(
        tokenizer.decode([token]) if label != IGNORE_INDEX else "_"
        for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True)
    )


def kept(text: str) -> str:
    return text.replace("_", "")


def test_assistant_only_labels_cover_answers_and_eos(tokenizer):
    encoded = encode_messages(tokenizer, MESSAGES, ChatEncoding())
    assert kept(labelled_text(tokenizer, encoded)) == "a data format<|endoftext|>\nanother one<|endoftext|>\n"
    assert encoded["num_label_tokens"] == sum(label != IGNORE_INDEX for label in encoded["labels"])
    assert tokenizer.decode(encoded["input_ids"]) == tokenizer.apply_chat_template(MESSAGES, tokenize=False)


def test_full_sequence_prediction_adds_user_turns_never_system(tokenizer):
    text = kept(
        labelled_text(tokenizer, encode_messages(tokenizer, MESSAGES, ChatEncoding(full_sequence_prediction=True)))
    )
    assert text == "what is json\na data format<|endoftext|>\nand yaml\nanother one<|endoftext|>\n"
    assert "be kind" not in text


def test_role_markers_carry_labels_only_without_masking(tokenizer):
    unmasked = ChatEncoding(full_sequence_prediction=True, mask_special_tokens=False)
    text = kept(labelled_text(tokenizer, encode_messages(tokenizer, MESSAGES, unmasked)))
    assert text.startswith("<|user|>\nwhat is json\n<|assistant|>\na data format")
    assert "<|system|>" not in text


def test_truncation_cuts_and_flags(tokenizer):
    full = encode_messages(tokenizer, MESSAGES, ChatEncoding())
    short = encode_messages(tokenizer, MESSAGES, ChatEncoding(max_sequence_length=10))
    assert not full["truncated"] and short["truncated"]
    assert short["length"] == 10 and short["input_ids"] == full["input_ids"][:10]
    assert short["labels"] == full["labels"][:10]


def test_a_tokenizer_without_template_gets_tulu(tokenizer, tmp_path):
    bare = train_bpe_tokenizer(["what is json a data format"] * 10, vocab_size=300)
    bare.chat_template = None
    root = tmp_path / "pool"
    (root / "dolly").mkdir(parents=True)
    record = {"dataset": "dolly", "id": "d0", "messages": MESSAGES[1:3]}
    (root / "dolly" / "d.jsonl").write_text(json.dumps(record) + "\n")
    tokenize_pool(load_pool(root), bare, ChatEncoding(), tmp_path / "cache")
    assert bare.chat_template == TULU_CHAT_TEMPLATE


def test_tokenized_pool_is_cached_by_pool_tokenizer_and_options(tokenizer, tmp_path):
    root = tmp_path / "pool"
    (root / "dolly").mkdir(parents=True)
    lines = [json.dumps({"dataset": "dolly", "id": f"d{i}", "messages": MESSAGES[1:3]}) for i in range(5)]
    (root / "dolly" / "d.jsonl").write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    pool = load_pool(root)
    first = tokenize_pool(pool, tokenizer, ChatEncoding(), cache)
    assert first.column_names[:3] == ["id", "dataset", "file"] and "messages" not in first.column_names
    cached_files = sorted(cache.glob("tokenized-*.arrow"))
    assert len(cached_files) == 1
    again = tokenize_pool(load_pool(root), tokenizer, ChatEncoding(), cache)
    assert again.cache_files[0]["filename"] == str(cached_files[0]) and again["input_ids"] == first["input_ids"]
    tokenize_pool(pool, tokenizer, ChatEncoding(full_sequence_prediction=True), cache)
    assert len(list(cache.glob("tokenized-*.arrow"))) == 2
