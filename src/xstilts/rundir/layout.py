"""Every file and folder name under a run directory, defined once, and the rule that no path leaves it.

    RUN_DIR/
      config.resolved.yaml  plan.json  summary.json  .xstilts.lock  run.log  search.json
      stages/<identity>-<task>/            stage.json, encoder/ or adapter/, heads.safetensors,
                                           evaluations/<split>-<lang>.json (+ .units.npy), predictions/<split>-<lang>.jsonl
      stages/.checkpoints/<identity>-<task>/   model.safetensors, best.safetensors, optimizer.pt, progress.json
      retrieval/<prefix identity>-<task>-<embedding hash>/<split>-<lang>.json (and .units.npy, .predictions.jsonl)
      results/<chain label>/<target>/<split>-<lang>.json
      by-chain/<chain label>/<target> and /encoder   links to the hash-named stage directories
      diagnostics/<prefix identity>.json   drift, alignment and transfer estimates of each prefix's encoder
      trackers/<stage run name>/           TensorBoard event files (with `trackers: [tensorboard]`)
      report.md  report.html  results.csv  results.json
      gain_vs_chain_length.{png,svg}  gain_by_language.{png,svg}  transfer_vs_latency.{png,svg}
      latency.json  latency_vs_chain_length.{png,svg}

Code outside `xstilts.rundir` reaches these files through `RunDirectory`, `StageStore` and `StageDirectory`,
never by name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from xstilts.errors import XstiltsError

# The run directory
CONFIG_FILE = "config.resolved.yaml"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".xstilts.lock"
SEARCH_FILE = "search.json"  # a searching study's rounds, the chain found and its cost
DIAGNOSTICS_DIR = "diagnostics"  # diagnostics/<prefix identity>.json
TRACKERS_DIR = "trackers"  # TensorBoard event files (and MLflow's mlruns/), one folder per stage
BY_CHAIN_DIR = "by-chain"  # by-chain/<chain label>/<target or "encoder"> -> stages/<identity>-<task> (links)
RUN_LOG = "run.log"  # every INFO line of every command that worked on the run, appended
STAGES_DIR = "stages"
RETRIEVAL_DIR = "retrieval"
RESULTS_DIR = "results"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
GAIN_PLOT = "gain_vs_chain_length.png"  # each plot is also written as .svg
HEATMAP_PLOT = "gain_by_language.png"
TRADEOFF_PLOT = "transfer_vs_latency.png"
COST_PLOT = "gain_vs_training_cost.png"
LATENCY_FILE = "latency.json"
LATENCY_PLOT = "latency_vs_chain_length.png"
PLOTS = {
    "gain": GAIN_PLOT,
    "heatmap": HEATMAP_PLOT,
    "tradeoff": TRADEOFF_PLOT,
    "latency": LATENCY_PLOT,
    "cost": COST_PLOT,
}

# A stage directory (stages/<identity>-<task>/)
RECORD_FILE = "stage.json"
ENCODER_DIR = "encoder"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
EVALUATIONS_DIR = "evaluations"
PREDICTIONS_DIR = "predictions"
PARTIAL_PREFIX = ".partial-"  # a stage being built, renamed into place when done

# A mid-stage checkpoint (stages/.checkpoints/<identity>-<task>/)
CHECKPOINTS_DIR = ".checkpoints"
CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_BEST = "best.safetensors"
CHECKPOINT_OPTIMIZER = "optimizer.pt"
CHECKPOINT_PROGRESS = "progress.json"


MAX_FOLDER_NAME = 128  # bytes; file systems allow 255 per name, and a chain of nine 64-character tasks is 584


def folder_name(label: str) -> str:
    """The folder name for a label (a chain's results: `results/<chain>/`, `by-chain/<chain>/`; a stage's tracker
    run): the label itself, or for one too long for a file name, its start and a hash of the whole (what is
    inside holds the full label)."""
    if len(label.encode()) <= MAX_FOLDER_NAME:
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:16]
    return f"{label[: MAX_FOLDER_NAME - 20]}~{digest}"


def evaluation_file(stage_dir: Path, split: str, language: str) -> Path:
    """A target stage's zero-shot evaluation of one split ("dev", "test") in one language."""
    return Path(stage_dir) / EVALUATIONS_DIR / f"{split}-{language}.json"


