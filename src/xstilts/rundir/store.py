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
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import write_json_atomic
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
from xstilts.rundir.stage_directory import (
    CheckpointFiles,
    StageDirectory,
    StageState,
    file_manifest,
    inspect_stage_dir,
)

log = logging.getLogger(__name__)


def content_identity(payload: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able description (keys sorted)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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

    def stage(self, identity: str, task: str) -> StageDirectory:
        return StageDirectory(self.stage_dir(identity, task))

    def checkpoint(self, identity: str, task: str) -> CheckpointFiles:
        return CheckpointFiles(self.checkpoint_dir(identity, task))

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
        kept_files = {name: entry for name, entry in record["files"].items() if name.split("/", 1)[0] in keep}
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
