"""One stage directory (`stages/<identity>-<task>/`, or its scratch twin while it is built), its adapter
folder and its mid-stage checkpoint folder: the only code that names a file inside them, and the check of
a stage's files against the manifest in its record (sizes; with `full`, sha256).

Readers get a stage's record through `read_record`, which checks the files against the record (sizes, and
their sha256 unless asked not to) before anything is loaded from them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xstilts.errors import DataError, RunError
from xstilts.files import read_json
from xstilts.rundir.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    CHECKPOINT_BEST,
    CHECKPOINT_OPTIMIZER,
    CHECKPOINT_PROGRESS,
    CHECKPOINT_WEIGHTS,
    ENCODER_DIR,
    HEADS_FILE,
    RECORD_FILE,
    evaluation_file,
    predictions_file,
)
from xstilts.rundir.records import complete_stage_record

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
    record = complete_stage_record(record)
    problem = manifest_problem(Path(directory), record["files"], full)
    if problem:
        return StageState("damaged", record, problem)
    return StageState("pruned" if record.get("pruned") else "done", record)


@dataclass(frozen=True)
class StageState:
    """What a stage directory holds: nothing yet, a usable stage, a pruned one (record, no weights), or damage."""

    status: Literal["missing", "done", "pruned", "damaged"]
    record: dict[str, Any] | None = None
    problem: str | None = None


@dataclass(frozen=True)
class AdapterFiles:
    """A stage's adapter folder (LoRA or bottleneck adapters): its weights and the settings that rebuild it."""

    path: Path

    @property
    def weights(self) -> Path:
        return Path(self.path) / ADAPTER_WEIGHTS

    @property
    def settings(self) -> Path:
        return Path(self.path) / ADAPTER_CONFIG


@dataclass(frozen=True)
class CheckpointFiles:
    """A mid-stage checkpoint: model and best weights (safetensors), optimizer state, progress counters."""

    path: Path

    @property
    def weights(self) -> Path:
        return Path(self.path) / CHECKPOINT_WEIGHTS

    @property
    def best(self) -> Path:
        return Path(self.path) / CHECKPOINT_BEST

    @property
    def optimizer(self) -> Path:
        return Path(self.path) / CHECKPOINT_OPTIMIZER

    @property
    def progress(self) -> Path:
        return Path(self.path) / CHECKPOINT_PROGRESS


@dataclass(frozen=True)
class StageDirectory:
    """A stage directory. `path` need not exist yet (a stage being built writes into its scratch twin)."""

    path: Path

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def record_file(self) -> Path:
        return Path(self.path) / RECORD_FILE

    @property
    def encoder_dir(self) -> Path:
        """The whole encoder (full fine-tuning), as a Hugging Face model folder."""
        return Path(self.path) / ENCODER_DIR

    @property
    def heads_file(self) -> Path:
        return Path(self.path) / HEADS_FILE

    @property
    def adapter(self) -> AdapterFiles:
        """The stage's adapter (chain modes that train adapters instead of the encoder)."""
        return AdapterFiles(Path(self.path) / ADAPTER_DIR)

    def has_heads(self) -> bool:
        return self.heads_file.is_file()

    def evaluation_file(self, split: str, language: str) -> Path:
        return evaluation_file(Path(self.path), split, language)

    def predictions_file(self, split: str, language: str) -> Path:
        return predictions_file(Path(self.path), split, language)

    def state(self, full: bool = False) -> StageState:
        return inspect_stage_dir(Path(self.path), full)

    def read_record(self, user: str, full: bool = True) -> dict[str, Any]:
        """The completion record of a finished, intact stage; RunError (naming `user` and the problem) otherwise."""
        state = self.state(full)
        if state.status != "done" or state.record is None:
            problem = state.problem or {
                "missing": "it has no completion record (not trained, or still training)",
                "pruned": "its weights were pruned to save space",
            }.get(state.status, state.status)
            raise RunError(
                f"{user}: the stage {self.path} is not usable ({problem}); run the command again to retrain it"
            )
        return state.record
