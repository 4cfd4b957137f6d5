"""Delimited text: XTREME's preprocessed TSVs, the XNLI and PAWS-X releases, GLUE TSVs, Cosmos QA CSV.

XTREME wrote its TSVs with Python's csv writer, so a field containing a quote is itself quoted:
they must be read with a csv reader, never with str.split (docs/protocol.md section 6).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xstilts.errors import DataError, DataWarning
from xstilts.files import decoded_lines

csv.field_size_limit(1 << 26)


def read_rows(
    path: str | Path, delimiter: str = "\t", quoting: int = csv.QUOTE_MINIMAL
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for every non-empty row; the line number is where the row starts."""
    path = Path(path)
    reader = csv.reader(decoded_lines(path), delimiter=delimiter, quoting=quoting)
    line = 1
    try:
        for row in reader:
            if row:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        raise DataError(path, f"malformed row ({error})", line) from None


def read_header_rows(
    path: str | Path, required: Sequence[str], delimiter: str = "\t", quoting: int = csv.QUOTE_MINIMAL
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a file with a header line, as dicts; fails early if a required column is missing."""
    rows = read_rows(path, delimiter, quoting)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(path, "empty file") from None
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(path, f"missing columns {missing} in the header; found {header}", 1)
    for line, row in rows:
        if len(row) < len(header):
            raise DataError(path, f"expected {len(header)} fields, found {len(row)}", line)
        yield line, dict(zip(header, row))


def read_xtreme_pairs(path: str | Path, labelled: bool = True) -> list[dict[str, Any]]:
    """XTREME's XNLI / PAWS-X files: `text_a<TAB>text_b[<TAB>label]`, csv-quoted."""
    records = []
    expected = 3 if labelled else 2
    extra = 0
    for line, row in read_rows(path):
        if len(row) < expected:
            raise DataError(path, f"expected {expected} tab-separated fields, found {len(row)}", line)
        if len(row) > expected and not extra:
            extra = line
        record = {"text_a": row[0], "text_b": row[1]}
        if labelled:
            record["label"] = row[2]
        records.append(record)
    if extra:
        warnings.warn(
            DataWarning(
                path,
                f"more than {expected} tab-separated fields (first at this line); the extra fields are ignored",
                extra,
            ),
            stacklevel=2,
        )
    return records


def read_xnli_release(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The XNLI 1.0 release (`xnli.dev.tsv`, `xnli.test.tsv`): all languages in one file, split by language.

    Unquoted TSV (quotes are literal); "contradictory" is normalised to "contradiction" as XTREME does.
    """
    by_language: dict[str, list[dict[str, Any]]] = {}
    for _, row in read_header_rows(path, ["language", "gold_label", "sentence1", "sentence2"], quoting=csv.QUOTE_NONE):
        label = "contradiction" if row["gold_label"] == "contradictory" else row["gold_label"]
        by_language.setdefault(row["language"], []).append(
            {"text_a": row["sentence1"], "text_b": row["sentence2"], "label": label}
        )
    return by_language


def read_pawsx_release(path: str | Path) -> list[dict[str, Any]]:
    """A PAWS-X release file (`id sentence1 sentence2 label`, with a header; unquoted)."""
    return [
        {"text_a": row["sentence1"], "text_b": row["sentence2"], "label": row["label"]}
        for _, row in read_header_rows(path, ["sentence1", "sentence2", "label"], quoting=csv.QUOTE_NONE)
    ]


NLI_LABELS = ("entailment", "neutral", "contradiction")


def read_glue_nli(path: str | Path) -> list[dict[str, Any]]:
    """MNLI or SNLI in the GLUE/original TSV layout (sentence1, sentence2, gold_label); rows without a gold label ('-') are dropped."""
    records = []
    for line, row in read_header_rows(path, ["sentence1", "sentence2", "gold_label"], quoting=csv.QUOTE_NONE):
        if row["gold_label"] == "-":
            continue
        if row["gold_label"] not in NLI_LABELS:
            raise DataError(
                path, f"unknown gold_label {row['gold_label']!r}; expected one of {list(NLI_LABELS)} or '-'", line
            )
        records.append({"text_a": row["sentence1"], "text_b": row["sentence2"], "label": row["gold_label"]})
    return records


QQP_LABELS = ("not_duplicate", "duplicate")


def read_qqp(path: str | Path) -> list[dict[str, Any]]:
    """GLUE QQP TSV (question1, question2, is_duplicate)."""
    records = []
    for line, row in read_header_rows(path, ["question1", "question2", "is_duplicate"], quoting=csv.QUOTE_NONE):
        if row["is_duplicate"] not in ("0", "1"):
            raise DataError(path, f"is_duplicate must be 0 or 1, got {row['is_duplicate']!r}", line)
        records.append(
            {"text_a": row["question1"], "text_b": row["question2"], "label": QQP_LABELS[int(row["is_duplicate"])]}
        )
    return records


def read_cosmosqa_csv(path: str | Path) -> list[dict[str, Any]]:
    """Cosmos QA's CSV (id, context, question, answer0..answer3, label); the test set has no label column."""
    records = []
    columns = ["context", "question", "answer0", "answer1", "answer2", "answer3"]
    for line, row in read_header_rows(path, columns, delimiter=","):
        record: dict[str, Any] = {
            "id": row.get("id", str(line)),
            "context": row["context"],
            "question": row["question"],
            "choices": [row[f"answer{i}"] for i in range(4)],
        }
        if "label" in row:
            if row["label"] not in ("0", "1", "2", "3"):
                raise DataError(path, f"label must be 0-3, got {row['label']!r}", line)
            record["label"] = int(row["label"])
        records.append(record)
    return records
