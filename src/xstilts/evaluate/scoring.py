"""`xstilts score`: score predictions made anywhere against gold files, the way XTREME's scorers do.

Gold: the task's usual data file (SQuAD/MLQA JSON, XTREME TSV, word<TAB>tag, BUCC gold pairs), the prepared
`test-LANG.jsonl` a run reads, or an XTREME label file (one label per line; one tag per line with a blank line between sentences; one
index per line for Tatoeba). Predictions: XTREME's leaderboard formats ({"question id": "answer"}
JSON for QA; one label per line; one tag per line with blank lines between sentences; one index per
line for Tatoeba; `src_id<TAB>trg_id` pairs for BUCC).

Both files are validated completely before anything is scored: every gold line is well formed, labels
and tags belong to the task, line-aligned files have the same number of rows, and QA prediction ids
are matched against the gold question ids (missing and extra ids are counted and reported; none
matching is an error). A file is read in one format only: a gold file whose rows disagree on their
format is an error, never a fallback to another reading.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.errors import DataError, XstiltsError
from xstilts.files import read_lines, read_text
from xstilts.metrics.classification import accuracy
from xstilts.metrics.qa import mlqa_scores, score_answers
from xstilts.metrics.retrieval import bucc_scores_from_pairs, tatoeba_accuracy
from xstilts.metrics.tagging import seqeval_scores
from xstilts.metrics.xtreme import task_score
from xstilts.readers.conll import read_word_tag
from xstilts.readers.jsonl import read_jsonl
from xstilts.readers.retrieval import read_bucc_gold
from xstilts.readers.squad import read_squad_json
from xstilts.readers.tabular import read_rows
from xstilts.tasks.registry import TaskSpec
from xstilts.tasks.schema import validate_example

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """Metrics of one prediction file and how its predictions lined up with the gold examples."""

    metrics: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)


def _label_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, value) of a one-value-per-line file; a blank line inside it is an error, a final newline is not."""
    lines = [(number, line.strip()) for number, line in read_lines(path)]
    while lines and not lines[-1][1]:
        lines.pop()
    if not lines:
        raise DataError(path, f"no {what} in the file")
    blank = next((number for number, value in lines if not value), None)
    if blank is not None:
        raise DataError(path, f"blank line; expected one {what[:-1] if what.endswith('s') else what} per line", blank)
    return lines


