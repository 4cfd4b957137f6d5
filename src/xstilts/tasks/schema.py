"""What one example of each task kind looks like, checked without a model (the README's "Task files").

Readers, `xstilts data prepare/check`, `xstilts score` and the training data loader all validate records
here, so a malformed example gets the same message everywhere and checking data never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xstilts.tasks.registry import TaskSpec

Record = dict[str, Any]


def _classification(record: Record, spec: TaskSpec) -> str | None:
    """{"text_a": str, "text_b": str (optional), "label": one of the task's labels}"""
    if not isinstance(record.get("text_a"), str):
        return "expected a string field 'text_a'"
    if record.get("text_b") is not None and not isinstance(record["text_b"], str):
        return "field 'text_b' must be a string when present"
    if record.get("label") not in spec.labels:
        return f"field 'label' must be one of {list(spec.labels)}, got {record.get('label')!r}"
    return None


def _multiple_choice(record: Record, spec: TaskSpec) -> str | None:
    """{"context": str, "question": str (optional), "choices": [str, ...], "label": index of the right choice}"""
    if not isinstance(record.get("context"), str):
        return "expected a string field 'context'"
    if record.get("question") is not None and not isinstance(record["question"], str):
        return "field 'question' must be a string when present"
    choices = record.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        return "expected 'choices': a list of at least two strings"
    if spec.num_choices is not None and len(choices) != spec.num_choices:
        return f"expected {spec.num_choices} choices, got {len(choices)}"
    label = record.get("label")
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        return f"field 'label' must be the index of the correct choice (0..{len(choices) - 1}), got {label!r}"
    return None


def _qa(record: Record, spec: TaskSpec) -> str | None:
    """{"id": str, "question": str, "context": str, "answers": {"text": [str], "answer_start": [int]}};
    empty answer lists (no answer) only for tasks with `allow_no_answer`."""
    for key in ("id", "question", "context"):
        if not isinstance(record.get(key), str):
            return f"expected a string field {key!r}"
    answers = record.get("answers")
    if (
        not isinstance(answers, dict)
        or not isinstance(answers.get("text"), list)
        or not isinstance(answers.get("answer_start"), list)
    ):
        return 'expected \'answers\': {"text": [...], "answer_start": [...]}'
    if len(answers["text"]) != len(answers["answer_start"]):
        return "'answers' has different numbers of texts and starts"
    if not answers["text"] and not spec.allow_no_answer:
        return f"no answer given, and task {spec.name} does not allow unanswerable questions"
    context = record["context"]
    for text, start in zip(answers["text"], answers["answer_start"]):
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            return f"every answer needs a string text and an integer answer_start, got {text!r} at {start!r}"
        if not 0 <= start <= len(context) - len(text):
            return f"answer_start {start} of answer {text!r} lies outside the context (0..{len(context) - len(text)})"
        if context[start : start + len(text)] != text:
            return f"answer {text!r} is not found in the context at character {start}"
    return None


def _tagging(record: Record, spec: TaskSpec) -> str | None:
    """{"tokens": [str, ...], "tags": [one of the task's labels per token]}"""
    tokens, tags = record.get("tokens"), record.get("tags")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return "expected 'tokens': a list of strings"
    if not isinstance(tags, list) or len(tags) != len(tokens):
        return f"expected 'tags': one tag per token ({len(tokens)} tokens)"
    unknown = sorted({t for t in tags if t not in spec.labels})
    if unknown:
        return f"unknown tags {unknown}; expected tags from {list(spec.labels)}"
    return None


def _mlm(record: Record, spec: TaskSpec) -> str | None:
    """{"text": a non-empty str}"""
    if not isinstance(record.get("text"), str) or not record["text"].strip():
        return "expected a non-empty string field 'text'"
    return None


VALIDATORS: dict[str, Callable[[Record, TaskSpec], str | None]] = {
    "classification": _classification,
    "multiple_choice": _multiple_choice,
    "qa": _qa,
    "tagging": _tagging,
    "mlm": _mlm,
}


def validate_example(record: Record, spec: TaskSpec) -> str | None:
    """What is wrong with one record of `spec`, or None when it is well formed (retrieval records are
    checked by their own readers)."""
    validator = VALIDATORS.get(spec.kind)
    return validator(record, spec) if validator is not None else None
