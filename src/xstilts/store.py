"""The stage store: one directory per stage identity, written atomically, done when its record exists.

A stage's identity is a content hash of everything that determines it (its parent's identity, task,
data, settings, seed). Identical prefixes of different chains therefore share one directory, and
re-running an experiment skips every stage whose record is already there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

RECORD_FILE = "stage.json"


def content_identity(payload: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-able description (keys sorted)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write aside and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class StageStore:
    """Stage directories under `root`, named `<identity>-<task>`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def stage_dir(self, identity: str, task: str) -> Path:
        return self.root / f"{identity}-{task}"

    def record(self, identity: str, task: str) -> dict[str, Any] | None:
        """The completion record, or None while the stage is not done."""
        path = self.stage_dir(identity, task) / RECORD_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def begin(self, identity: str, task: str) -> Path:
        """A fresh scratch directory for building the stage; leftovers of a killed attempt are removed."""
        scratch = self.root / f".partial-{identity}-{task}"
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
        return scratch

    def commit(self, scratch: Path, identity: str, task: str, record: dict[str, Any]) -> Path:
        """Write the completion record last, then move the directory into place in one rename."""
        write_json_atomic(scratch / RECORD_FILE, record)
        final = self.stage_dir(identity, task)
        if final.exists():  # an incomplete directory from an older layout or a crash between rename steps
            shutil.rmtree(final)
        os.replace(scratch, final)
        return final

    def prune(self, identity: str, task: str, keep: tuple[str, ...] = (RECORD_FILE, "evaluations", "predictions")) -> int:
        """Delete a finished stage's weights but keep its record (marked `pruned`) and evaluations; returns bytes freed.

        The record is updated first, so a kill midway leaves a stage that is known to need retraining.
        """
        directory = self.stage_dir(identity, task)
        record = self.record(identity, task)
        if record is None or record.get("pruned"):
            return 0
        write_json_atomic(directory / RECORD_FILE, {**record, "pruned": True})
        freed = 0
        for entry in directory.iterdir():
            if entry.name in keep:
                continue
            freed += sum(f.stat().st_size for f in entry.rglob("*") if f.is_file()) if entry.is_dir() else entry.stat().st_size
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        return freed

    def discard(self, identity: str, task: str) -> None:
        """Remove a stage entirely (a pruned stage whose weights are needed again is retrained)."""
        shutil.rmtree(self.stage_dir(identity, task), ignore_errors=True)
