"""JSON Lines: one JSON object per line (the canonical format of local task files and demo data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xstilts.errors import DataError
from xstilts.files import atomic_writer, json_text, read_lines


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line."""
    path = Path(path)
    for line_number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"invalid JSON ({error.msg}, column {error.colno})", line_number) from None
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line_number)
        yield line_number, record


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """One strict-JSON object per line, written aside and renamed into place."""
    with atomic_writer(Path(path)) as handle:
        for record in records:
            handle.write(json_text(record, indent=None) + "\n")


NLI_LABELS = ("entailment", "neutral", "contradiction")
_ANLI_LABELS = {"e": "entailment", "n": "neutral", "c": "contradiction"}


def read_nli_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """MNLI / SNLI jsonl (sentence1, sentence2, gold_label; '-' has no gold label and is dropped) or
    ANLI jsonl (context, hypothesis, label in e/n/c)."""
    records = []
    for line, record in read_jsonl(path):
        if "context" in record and "hypothesis" in record:
            label = _ANLI_LABELS.get(record.get("label"))
            if label is None:
                raise DataError(path, f"ANLI label must be one of e, n, c; got {record.get('label')!r}", line)
            records.append({"text_a": record["context"], "text_b": record["hypothesis"], "label": label})
            continue
        if not {"sentence1", "sentence2", "gold_label"} <= record.keys():
            raise DataError(
                path,
                "expected sentence1, sentence2 and gold_label (MNLI/SNLI) or context, hypothesis and label (ANLI)",
                line,
            )
        if record["gold_label"] == "-":
            continue
        if record["gold_label"] not in NLI_LABELS:
            raise DataError(path, f"unknown gold_label {record['gold_label']!r}", line)
        records.append({"text_a": record["sentence1"], "text_b": record["sentence2"], "label": record["gold_label"]})
    return records


def read_hellaswag_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """HellaSwag jsonl: context ctx_a, endings prefixed by ctx_b, label index (absent in test)."""
    records = []
    for line, record in read_jsonl(path):
        if not isinstance(record.get("ctx_a"), str) or not isinstance(record.get("endings"), list):
            raise DataError(path, "expected 'ctx_a' and a list of 'endings'", line)
        prefix = record.get("ctx_b", "")
        out: dict[str, Any] = {
            "context": record["ctx_a"],
            "choices": [f"{prefix} {ending}".strip() for ending in record["endings"]],
        }
        if "label" in record:
            out["label"] = int(record["label"])
        records.append(out)
    return records


def read_commonsenseqa_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """CommonsenseQA jsonl: question.stem, question.choices [{label, text}], answerKey (absent in test).

    There is no passage: the question is the context and each choice is scored after it.
    """
    records = []
    for line, record in read_jsonl(path):
        question = record.get("question")
        if not isinstance(question, dict) or not isinstance(question.get("choices"), list):
            raise DataError(path, "expected 'question' with 'stem' and 'choices'", line)
        letters = [choice["label"] for choice in question["choices"]]
        out: dict[str, Any] = {
            "id": record.get("id", str(line)),
            "context": question["stem"],
            "choices": [c["text"] for c in question["choices"]],
        }
        if "answerKey" in record:
            if record["answerKey"] not in letters:
                raise DataError(
                    path, f"answerKey {record['answerKey']!r} is not one of the choice labels {letters}", line
                )
            out["label"] = letters.index(record["answerKey"])
        records.append(out)
    return records
