"""`xstilts data prepare` and `xstilts data check`: upstream files or hub copies -> validated local copies.

Runs read the prepared layout, `<data_dir>/<task>/{split}-{language}.jsonl`, one example per line in
the task kind's schema, with `manifest.json` saying where each file came from.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xstilts.errors import DataError, DataWarning, XstiltsError
from xstilts.files import write_json_atomic
from xstilts.readers.jsonl import read_jsonl, write_jsonl
from xstilts.tasks.registry import UNKNOWN_TAG, TaskRegistry, TaskSpec
from xstilts.tasks.schema import validate_example
from xstilts.tasks.sources import HubFile

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


@dataclass
class FileReport:
    """What was found for one (task, split, language)."""

    task: str
    split: str
    language: str
    files: list[str]
    examples: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # legal but suspicious input (DataWarning from the readers)
    unknown_tags: int = 0  # tags outside an open label set's inventory, mapped to UNKNOWN_TAG


def blank(paths: list[Path]) -> bool:
    """Do the files hold nothing but whitespace? (An empty file is an error; a release file that holds
    other languages but not this one is not.)"""
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 16), b""):
                if block.strip():
                    return False
    return True


def _validate(spec: TaskSpec, records: list[dict[str, Any]], where: str, paths: Sequence[Path] = ()) -> list[str]:
    if not records:
        return [f"{where}: no examples in the file"] if paths and blank(list(paths)) else []
    problems = []
    for index, record in enumerate(records):
        problem = validate_example(record, spec)
        if problem:
            problems.append(f"{where}: record {index + 1}: {problem}")
            if len(problems) >= 5:
                problems.append(f"{where}: (further problems not shown)")
                break
    return problems


def read_local(spec: TaskSpec, root: Path, split: str, language: str) -> tuple[list[dict[str, Any]], list[Path]] | None:
    """Records of one split and language from the first known layout present below `root`, or None.

    The paths returned include the companion files the reader opened beside each match.
    """
    for layout in spec.sources.local.get(split, ()) if spec.sources else ():
        paths = layout.paths(root, split, language)
        if paths:
            records: list[dict[str, Any]] = []
            for path in paths:
                records += layout.reader(path, language)
            companions = [p.with_suffix(c) for p in paths for c in layout.companions if p.with_suffix(c).is_file()]
            return records, paths + companions
    return None


def read_hub(spec: TaskSpec, split: str, language: str) -> list[dict[str, Any]] | None:
    """Records from the public hub copy (network access the first time; `datasets` caches it), or
    None when no hub copy of this split is known."""
    from datasets import load_dataset

    make = spec.sources.hub.get(split) if spec.sources else None
    if make is None:
        return None
    hub_files = make(language)
    records: list[dict[str, Any]] = []
    for hub in hub_files if isinstance(hub_files, list) else [hub_files]:
        try:
            dataset = load_dataset(hub.dataset, hub.config, split=hub.split)
        except Exception as error:  # network, missing config, ...: say which copy failed
            raise XstiltsError(
                f"{spec.name} {split}-{language}: could not load {hub.dataset} ({hub.config}, {hub.split}) from the hub: {error}"
            ) from None
        records += map_hub_records(hub, dataset, dataset.features)
    return records


def map_hub_records(hub: HubFile, rows: Iterable[dict[str, Any]], features: Any = None) -> list[dict[str, Any]]:
    """Apply a hub file's filter and record mapping (kept separate so it can be tested offline)."""
    mapped = []
    for row in rows:
        if hub.keep is not None and not hub.keep(row):
            continue
        record = hub.mapper(row, features)
        if record is not None:
            mapped.append(record)
    return mapped


def read_tag_inventory(path: Path) -> tuple[str, ...]:
    """A fixed tag inventory: one tag per line, or a JSON object tag -> id (jiant's `tags_to_id.json`)."""
    from xstilts.files import read_json, read_lines

    if path.suffix == ".json":
        mapping = read_json(path)
        if not isinstance(mapping, dict) or not mapping:
            raise DataError(path, "expected a JSON object mapping each tag to its id")
        return tuple(sorted(mapping, key=lambda tag: int(mapping[tag])))
    tags = tuple(line.strip() for _, line in read_lines(path) if line.strip())
    if not tags:
        raise DataError(path, "expected one tag per line; the file has none")
    return tags


