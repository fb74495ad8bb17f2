"""A byte-level BPE tokenizer trained offline, with the Tulu chat format OLMoE's tokenizer uses.

No tokenizer can be downloaded where the tiny default is built, so one is trained here on local text.
Byte-level BPE covers any input without an unknown token, and the special tokens and chat template
mirror OLMoE-Instruct's so that chat encoding code works the same on the tiny model and the real one.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mygo.data.chat import TULU_CHAT_TEMPLATE

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; special tokens and role markers are single ids."""
    special = [EOS_TOKEN, PAD_TOKEN, *ROLE_MARKERS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special,
        # All 256 byte symbols from the start, so text unseen in training still encodes losslessly.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # transformers 5: `PreTrainedTokenizerFast` is an alias of `TokenizersBackend`; the extra special
    # tokens are called `extra_special_tokens` (`additional_special_tokens` is only a deprecated alias).
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        # Like OLMoE: no BOS is prepended, and byte-level BPE never needs an unknown token.
        bos_token=None,
        unk_token=None,
        extra_special_tokens=list(ROLE_MARKERS),
        chat_template=TULU_CHAT_TEMPLATE,
        model_max_length=2048,
        padding_side="right",
    )
