"""A few examples of every file a study reads, for a rehearsal (`xstilts run --rehearse`).

A file that is on disk gives its first examples, in the same reader's format; a file that is missing gets
stand-ins: examples in the task kind's schema (labels from the task's label set, answers that are spans of their
contexts), long enough to fill the stage's max_length, so that every stage and evaluation runs at its real shapes.
What was missing is returned, so the rehearsal lists it: a stand-in only shows that the code after the data works.
Retrieval files are read in place in their upstream layouts: their first lines are copied (with BUCC's gold pairs
among them); a missing retrieval language has no stand-in and is left out.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xstilts.files import write_text_atomic
from xstilts.readers.jsonl import write_jsonl
from xstilts.tasks.registry import TaskSpec
from xstilts.tasks.schema import validate_example

STAND_IN_TAGS = ("N", "NP", "S\\NP", "(S\\NP)/NP", "NP/N")  # an open label set (CCG) with no labels.txt


@dataclass(frozen=True)
class SampledFile:
    """One file of the rehearsal's data: which task, split and language, and whether it was there."""

    task: str
    split: str
    language: str
    found: bool


def _words(sentences: list[str], rng: random.Random, count: int) -> list[str]:
    words = [w for s in rng.sample(sentences, min(len(sentences), 64)) for w in s.split()] or ["text"]
    return [words[i % len(words)] for i in range(count)]


def stand_in_examples(
    spec: TaskSpec, count: int, sentences: list[str], words: int, seed: int = 0
) -> list[dict[str, Any]]:
    """`count` examples of `spec`'s kind whose texts run to about `words` words each (validated by the schema)."""
    rng = random.Random(seed)
    examples = [_stand_in(spec, index, rng, sentences, words) for index in range(count)]
    for example in examples:
        problem = validate_example(example, spec)
        if problem:  # a kind this module does not know how to stand in for
            raise ValueError(f"stand-in for {spec.name} ({spec.kind}): {problem}")
    return examples


def _stand_in(spec: TaskSpec, index: int, rng: random.Random, sentences: list[str], words: int) -> dict[str, Any]:
    text = lambda n: " ".join(_words(sentences, rng, n))  # noqa: E731
    labels = list(spec.labels) or list(STAND_IN_TAGS)
    if spec.kind == "classification":
        return {"text_a": text(words // 2), "text_b": text(words // 2), "label": labels[index % len(labels)]}
    if spec.kind == "tagging":
        tokens = _words(sentences, rng, words)
        return {"tokens": tokens, "tags": [labels[(index + i) % len(labels)] for i in range(len(tokens))]}
    if spec.kind == "multiple_choice":
        choices = [text(words // 8 or 1) for _ in range(spec.num_choices or 4)]
        return {"context": text(words), "question": text(8), "choices": choices, "label": index % len(choices)}
    if spec.kind == "qa":
        context = text(words)
        answer = context.split()[len(context.split()) // 2]
        start = context.index(" " + answer + " ") + 1 if f" {answer} " in context else context.index(answer)
        answers = {"text": [answer], "answer_start": [start]}
        return {"id": f"stand-in-{index}", "question": text(10), "context": context, "answers": answers}
    if spec.kind == "mlm":
        return {"text": text(words)}
    raise ValueError(f"no stand-in examples for {spec.kind} tasks")


def _first_lines(path: Path, count: int) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [line for line in itertools.islice((line for line in handle if line.strip()), count)]


def sample_task_files(
    spec: TaskSpec,
    files: Iterable[tuple[str, str]],
    destination: Path,
    count: int,
    sentences: list[str],
    words: int,
    evaluation_words: int = 16,
) -> list[SampledFile]:
    """Write the first `count` examples of each (split, language) file of `spec` to `destination` (its data dir in
    the rehearsal), or stand-ins where the file is missing: `words` long in the training split (its peak memory is
    the stage's), `evaluation_words` in the others (one forward each: every language costs its time); an open
    label set's labels.txt comes along."""
    destination.mkdir(parents=True, exist_ok=True)
    labels = Path(spec.data.data_dir) / "labels.txt"
    if spec.open_label_set:
        tags = labels.read_text(encoding="utf-8") if labels.is_file() else "\n".join(STAND_IN_TAGS) + "\n"
        write_text_atomic(destination / "labels.txt", tags)
        spec = replace(spec, labels=tuple(line for line in tags.splitlines() if line))
    sampled = []
    for split, language in dict.fromkeys(files):
        source = spec.data.path(split, language)
        target = destination / source.name
        found = source.is_file()
        if found:
            write_text_atomic(target, "".join(_first_lines(source, count)))
        else:
            length = words if split == spec.train_split else evaluation_words
            seed = zlib.crc32(f"{split}-{language}".encode())
            write_jsonl(target, stand_in_examples(spec, count, sentences, length, seed=seed))
        sampled.append(SampledFile(spec.name, split, language, found))
    return sampled


def sample_retrieval_files(spec: TaskSpec, split: str, language: str, destination: Path, count: int) -> bool:
    """Copy the first `count` sentences of a retrieval language's upstream files (same relative paths, their
    companions with them, BUCC's gold pairs among the copied ids); False when the language has no files."""
    root = Path(spec.data.data_dir)
    layouts = spec.sources.local.get(split, ()) if spec.sources else ()
    paths = [path for layout in layouts for path in layout.paths(root, split, language)]
    if not paths:
        return False
    for path in paths:
        copied = destination / path.relative_to(root)
        copied.parent.mkdir(parents=True, exist_ok=True)
        if spec.name == "bucc2018":
            _sample_bucc(path, copied, count)
        else:  # Tatoeba: line i of the language file and of its .eng companion are one pair
            for source, target in ((path, copied), (path.with_suffix(".eng"), copied.with_suffix(".eng"))):
                write_text_atomic(target, "".join(_first_lines(source, count)))
    return True


def _sample_bucc(path: Path, copied: Path, count: int) -> None:
    """BUCC: the first `count` gold pairs and the first `count` sentences of each side, with the gold pairs'
    sentences (a sample without gold pairs would have no F1 to compute)."""
    gold_file = path.with_suffix(".gold")
    gold = _first_lines(gold_file, count) if gold_file.is_file() else []
    pairs = [line.rstrip("\n").split("\t") for line in gold]
    for side, file, ids in ((0, path, {p[0] for p in pairs}), (1, path.with_suffix(".en"), {p[-1] for p in pairs})):
        with file.open(encoding="utf-8") as handle:
            kept = [
                line for i, line in enumerate(handle) if line.strip() and (i < count or line.split("\t", 1)[0] in ids)
            ]
        write_text_atomic(copied if side == 0 else copied.with_suffix(".en"), "".join(kept))
    write_text_atomic(copied.with_suffix(".gold"), "".join(gold))
