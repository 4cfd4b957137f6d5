"""Examples and features for one (task, split, language): read, validate, tokenise.

This is the one place where a task's files become model inputs, so caching of tokenised features
(keyed by tokenizer, settings and data fingerprint) belongs here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from xstilts.errors import DataError
from xstilts.readers.jsonl import read_jsonl
from xstilts.settings import TrainingSettings
from xstilts.tasks import kind_of
from xstilts.tasks.base import Example, Feature
from xstilts.tasks.registry import TaskSpec


def load_examples(spec: TaskSpec, split: str, language: str, limit: int | None = None) -> list[Example]:
    """The validated examples of one split and language, in file order (at most `limit`)."""
    path = spec.data.path(split, language)
    if not path.is_file():
        raise DataError(path, f"no {split} file for task {spec.name}, language {language}")
    kind = kind_of(spec)
    examples: list[Example] = []
    for line_number, record in read_jsonl(path):
        problem = kind.validate_example(record, spec)
        if problem:
            raise DataError(path, problem, line_number)
        examples.append(record)
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise DataError(path, "no examples")
    return examples


def build_features(spec: TaskSpec, examples: list[Example], tokenizer: Any, settings: TrainingSettings, training: bool) -> list[Feature]:
    return kind_of(spec).build_features(examples, tokenizer, spec, settings, training)


def data_fingerprint(spec: TaskSpec, splits_languages: list[tuple[str, str]]) -> str:
    """sha256 over the bytes of the files a stage reads: changed data means a different stage."""
    digest = hashlib.sha256()
    for split, language in splits_languages:
        path: Path = spec.data.path(split, language)
        digest.update(f"{split}/{language}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
