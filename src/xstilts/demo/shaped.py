"""Encoders with a real model's shapes and random weights, built offline: what a rehearsal, a benchmark or a test
needs where the hub cannot be reached (`xstilts shaped-encoder --like xlm-roberta-large`).

The model is the named encoder's architecture (XLM-R Large: 24 layers, hidden 1024, 16 heads, 514 positions,
a 250,002-token vocabulary) with freshly initialised weights, saved as safetensors. The tokenizer is a
SentencePiece-style Unigram model trained on the text given (or the demo's generated corpus) with XLM-R's special
tokens and ids, its vocabulary filled up to the real size with pieces no text produces, so that every id the
real vocabulary has exists (`<mask>` is the last id, as in XLM-R): embedding tables, output layers and id ranges
have their real sizes; only the tokens' meanings are missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig

from xstilts.demo.pretrain import train_tokenizer, xlmr_tokenizer
from xstilts.errors import XstiltsError
from xstilts.study.price import KNOWN_SHAPES, EncoderShape

FILLER = "▁\u2063{}"  # an invisible separator and a number: never produced by tokenizing text
TRAINED_PIECES = 8000  # the pieces learnt from the text (at most; a small text gives fewer)


def shaped_tokenizer(sentences: Iterable[str], vocab_size: int, max_length: int = 512) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer trained on `sentences`, padded with filler pieces to exactly `vocab_size` ids."""
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise XstiltsError("a tokenizer needs some text to learn its pieces from")
    small = train_tokenizer(sentences, min(TRAINED_PIECES, vocab_size - 1), max_length)
    data = json.loads(small.backend_tokenizer.to_str())
    pieces = data["model"]["vocab"]
    if len(pieces) >= vocab_size:
        raise XstiltsError(f"the text gives {len(pieces)} pieces, more than the vocabulary of {vocab_size}")
    pieces += [[FILLER.format(index), -1000.0] for index in range(vocab_size - 1 - len(pieces))]
    for token in data["added_tokens"]:
        if token["content"] == "<mask>":
            token["id"] = vocab_size - 1
    return xlmr_tokenizer(Tokenizer.from_str(json.dumps(data)), max_length)


def text_lines(paths: Iterable[Path], limit: int = 20_000) -> list[str]:
    """Up to `limit` non-empty lines of the given text files (TSV, JSON Lines or plain text: lines as they are),
    the same share from each file, so that every language given has its characters in the vocabulary."""
    paths = list(paths)
    share = -(-limit // max(1, len(paths)))
    lines: list[str] = []
    for path in paths:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            lines += [line.strip() for line, _ in zip((line for line in handle if line.strip()), range(share))]
    return lines[:limit]


def xlmr_config(shape: EncoderShape, layers: int | None = None) -> XLMRobertaConfig:
    """XLM-R's configuration at `shape` (its special ids: <s> 0, <pad> 1, </s> 2), `layers` deep if given."""
    return XLMRobertaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=layers or shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.positions,
        type_vocab_size=shape.type_vocab,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )


def build_shaped_encoder(
    directory: str | Path, like: str | EncoderShape, sentences: Iterable[str], layers: int | None = None, seed: int = 0
) -> Path:
    """Write a random-weight encoder shaped like `like` (a name of `KNOWN_SHAPES`, or a shape) and its tokenizer to
    `directory`; `layers` keeps every other dimension and changes the depth only."""
    import torch
    from transformers import XLMRobertaModel

    if isinstance(like, str) and like not in KNOWN_SHAPES:
        raise XstiltsError(f"--like {like!r}: expected one of {', '.join(sorted(KNOWN_SHAPES))}")
    shape: EncoderShape = KNOWN_SHAPES[like] if isinstance(like, str) else like
    directory = Path(directory)
    tokenizer = shaped_tokenizer(sentences, shape.vocab, shape.positions - 2)
    config = xlmr_config(shape, layers)
    torch.manual_seed(seed)
    model = XLMRobertaModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
