"""Examples and features for one (task, split, language): read, validate, tokenise.

This is the one place where a task's files become model inputs, so caching of tokenised features
(keyed by tokenizer, settings and data fingerprint) belongs here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from xstilts.data.cache import cached, tokenizer_fingerprint
from xstilts.errors import DataError
from xstilts.readers.jsonl import read_jsonl
from xstilts.readers.text import read_text_examples
from xstilts.settings import TrainingSettings
from xstilts.tasks import kind_of
from xstilts.tasks.registry import TaskSpec
from xstilts.tasks.schema import validate_example

Example = dict[str, Any]
Feature = dict[str, Any]

# Bump when a kind's feature conversion changes, so cached features from older code are not reused.
FEATURES_VERSION = 4


def load_examples(spec: TaskSpec, split: str, language: str, limit: int | None = None) -> list[Example]:
    """The validated examples of one split and language, in file order (at most `limit`)."""
    path = spec.data.path(split, language)
    if not path.is_file():
        raise DataError(path, f"no {split} file for task {spec.name}, language {language}")
    examples: list[Example] = []
    records = read_text_examples(path) if path.suffix == ".txt" else read_jsonl(path)
    for line_number, record in records:
        problem = validate_example(record, spec)
        if problem:
            raise DataError(path, problem, line_number)
        examples.append(record)
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise DataError(path, "no examples")
    return examples


def build_features(
    spec: TaskSpec, examples: list[Example], tokenizer: Any, settings: TrainingSettings, training: bool
) -> list[Feature]:
    """Tokenised features, from the feature cache when the same tokenizer has seen the same examples
    with the same length settings (set XSTILTS_FEATURE_CACHE=0 to always tokenise)."""
    build = lambda: kind_of(spec).build_features(examples, tokenizer, spec, settings, training)  # noqa: E731
    if os.environ.get("XSTILTS_FEATURE_CACHE", "1") == "0":
        return build()
    key = {
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "task": spec.fingerprint(),
        "lengths": [settings.max_length, *((settings.doc_stride, settings.qa_windows) if spec.kind == "qa" else ())],
        "training": training,
        "examples": hashlib.sha256(json.dumps(examples, sort_keys=True, ensure_ascii=False).encode()).hexdigest(),
        "version": FEATURES_VERSION,
    }
    return cached(key, build)


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


def example_text(example: dict[str, Any]) -> str:
    """The text of an example of any kind as one string (latency inputs and diagnostic probe sentences)."""
    parts = [example.get(key) for key in ("text_a", "text_b", "question", "context")] + [
        " ".join(example.get("tokens", []))
    ]
    return " ".join(part for part in parts if isinstance(part, str) and part)
