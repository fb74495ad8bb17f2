"""The offline stdlib corpus and the BPE tokenizer trained on it: real text, real training, real save/load."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mygo.builtin.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    ROLE_MARKERS,
    train_bpe_tokenizer,
)
from mygo.data.chat import TULU_CHAT_TEMPLATE
from mygo.data.stdlib_corpus import MIN_CHARS, Document, stdlib_documents

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What does json.dumps do?"},
    {"role": "assistant", "content": "It serialises an object to a JSON string."},
    {"role": "user", "content": "And json.loads?"},
    {"role": "assistant", "content": "The reverse."},
]
SAMPLES = [
    "Return a new list containing all items from the iterable in ascending order.",
    "  Indented\tcode:\n    x = {'a': 1}  # comment\n\n",
    "Unicode survives byte-level BPE: café, naïve, 東京, emoji 🐍.",
]


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return stdlib_documents()


@pytest.fixture(scope="module")
def tokenizer(documents: list[Document]) -> PreTrainedTokenizerFast:
    return train_bpe_tokenizer((document.text for document in documents[:300]), vocab_size=1024)


def test_corpus_has_every_source_and_clean_texts(documents: list[Document]) -> None:
    sources = {document.source for document in documents}
    assert sources == {"pydoc_topic", "module_doc", "class_doc", "function_doc"}
    titles = {document.title for document in documents}
    assert "json.dumps" in titles
    assert "json" in titles  # package __init__ docstrings count as the package's module doc
    assert all(len(document.text) >= MIN_CHARS for document in documents)
    assert all(document.text == document.text.strip() for document in documents)
    assert len({document.text for document in documents}) == len(documents)
    # Never parsed: the skipped packages and private modules.
    assert not any(title.split(".")[0] in {"test", "idlelib", "tkinter"} for title in titles)
    assert not any(title.startswith("_") for title in titles if "." in title)


def test_corpus_is_deterministic(documents: list[Document]) -> None:
    assert stdlib_documents() == documents


def test_tokenizer_round_trips_and_keeps_special_tokens_whole(tokenizer: PreTrainedTokenizerFast) -> None:
    assert len(tokenizer) == 1024
    for text in SAMPLES:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.model_max_length == 2048 and tokenizer.padding_side == "right"
    for token in (EOS_TOKEN, PAD_TOKEN, *ROLE_MARKERS):
        ids = tokenizer.encode(token)
        assert ids == [tokenizer.convert_tokens_to_ids(token)]
    # No BOS/EOS is added around plain text: pretraining code decides where documents end.
    assert EOS_TOKEN not in tokenizer.decode(tokenizer.encode(SAMPLES[0]))


def test_chat_template_is_tulu(tokenizer: PreTrainedTokenizerFast) -> None:
    expected = (
        "<|system|>\nYou are terse.\n"
        "<|user|>\nWhat does json.dumps do?\n"
        "<|assistant|>\nIt serialises an object to a JSON string.<|endoftext|>\n"
        "<|user|>\nAnd json.loads?\n"
        "<|assistant|>\nThe reverse.<|endoftext|>\n"
    )
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == expected
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|system|>\nYou are terse.\n<|user|>\nWhat does json.dumps do?\n<|assistant|>\n"
    ids = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=False)
    assert tokenizer.decode(ids) == expected
    assert ids.count(tokenizer.eos_token_id) == 2


def test_save_and_load_through_auto_tokenizer(tokenizer: PreTrainedTokenizerFast, tmp_path) -> None:
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "\n".join(SAMPLES)
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.chat_template == TULU_CHAT_TEMPLATE
    assert loaded.apply_chat_template(CONVERSATION, tokenize=False) == tokenizer.apply_chat_template(
        CONVERSATION, tokenize=False
    )
    assert (loaded.eos_token, loaded.pad_token, loaded.bos_token) == (EOS_TOKEN, PAD_TOKEN, None)
    assert loaded.model_max_length == 2048 and loaded.padding_side == "right"
    assert [loaded.convert_tokens_to_ids(token) for token in ROLE_MARKERS] == [
        tokenizer.convert_tokens_to_ids(token) for token in ROLE_MARKERS
    ]
