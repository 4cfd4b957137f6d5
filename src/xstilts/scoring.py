"""`xstilts score`: score predictions made anywhere against gold files, the way XTREME's scorers do.

Gold: the task's usual data file (SQuAD/MLQA JSON, XTREME TSV, word<TAB>tag, BUCC gold pairs) or an
XTREME label file (one label per line; one tag per line with a blank line between sentences; one
index per line for Tatoeba). Predictions: XTREME's leaderboard formats ({"question id": "answer"}
JSON for QA; one label per line; one tag per line with blank lines between sentences; one index per
line for Tatoeba; `src_id<TAB>trg_id` pairs for BUCC).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xstilts.errors import DataError, XstiltsError
from xstilts.metrics.classification import accuracy
from xstilts.metrics.qa import mlqa_scores, score_answers
from xstilts.metrics.tagging import seqeval_scores
from xstilts.metrics.xtreme import task_score
from xstilts.readers.conll import read_word_tag
from xstilts.readers.squad import read_squad_json
from xstilts.readers.tabular import read_rows
from xstilts.retrieval import bucc_scores_from_pairs, tatoeba_accuracy
from xstilts.tasks.registry import TaskSpec


def _read_label_lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def read_gold_labels(path: Path) -> list[str]:
    """Gold labels from an XTREME TSV (the last of 3 fields) or a one-label-per-line file."""
    rows = list(read_rows(path))
    if rows and all(len(row) >= 3 for _, row in rows):
        return [row[2] for _, row in rows]
    return _read_label_lines(path)


def read_gold_tags(path: Path) -> list[list[str]]:
    """Gold tags from word<TAB>tag files or a tag-per-line file (blank line between sentences)."""
    first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    if "\t" in first:
        return [s["tags"] for s in read_word_tag(path)]
    return [s["tokens"] for s in read_word_tag(path, labelled=False)]


def read_prediction_tags(path: Path) -> list[list[str]]:
    return [s["tokens"] for s in read_word_tag(path, labelled=False)]


def read_qa_predictions(path: Path) -> dict[str, str]:
    try:
        predictions = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", error.lineno) from None
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise DataError(path, 'expected a JSON object {"question id": "answer text", ...}')
    return predictions


def score_file(spec: TaskSpec, language: str, gold_path: Path, predictions_path: Path) -> dict[str, float]:
    """Metrics for one language of `spec` from a gold file and a predictions file."""
    if spec.kind == "qa":
        records = read_squad_json(gold_path)
        predictions = read_qa_predictions(predictions_path)
        # Every gold question counts, looked up by id as the official scripts do (repeated ids share a prediction).
        answers = [predictions.get(r["id"]) for r in records]
        golds = [r["answers"]["text"] for r in records]
        return mlqa_scores(answers, golds, language) if spec.metric == "mlqa" else score_answers(answers, golds)
    if spec.kind == "classification":
        golds, predicted = read_gold_labels(gold_path), _read_label_lines(predictions_path)
        if len(golds) != len(predicted):
            raise XstiltsError(f"{predictions_path}: {len(predicted)} predictions for {len(golds)} gold labels in {gold_path}")
        return accuracy(predicted, golds)
    if spec.kind == "tagging":
        golds, predicted = read_gold_tags(gold_path), read_prediction_tags(predictions_path)
        try:
            return seqeval_scores(predicted, golds)
        except ValueError as error:
            raise XstiltsError(f"{predictions_path} against {gold_path}: {error}") from None
    if spec.name == "tatoeba":
        golds, predicted = _read_label_lines(gold_path), _read_label_lines(predictions_path)
        if len(golds) != len(predicted):
            raise XstiltsError(f"{predictions_path}: {len(predicted)} predicted indices for {len(golds)} gold labels in {gold_path}")
        return {"accuracy": tatoeba_accuracy([int(p) for p in predicted], [int(g) for g in golds])}
    if spec.name == "bucc2018":
        return bucc_scores_from_pairs(_read_pairs(predictions_path), _read_pairs(gold_path))
    raise XstiltsError(f"{spec.name}: scoring {spec.kind} predictions is not supported here")


def _read_pairs(path: Path) -> set[tuple[str, str]]:
    """`source_id<TAB>target_id` lines (BUCC gold files and XTREME's BUCC predictions)."""
    pairs = set()
    for number, line in enumerate(_read_label_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(path, "expected 'source_id<TAB>target_id'", number)
        pairs.add((fields[0], fields[1]))
    return pairs


def score_directories(spec: TaskSpec, gold_dir: Path, predictions_dir: Path) -> dict[str, Any]:
    """Every language of the task with `test-LANG.*` in both directories, and the XTREME-style average."""
    per_language: dict[str, dict[str, float]] = {}
    for language in spec.languages:
        golds = sorted(gold_dir.glob(f"test-{language}.*"))
        predictions = sorted(predictions_dir.glob(f"test-{language}.*"))
        if golds and predictions:
            per_language[language] = score_file(spec, language, golds[0], predictions[0])
    if not per_language:
        raise XstiltsError(f"no language of {spec.name} has test-LANG.* files in both {gold_dir} and {predictions_dir}")
    missing = [lang for lang in spec.languages if lang not in per_language]
    return {"task": spec.name, "languages": per_language, "average": task_score(per_language, spec.metric), "missing_languages": missing}