def _fix_inventory(
    spec: TaskSpec, pending: list[tuple[FileReport, list[dict[str, Any]]]], inventory: tuple[str, ...] | None
) -> TaskSpec:
    """An open label set (CCG supertags) gets a fixed inventory: the one given, else the training split's
    tags, plus one unknown class. Tags outside it (rare dev tags) become UNKNOWN_TAG and are counted, so
    the classifier's output layer never depends on what dev or test hold."""

    def tag_lists(records: list[dict[str, Any]]) -> Iterable[list[Any]]:
        return (record["tags"] for record in records if isinstance(record.get("tags"), list))  # the rest: _validate

    if inventory is None:
        train = [tags for report, records in pending if report.split == "train" for tags in tag_lists(records)]
        inventory = tuple(sorted({tag for tags in train for tag in tags}))
    inventory = (*[tag for tag in inventory if tag != UNKNOWN_TAG], UNKNOWN_TAG)
    known = set(inventory)
    for report, records in pending:
        for tags in tag_lists(records):
            outside = [i for i, tag in enumerate(tags) if tag not in known]
            for i in outside:
                tags[i] = UNKNOWN_TAG
            report.unknown_tags += len(outside)
        if report.unknown_tags:
            log.warning(
                "%s %s-%s: %d tags outside the %d-tag inventory mapped to %s",
                spec.name,
                report.split,
                report.language,
                report.unknown_tags,
                len(inventory),
                UNKNOWN_TAG,
            )
    return replace(spec, labels=inventory)


def prepare(
    registry: TaskRegistry,
    tasks: list[str],
    out_dir: Path,
    source_dir: Path | None = None,
    from_hub: bool = False,
    tag_inventory: Path | None = None,
) -> list[FileReport]:
    """Write validated local copies of `tasks` under `out_dir`; returns what was written.

    Each split and language is taken from `source_dir` (upstream layouts) or the hub. What cannot be
    found is reported and skipped; invalid records stop the task before anything of it is written.
    `tag_inventory` fixes the label set of open-label-set tasks (CCG: the original runs' supertags).
    """
    if (source_dir is None) == (not from_hub):
        raise XstiltsError("give exactly one of --from DIR and --from-hub")
    reports: list[FileReport] = []
    inventory = read_tag_inventory(Path(tag_inventory)) if tag_inventory is not None else None
    for name in tasks:
        spec = registry.get(name)
        if spec.kind == "retrieval":
            raise XstiltsError(
                f"{name}: retrieval data is read in place by the retrieval evaluation; nothing to prepare"
            )
        task_dir = out_dir / name
        pending: list[tuple[FileReport, list[dict[str, Any]]]] = []
        for split in SPLITS:
            for language in spec.split_languages(split):
                if from_hub:
                    hub_records = read_hub(spec, split, language)
                    if hub_records is None:
                        continue
                    records, files = hub_records, [f"hub:{split}"]
                else:
                    found = read_local(spec, Path(source_dir), split, language)
                    if found is None or not (found[0] or blank(found[1])):
                        continue  # not there, or a release file of all languages that lacks this one
                    records, files = found[0], [str(p) for p in found[1]]
                report = FileReport(name, split, language, files, len(records))
                pending.append((report, records))
        if spec.open_label_set:
            spec = _fix_inventory(spec, pending, inventory)
        _refuse_shared_files(name, pending)
        for report, records in pending:
            report.problems = _validate(
                spec,
                records,
                f"{', '.join(report.files)} ({name} {report.split}-{report.language})",
                [Path(f) for f in report.files if not f.startswith("hub:")],
            )
        problems = [p for report, _ in pending for p in report.problems]
        if problems:
            raise DataError(
                pending[0][0].files[0],
                "invalid records, nothing written for task " + name + ":\n  " + "\n  ".join(problems),
            )
        if not pending:
            log.warning("%s: no files found", name)
            continue
        task_dir.mkdir(parents=True, exist_ok=True)
        for report, records in pending:
            write_jsonl(task_dir / f"{report.split}-{report.language}.jsonl", records)
        if spec.open_label_set:
            (task_dir / "labels.txt").write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
        write_json_atomic(
            task_dir / "manifest.json", {"task": name, "files": [report.__dict__ for report, _ in pending]}
        )
        reports += [report for report, _ in pending]
    return reports


