"""Parallel-sentence files for retrieval: LASER Tatoeba pairs and BUCC 2018 mining files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts.errors import DataError


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_tatoeba_pair(source_path: str | Path, english_path: str | Path) -> list[dict[str, Any]]:
    """LASER release files: line i of the non-English file translates line i of the English one."""
    sources, english = _read_lines(Path(source_path)), _read_lines(Path(english_path))
    if len(sources) != len(english):
        raise DataError(source_path, f"{len(sources)} sentences but {len(english)} in {english_path}")
    return [{"source": s, "target": e, "target_index": i} for i, (s, e) in enumerate(zip(sources, english))]


def xtreme_sorted_layout(english: list[str]) -> tuple[list[str], list[int]]:
    """XTREME's Tatoeba layout: the English side sorted by text (a stable sort, so equal sentences keep
    their order) and, per sorted line, its original index: the non-English line that translates it.

    XTREME searches with every English sentence for its nearest non-English one, so these indices are
    the gold labels of its predictions file (one index per English line)."""
    order = sorted(range(len(english)), key=lambda i: english[i])
    return [english[i] for i in order], order


def read_bucc_sentences(path: str | Path) -> list[tuple[str, str]]:
    """`id<TAB>sentence` lines of a BUCC side."""
    path = Path(path)
    rows = []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(path, f"expected 'id<TAB>sentence', found {len(fields)} field(s)", number)
        rows.append((fields[0], fields[1]))
    return rows


def read_bucc_gold(path: str | Path) -> list[tuple[str, str]]:
    """`source_id<TAB>target_id` gold pairs."""
    return read_bucc_sentences(path)
