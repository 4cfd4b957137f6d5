"""Parallel-sentence files for retrieval: LASER Tatoeba pairs and BUCC 2018 mining files."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from xstilts.errors import DataError, DataWarning
from xstilts.files import read_lines


def _read_lines(path: Path) -> list[str]:
    lines = [line for _, line in read_lines(path)]
    if not lines:
        raise DataError(path, "no sentences in the file")
    return lines


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
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(path, f"expected 'id<TAB>sentence', found {len(fields)} field(s)", number)
        if fields[0] in first_line:
            warnings.warn(
                DataWarning(path, f"id {fields[0]!r} appears again (first at line {first_line[fields[0]]})", number),
                stacklevel=2,
            )
        first_line.setdefault(fields[0], number)
        rows.append((fields[0], fields[1]))
    return rows


def read_bucc_gold(path: str | Path) -> list[tuple[str, str]]:
    """`source_id<TAB>target_id` gold pairs."""
    path = Path(path)
    pairs = []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2 or not all(fields):
            raise DataError(path, f"expected 'source_id<TAB>target_id', found {line!r}", number)
        pairs.append((fields[0], fields[1]))
    return pairs


def warn_unknown_gold_ids(
    gold_path: Path, gold: list[tuple[str, str]], source_ids: set[str], target_ids: set[str]
) -> None:
    """Gold pairs naming a sentence that is not in the sentence files can never be mined: say so."""
    unknown = [
        (number, pair)
        for number, pair in enumerate(gold, start=1)
        if pair[0] not in source_ids or pair[1] not in target_ids
    ]
    if unknown:
        number, pair = unknown[0]
        warnings.warn(
            DataWarning(
                gold_path,
                f"{len(unknown)} gold pair(s) name ids missing from the sentence files, first {pair[0]!r} -> {pair[1]!r}",
                number,
            ),
            stacklevel=2,
        )
