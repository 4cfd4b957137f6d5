"""Word-per-line formats: UD CoNLL-U, XTREME's `word<TAB>tag` files, raw PAN-X, CCG supertags.

UD follows XTREME's conversion (ud-conversion-tools' conllu_to_conll with fused forms, then
utils_preprocess.udpos_preprocess): a multiword token replaces its words with its surface form
("zum" stays one word) and takes the UPOS of the word closest to the sentence root, ties broken by
a POS precedence list; spaces and zero-width non-joiners inside words are deleted; sentences whose
words are (nearly) all "_" are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xstilts.errors import DataError
from xstilts.files import read_lines

# ud-conversion-tools' precedence lists (conllu_to_conll.py), by language; "default" for all others.
POS_PRECEDENCE = {
    "default": "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT".split(),
    "es": "VERB AUX PRON ADP DET".split(),
    "fr": "VERB AUX PRON NOUN ADJ ADV ADP DET PART SCONJ CONJ".split(),
    "it": "VERB AUX ADV PRON ADP DET INTJ".split(),
}


def _blocks(path: Path) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """Blank-line separated blocks of (line number, line)."""
    block: list[tuple[int, str]] = []
    for number, line in read_lines(path):
        if line.strip():
            block.append((number, line))
        elif block:
            yield block[0][0], block
            block = []
    if block:
        yield block[0][0], block


def read_conllu_upos(path: str | Path, language: str = "default") -> list[dict[str, Any]]:
    """Sentences of a CoNLL-U file as {"tokens", "tags"} with XTREME's multiword-token handling."""
    path = Path(path)
    precedence = POS_PRECEDENCE.get(language, POS_PRECEDENCE["default"])
    sentences = []
    for _, block in _blocks(path):
        words: dict[int, tuple[str, str, int]] = {}  # id -> (form, upos, head)
        multiword: list[tuple[int, int, str]] = []
        for number, line in block:
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise DataError(path, f"expected 10 tab-separated CoNLL-U fields, found {len(fields)}", number)
            token_id = fields[0]
            if "." in token_id:  # empty nodes of enhanced dependencies
                continue
            if "-" in token_id:
                first, last = (int(x) for x in token_id.split("-"))
                multiword.append((first, last, fields[1]))
                continue
            try:
                words[int(token_id)] = (fields[1], fields[3], int(fields[6]) if fields[6] != "_" else 0)
            except ValueError:
                raise DataError(path, f"invalid token id {token_id!r} or head {fields[6]!r}", number) from None
        tokens, tags = _fuse(words, multiword, precedence)
        empty = sum(token == "_" for token in tokens)
        if tokens and not (empty == 0 or empty < len(tokens) - 1):
            continue
        tokens = ["".join(token.replace("\u200c", "").split(" ")) for token in tokens]
        sentences.append({"tokens": tokens, "tags": tags})
    return sentences


def _depth(word_id: int, words: dict[int, tuple[str, str, int]]) -> int:
    depth, seen = 0, set()
    while word_id in words and word_id not in seen:
        seen.add(word_id)
        word_id = words[word_id][2]
        depth += 1
    return depth


def _fuse(
    words: dict[int, tuple[str, str, int]], multiword: list[tuple[int, int, str]], precedence: list[str]
) -> tuple[list[str], list[str]]:
    """Replace each multiword span by its surface form with the UPOS of its head word."""
    span_of = {i: (first, last, form) for first, last, form in multiword for i in range(first, last + 1)}
    tokens, tags = [], []
    for word_id in sorted(words):
        if word_id not in span_of:
            tokens.append(words[word_id][0])
            tags.append(words[word_id][1])
            continue
        first, last, form = span_of[word_id]
        if word_id != first:
            continue
        span = [i for i in range(first, last + 1) if i in words]
        depths = [_depth(i, words) for i in span]
        highest = [i for i, d in zip(span, depths) if d == min(depths)]
        rank = lambda i: precedence.index(words[i][1]) if words[i][1] in precedence else len(precedence)  # noqa: E731
        head = highest[0] if len(highest) == 1 else min(highest, key=rank)
        tokens.append(form)
        tags.append(words[head][1])
    return tokens, tags


def read_word_tag(path: str | Path, labelled: bool = True, strip_language_prefix: bool = False) -> list[dict[str, Any]]:
    """`word<TAB>tag` lines, a blank line between sentences (XTREME's UD-POS and PAN-X files).

    With `strip_language_prefix`, tokens look like raw PAN-X's `af:word`: everything up to the first
    colon goes (tokens may themselves contain colons). Unlabelled files have the word alone.
    """
    path = Path(path)
    sentences = []
    for _, block in _blocks(path):
        tokens, tags = [], []
        for number, line in block:
            fields = line.split("\t")
            if labelled and len(fields) != 2:
                raise DataError(path, f"expected 'word<TAB>tag', found {len(fields)} field(s)", number)
            token = fields[0]
            if strip_language_prefix:
                colon = token.find(":")
                if colon < 0:
                    raise DataError(path, f"expected a 'lang:token' prefix, found {token!r}", number)
                token = token[colon + 1 :]
            tokens.append(token.strip())
            if labelled:
                tags.append(fields[1].strip())
        sentences.append({"tokens": tokens, "tags": tags} if labelled else {"tokens": tokens})
    return sentences


_AUTO_LEAF = re.compile(r"\(<L (\S+) (\S+) (\S+) (\S+) (\S+)>\)")


def read_ccg(path: str | Path) -> list[dict[str, Any]]:
    """CCG supertags from CCGbank AUTO files (`(<L category POS POS word ...>)` leaves), or from
    `word<TAB>supertag` lines with blank lines between sentences."""
    path = Path(path)
    first = next((line for _, line in read_lines(path) if line.strip()), "")
    if not first.startswith("ID="):
        return read_word_tag(path)
    sentences = []
    for number, line in read_lines(path):
        if not line.strip() or line.startswith("ID="):
            continue
        leaves = _AUTO_LEAF.findall(line)
        if not leaves:
            raise DataError(path, "expected a CCGbank AUTO derivation with (<L ...>) leaves", number)
        sentences.append({"tokens": [leaf[3] for leaf in leaves], "tags": [leaf[0] for leaf in leaves]})
    return sentences
