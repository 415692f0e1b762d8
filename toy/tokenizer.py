"""A character-level tokenizer built in-process (no hub download), saved in HF format."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from toy.skills import ALPHABET

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of the skills' alphabet, plus pad/bos/eos/unk."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(ALPHABET))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