def predictions_file(stage_dir: Path, split: str, language: str) -> Path:
    """A target stage's predictions on one split in one language, one JSON object per example."""
    return Path(stage_dir) / PREDICTIONS_DIR / f"{split}-{language}.jsonl"


def retrieval_evaluation_file(directory: Path, split: str, language: str) -> Path:
    """A retrieval target's evaluation of one split in one language (in its retrieval directory)."""
    return Path(directory) / f"{split}-{language}.json"


def retrieval_predictions_file(directory: Path, split: str, language: str) -> Path:
    """A retrieval target's predictions (Tatoeba: the index per English sentence; BUCC: the mined id pairs)."""
    return Path(directory) / f"{split}-{language}.predictions.jsonl"


def inside(root: Path, path: Path) -> Path:
    """`path` with its parent resolved, after checking that it lies strictly inside `root`.

    The last component is not resolved, so a symbolic link is handled as the link itself (removing it
    never follows it).
    """
    base = Path(root).resolve()
    candidate = Path(path)
    resolved = candidate.parent.resolve() / candidate.name
    if candidate.name in ("", ".", "..") or not resolved.is_relative_to(base) or resolved == base:
        raise XstiltsError(f"refusing to touch {path}: it is not inside the run directory {base}")
    return resolved


def is_run_directory(path: Path) -> bool:
    """A folder a run wrote into (any of its first files: the log, the resolved config, the lock, the plan, the
    store)."""
    first_files = (RUN_LOG, CONFIG_FILE, LOCK_FILE, PLAN_FILE, STAGES_DIR, RESULTS_DIR)
    return any((Path(path) / name).exists() for name in first_files)


def foreign_files(path: Path) -> list[str]:
    """The names in a folder that is neither empty nor a run's (sorted; empty when a run may write there): commands
    never scatter their files among files they did not write."""
    folder = Path(path)
    if not folder.is_dir() or is_run_directory(folder):
        return []
    return sorted(entry.name for entry in folder.iterdir())


def check_contained(root: Path) -> None:
    """Refuse a run directory holding a symbolic link that leads outside it.

    Every path xstilts writes or deletes must lie inside the run directory (`inside`); a link inside it that
    leads elsewhere (a folder moved to another disk and linked back, a planted link) would make the run fail
    half-way, or have a reader follow it. So every command that opens a run checks first, naming the link.
    The run directory itself may be a link: it is resolved once. xstilts' own links (by-chain/) lead inside.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        return
    for directory, folders, files in os.walk(base):  # links to folders are listed, never entered
        for name in folders + files:
            path = Path(directory) / name
            if path.is_symlink() and not path.resolve().is_relative_to(base):
                raise XstiltsError(
                    f"{path} is a symbolic link to {os.readlink(path)}, outside the run directory {base}: xstilts "
                    "writes and deletes only inside a run directory and does not follow it; put the files themselves "
                    "there (to use another disk, move the whole run directory and link that)"
                )


def remove_inside(root: Path, path: Path) -> None:
    """Delete a file, link or directory tree that lies inside `root` (anything else is refused)."""
    target = inside(root, path)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def relative_to_root(path: str | Path, root: Path) -> str:
    """A path recorded inside a run: relative to `root` when it lies inside it, so a moved or copied run
    still finds it; other paths (a pretrained encoder, a hub id) as they are."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        resolved, base = candidate.resolve(), Path(root).resolve()
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return str(path)


def from_root(recorded: str, root: Path) -> str:
    """The inverse of `relative_to_root`: a recorded relative path joined to the run's current location."""
    candidate = Path(recorded)
    if not candidate.is_absolute() and (Path(root) / candidate).exists():
        return str(Path(root) / candidate)
    return recorded