def _refuse_shared_files(task: str, pending: Sequence[tuple[FileReport, list[dict[str, Any]]]]) -> None:
    """A split whose examples come out the same for two languages was read from a file that cannot belong to both
    (SQuAD's English dev-v1.1.json matched as MLQA's German dev): an error naming the file, before anything is
    written, instead of a "German" dev score that is English."""
    seen: dict[tuple[str, str], str] = {}
    for report, records in pending:
        if not records:
            continue
        fingerprint = (report.split, json.dumps(records, sort_keys=True, ensure_ascii=False))
        other = seen.setdefault(fingerprint, report.language)
        if other != report.language:
            raise DataError(
                report.files[0],
                f"{task} {report.split}: the same {len(records)} examples were found for languages {other} and "
                f"{report.language}; this file cannot belong to both. Give each language its own file "
                f"({report.split} files of {task} are matched by language), or leave the language out",
            )


def check(registry: TaskRegistry, directory: Path) -> tuple[list[FileReport], list[Path]]:
    """Read every file of every known layout below `directory` (upstream or prepared), for every
    split and language, and validate its records.

    Returns the reports and the files that no layout recognised (licences, READMEs, unknown data).
    """
    reports: list[FileReport] = []
    seen: set[Path] = set()
    reported: set[tuple[str, str, tuple[Path, ...]]] = set()
    for name in registry.names():
        spec = registry.get(name)
        for split in SPLITS:
            for language in spec.split_languages(split) + tuple(
                lang for lang in spec.languages if lang not in spec.split_languages(split)
            ):
                prepared = directory / name / f"{split}-{language}.jsonl"
                if prepared.is_file():
                    reports.append(
                        _check_files(
                            spec, split, language, [prepared], lambda path, lang: [r for _, r in read_jsonl(path)], seen
                        )
                    )
                for layout in spec.sources.local.get(split, ()) if spec.sources else ():
                    paths = layout.paths(directory, split, language)
                    if (
                        paths and (spec.name, split, tuple(paths)) not in reported
                    ):  # a file without a language in its name
                        reported.add((spec.name, split, tuple(paths)))
                        companions = [p.with_suffix(c) for p in paths for c in layout.companions]
                        reports.append(
                            _check_files(spec, split, language, paths + companions, layout.reader, seen, len(paths))
                        )
    seen.update(
        p.resolve()
        for name in registry.names()
        for p in (directory / name / "manifest.json", directory / name / "labels.txt")
    )
    unrecognised = sorted(p for p in directory.rglob("*") if p.is_file() and p.resolve() not in seen)
    return reports, unrecognised


def _check_files(
    spec: TaskSpec,
    split: str,
    language: str,
    paths: list[Path],
    reader: Any,
    seen: set[Path],
    read_count: int | None = None,
) -> FileReport:
    """Read and validate one layout's files (the first `read_count` are read, the rest are companions)."""
    seen.update(p.resolve() for p in paths)
    files = [str(p) for p in paths]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        try:
            records = [record for path in paths[:read_count] for record in reader(path, language)]
        except DataError as error:
            return FileReport(spec.name, split, language, files, 0, [str(error)], _data_warnings(caught))
    where = f"{', '.join(files[:read_count])} ({spec.name} {split}-{language})"
    return FileReport(
        spec.name,
        split,
        language,
        files,
        len(records),
        _validate(spec, records, where, paths[:read_count]),
        _data_warnings(caught),
    )


def _data_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if isinstance(w.message, DataWarning)]
