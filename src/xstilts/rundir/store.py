"""The stage store: one directory per stage identity, written atomically, done when its intact record exists.

A stage's identity is a content hash of everything that determines it (its parent's identity, task,
data, settings, seed). Identical prefixes of different chains therefore share one directory, and
re-running an experiment skips every stage whose record is already there.

Guarantees kept here, in one place:
- Every path the store writes or deletes is checked to lie inside its root (`inside`, `remove_inside`),
  whatever a task name holds: deleting anything outside the run directory is impossible by construction.
- A completion record lists the stage's files with their sizes and sha256. A stage whose files are missing
  or of the wrong size is damaged, not done (`inspect`); the sha256 is checked before the stage's weights
  are used again (`inspect(..., full=True)`, hashed once per file version and process).
- The record is written last (through `xstilts.files`: aside, fsynced, renamed), so a stage is either
  complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xstilts.errors import DataError, XstiltsError
from xstilts.files import read_json, write_json_atomic
from xstilts.names import name_problem
from xstilts.rundir.layout import (
    CHECKPOINTS_DIR,
    EVALUATIONS_DIR,
    PARTIAL_PREFIX,
    PREDICTIONS_DIR,
    RECORD_FILE,
    inside,
    remove_inside,
)

log = logging.getLogger(__name__)


def content_identity(payload: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able description (keys sorted)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- file manifests --------------------------------------------------------------------------------------

_HASHES: dict[tuple[int, int, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, computed once per file version (device, inode, size, mtime) in a process: a stage
    hashed when it is committed is not hashed again after its directory is renamed into place."""
    stat = path.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def file_manifest(directory: Path, exclude: tuple[str, ...] = (RECORD_FILE,)) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `directory` except the top-level `exclude`."""
    manifest = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative not in exclude:
            manifest[relative] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return manifest


def manifest_problem(directory: Path, manifest: dict[str, dict[str, Any]], full: bool) -> str | None:
    """What is wrong with the files of `directory` against `manifest` (sizes; with `full`, sha256), or None."""
    for relative, expected in manifest.items():
        path = directory / relative
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{path} has {size} bytes, its record says {expected['size']}"
        if full and sha256_of(path) != expected["sha256"]:
            return f"{path} does not match the sha256 in its record"
    return None


# --- the store ---------------------------------------------------------------------------------------------


def inspect_stage_dir(directory: Path, full: bool = False, identity: str | None = None) -> StageState:
    """The state of one stage directory (see `StageStore.inspect`); usable from a path alone (latency, evaluation)."""
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        return StageState("missing")
    try:
        record = read_json(path)
    except DataError as error:
        return StageState("damaged", problem=str(error))
    if (
        not isinstance(record, dict)
        or "identity" not in record
        or (identity is not None and record["identity"] != identity)
    ):
        return StageState("damaged", problem=f"{path} is not the completion record of this stage")
    problem = manifest_problem(Path(directory), record.get("files", {}), full)
    if problem:
        return StageState("damaged", record, problem)
    return StageState("pruned" if record.get("pruned") else "done", record)


@dataclass(frozen=True)
class StageState:
    """What a stage directory holds: nothing yet, a usable stage, a pruned one (record, no weights), or damage."""

    status: Literal["missing", "done", "pruned", "damaged"]
    record: dict[str, Any] | None = None
    problem: str | None = None


class StageStore:
    """Stage directories under `root`, named `<identity>-<task>`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._reported: set[Path] = set()

    def stage_dir(self, identity: str, task: str) -> Path:
        for what, value in (("identity", identity), ("task name", task)):
            problem = name_problem(value)
            if problem:
                raise XstiltsError(f"stage store: {what}: {problem}")
        return inside(self.root, self.root / f"{identity}-{task}")

    def checkpoint_dir(self, identity: str, task: str) -> Path:
        """Where an unfinished stage keeps its mid-stage checkpoints (removed when it is committed)."""
        return inside(self.root, self.root / CHECKPOINTS_DIR / self.stage_dir(identity, task).name)

    def inspect(self, identity: str, task: str, full: bool = False) -> StageState:
        """The stage's state; its files are checked against the record (sizes, and with `full` their sha256)."""
        return inspect_stage_dir(self.stage_dir(identity, task), full, identity)

    def record(self, identity: str, task: str, full: bool = False) -> dict[str, Any] | None:
        """The completion record of an intact stage (done or pruned), or None when it has to be trained.

        A damaged stage counts as not done; the first time it is seen, a warning names the file at fault.
        """
        state = self.inspect(identity, task, full)
        if state.status == "damaged":
            directory = self.stage_dir(identity, task)
            if directory not in self._reported:
                self._reported.add(directory)
                log.warning("stage %s is damaged (%s): it will be trained again", directory.name, state.problem)
            return None
        return state.record

    def begin(self, identity: str, task: str) -> Path:
        """A fresh scratch directory for building the stage; leftovers of a killed attempt are removed."""
        scratch = inside(self.root, self.root / f"{PARTIAL_PREFIX}{self.stage_dir(identity, task).name}")
        remove_inside(self.root, scratch)
        scratch.mkdir(parents=True)
        return scratch

    def commit(self, scratch: Path, identity: str, task: str, record: dict[str, Any]) -> Path:
        """List the files in the record, write the record last, then move the directory into place in one rename."""
        write_json_atomic(
            scratch / RECORD_FILE, {**record, "files": file_manifest(scratch)}
        )  # hashed now: verified for free later
        final = self.stage_dir(identity, task)
        remove_inside(self.root, final)  # a damaged stage, or an incomplete directory from a crash between rename steps
        os.replace(inside(self.root, scratch), final)
        return final

    def prune(
        self, identity: str, task: str, keep: tuple[str, ...] = (RECORD_FILE, EVALUATIONS_DIR, PREDICTIONS_DIR)
    ) -> int:
        """Delete a finished stage's weights but keep its record (marked `pruned`) and evaluations; returns bytes freed.

        The record is updated first, so a kill midway leaves a stage that is known to need retraining.
        """
        directory = self.stage_dir(identity, task)
        record = self.record(identity, task)
        if record is None or record.get("pruned"):
            return 0
        kept_files = {name: entry for name, entry in record.get("files", {}).items() if name.split("/", 1)[0] in keep}
        write_json_atomic(directory / RECORD_FILE, {**record, "pruned": True, "files": kept_files})
        freed = 0
        for entry in directory.iterdir():
            if entry.name in keep:
                continue
            freed += (
                sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                if entry.is_dir() and not entry.is_symlink()
                else entry.lstat().st_size
            )
            remove_inside(self.root, entry)
        return freed

    def discard(self, identity: str, task: str) -> None:
        """Remove a stage entirely (a pruned stage whose weights are needed again is retrained)."""
        remove_inside(self.root, self.stage_dir(identity, task))