def _prepared_records(path: Path, spec: TaskSpec) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) of a prepared `{split}-{lang}.jsonl` file (the layout runs read), each record validated."""
    records = list(read_jsonl(path))
    if not records:
        raise DataError(path, "no examples in the file")
    for line, record in records:
        problem = validate_example(record, spec)
        if problem:
            raise DataError(path, problem, line)
    return records


def read_gold_labels(path: Path, spec: TaskSpec | None = None) -> list[tuple[int, str]]:
    """(line, label) from a prepared JSONL file, an XTREME TSV (text_a, text_b, label on every row) or a
    one-label-per-line file. The format is decided by the suffix and the first row, and every row must follow it.
    """
    if path.suffix == ".jsonl" and spec is not None:
        return [(line, str(record["label"])) for line, record in _prepared_records(path, spec)]
    if "\t" not in _label_lines(path, "labels")[0][1]:
        return _label_lines(path, "labels")
    labels = []
    for line, row in read_rows(path):
        if len(row) != 3:
            raise DataError(
                path,
                f"expected 3 tab-separated fields (text_a, text_b, label) as on the first row, found {len(row)}",
                line,
            )
        labels.append((line, row[2]))
    return labels


def _check_labels(path: Path, labels: list[tuple[int, str]], spec: TaskSpec) -> None:
    for line, label in labels:
        if label not in spec.labels:
            raise DataError(path, f"unknown label {label!r} for {spec.name}; expected one of {list(spec.labels)}", line)


def _aligned(gold_path: Path, gold_count: int, predictions_path: Path, predicted_count: int, what: str) -> None:
    if gold_count != predicted_count:
        difference = (
            f"{gold_count - predicted_count} missing"
            if predicted_count < gold_count
            else f"{predicted_count - gold_count} extra"
        )
        raise XstiltsError(
            f"{predictions_path}: {predicted_count} {what} for {gold_count} in {gold_path} ({difference}); the files must be line-aligned"
        )


def read_gold_tags(path: Path, spec: TaskSpec | None = None) -> list[list[str]]:
    """Gold tags from a prepared JSONL file, word<TAB>tag files or a tag-per-line file (blank line between sentences)."""
    if path.suffix == ".jsonl" and spec is not None:
        return [record["tags"] for _, record in _prepared_records(path, spec)]
    first = next((line for _, line in read_lines(path) if line.strip()), None)
    if first is None:
        raise DataError(path, "no sentences in the file")
    if "\t" in first:
        return [s["tags"] for s in read_word_tag(path)]
    return read_prediction_tags(path)


def read_prediction_tags(path: Path) -> list[list[str]]:
    """One tag per line, a blank line between sentences; a line with a tab is not a tag line."""
    sentences = [s["tokens"] for s in read_word_tag(path, labelled=False)]
    if not sentences:
        raise DataError(path, "no sentences in the file")
    for number, line in read_lines(path):
        if "\t" in line:
            raise DataError(path, "expected one tag per line (no tab), as on the first line", number)
    return sentences


def _check_tags(path: Path, sentences: list[list[str]], spec: TaskSpec) -> None:
    unknown = next((tag for sentence in sentences for tag in sentence if tag not in spec.labels), None)
    if unknown is not None:
        line = next((number for number, text in read_lines(path) if text.split("\t")[-1].strip() == unknown), None)
        raise DataError(path, f"unknown tag {unknown!r} for {spec.name}; expected one of {list(spec.labels)}", line)


def read_qa_predictions(path: Path) -> dict[str, str]:
    try:
        predictions = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", error.lineno) from None
    if not isinstance(predictions, dict):
        raise DataError(path, 'expected a JSON object {"question id": "answer text", ...}')
    wrong = next((key for key, value in predictions.items() if not isinstance(value, str)), None)
    if wrong is not None:
        raise DataError(path, f"the answer of question {wrong!r} is not a string")
    return predictions


def _score_qa(spec: TaskSpec, language: str, gold_path: Path, predictions_path: Path) -> Scored:
    records = (
        [record for _, record in _prepared_records(gold_path, spec)]
        if gold_path.suffix == ".jsonl"
        else read_squad_json(gold_path)
    )
    for record in records:
        problem = validate_example(record, spec)
        if problem:
            raise DataError(gold_path, f"question {record['id']!r}: {problem}")
    predictions = read_qa_predictions(predictions_path)
    gold_ids = {r["id"] for r in records}
    matched = gold_ids & predictions.keys()
    if not matched:
        raise XstiltsError(
            f"{predictions_path}: none of its {len(predictions)} question ids is a question of {gold_path} "
            f"(first prediction id {next(iter(predictions), None)!r}, first gold id {records[0]['id']!r}); is it the right file?"
        )
    counts = {
        "gold": len(gold_ids),
        "predicted": len(predictions),
        "matched": len(matched),
        "missing": len(gold_ids - matched),
        "extra": len(predictions.keys() - gold_ids),
    }
    if counts["missing"] or counts["extra"]:
        log.warning(
            "%s: %d of %d questions have no prediction (scored 0); %d predictions are for unknown ids (ignored)",
            predictions_path,
            counts["missing"],
            counts["gold"],
            counts["extra"],
        )
    # Every gold question counts, looked up by id as the official scripts do (repeated ids share a prediction).
    answers = [predictions.get(r["id"]) for r in records]
    golds = [r["answers"]["text"] for r in records]
    metrics = mlqa_scores(answers, golds, language) if spec.metric == "mlqa" else score_answers(answers, golds)
    return Scored(metrics, counts)


def _score_classification(spec: TaskSpec, gold_path: Path, predictions_path: Path) -> Scored:
    golds, predicted = read_gold_labels(gold_path, spec), _label_lines(predictions_path, "labels")
    _check_labels(gold_path, golds, spec)
    _check_labels(predictions_path, predicted, spec)
    _aligned(gold_path, len(golds), predictions_path, len(predicted), "predictions")
    return Scored(
        accuracy([p for _, p in predicted], [g for _, g in golds]), {"gold": len(golds), "predicted": len(predicted)}
    )


def _score_tagging(spec: TaskSpec, gold_path: Path, predictions_path: Path) -> Scored:
    golds, predicted = read_gold_tags(gold_path, spec), read_prediction_tags(predictions_path)
    _check_tags(gold_path, golds, spec)
    _check_tags(predictions_path, predicted, spec)
    _aligned(gold_path, len(golds), predictions_path, len(predicted), "predicted sentences")
    try:
        metrics = seqeval_scores(predicted, golds)
    except ValueError as error:
        raise XstiltsError(f"{predictions_path} against {gold_path}: {error}") from None
    return Scored(metrics, {"gold": len(golds), "predicted": len(predicted)})


def _indices(path: Path) -> list[int]:
    values = []
    for number, text in _label_lines(path, "indices"):
        if not text.isdigit():
            raise DataError(path, f"expected a non-negative sentence index, found {text!r}", number)
        values.append(int(text))
    return values


def _score_tatoeba(gold_path: Path, predictions_path: Path) -> Scored:
    golds, predicted = _indices(gold_path), _indices(predictions_path)
    _aligned(gold_path, len(golds), predictions_path, len(predicted), "predicted indices")
    return Scored({"accuracy": tatoeba_accuracy(predicted, golds)}, {"gold": len(golds), "predicted": len(predicted)})


def _score_bucc(gold_path: Path, predictions_path: Path) -> Scored:
    gold, predicted = set(read_bucc_gold(gold_path)), set(read_bucc_gold(predictions_path))
    return Scored(
        bucc_scores_from_pairs(predicted, gold),
        {"gold": len(gold), "predicted": len(predicted), "matched": len(gold & predicted)},
    )


def check_and_score(spec: TaskSpec, language: str, gold_path: Path, predictions_path: Path) -> Scored:
    """Validate a gold file and a predictions file completely, then score them."""
    gold_path, predictions_path = Path(gold_path), Path(predictions_path)
    if spec.kind == "qa":
        return _score_qa(spec, language, gold_path, predictions_path)
    if spec.kind == "classification":
        return _score_classification(spec, gold_path, predictions_path)
    if spec.kind == "tagging":
        return _score_tagging(spec, gold_path, predictions_path)
    if spec.name == "tatoeba":
        return _score_tatoeba(gold_path, predictions_path)
    if spec.name == "bucc2018":
        return _score_bucc(gold_path, predictions_path)
    raise XstiltsError(f"{spec.name}: scoring {spec.kind} predictions is not supported here")


def score_file(spec: TaskSpec, language: str, gold_path: Path, predictions_path: Path) -> dict[str, float]:
    """Metrics for one language of `spec` from a gold file and a predictions file."""
    return check_and_score(spec, language, gold_path, predictions_path).metrics


def _language_file(directory: Path, language: str) -> Path | None:
    matches = sorted(p for p in directory.glob(f"test-{language}.*") if p.is_file())
    if len(matches) > 1:
        raise XstiltsError(
            f"{directory}: several files for {language} ({', '.join(p.name for p in matches)}); keep one test-{language}.* file"
        )
    return matches[0] if matches else None


def score_directories(spec: TaskSpec, gold_dir: Path, predictions_dir: Path) -> dict[str, Any]:
    """Every language of the task with `test-LANG.*` in both directories, and the XTREME-style average."""
    for directory in (gold_dir, predictions_dir):
        if not Path(directory).is_dir():
            raise XstiltsError(f"{directory}: not a directory")
    per_language: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    missing = []
    for language in spec.languages:
        gold, predictions = _language_file(gold_dir, language), _language_file(predictions_dir, language)
        if gold and predictions:
            scored = check_and_score(spec, language, gold, predictions)
            per_language[language], counts[language] = scored.metrics, scored.counts
        elif gold or predictions:
            missing.append(language)
            log.warning(
                "%s: %s file only in %s; not scored", spec.name, language, gold_dir if gold else predictions_dir
            )
        else:
            missing.append(language)
    if not per_language:
        raise XstiltsError(f"no language of {spec.name} has test-LANG.* files in both {gold_dir} and {predictions_dir}")
    known = {f"test-{language}" for language in spec.languages}
    ignored = sorted(
        p.name
        for directory in (gold_dir, predictions_dir)
        for p in Path(directory).glob("test-*.*")
        if p.name.split(".")[0] not in known
    )
    if ignored:
        log.warning(
            "%s: files for languages %s does not have were ignored: %s", spec.name, spec.name, ", ".join(ignored)
        )
    return {
        "task": spec.name,
        "languages": per_language,
        "average": task_score(per_language, spec.metric),
        "missing_languages": missing,
        "predictions": counts,
        "ignored_files": ignored,
    }
