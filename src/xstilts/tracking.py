"""Experiment trackers (TensorBoard, Weights & Biases, MLflow) through accelerate's tracking API.

One tracker run per stage (an intermediate stage, or a target fine-tune with its evaluations), named after
the stage and grouped under the study (W&B group and project, MLflow experiment, a TensorBoard folder per
stage under `RUN_DIR/trackers/`). Each run gets the stage's resolved settings as hyper-parameters, then the
training loss and learning rate, the English dev metric of every validation, the final English dev
metrics and, for a target, every zero-shot score (`dev/<lang>/<metric>`, `test/<lang>/<metric>`).

The training loop calls `log_metrics`, which writes to the stage's trackers when `tracked_stage` has opened
them and does nothing otherwise: code that trains does not need to know whether anyone is watching.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from xstilts.errors import XstiltsError
from xstilts.rundir.layout import folder_name
from xstilts.rundir.runs import RunDirectory

log = logging.getLogger(__name__)

TrackerName = Literal["tensorboard", "wandb", "mlflow"]
TRACKERS: tuple[str, ...] = typing.get_args(TrackerName)
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
_active: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("xstilts_trackers", default=None)


def check_available(trackers: list[str]) -> list[str]:
    """Problems with the trackers a config asks for: each missing package, with how to install it."""
    import importlib.util

    return [
        f"the {name} tracker needs the {_PACKAGES[name]} package: pip install 'xstilts[{name}]'"
        for name in trackers
        if importlib.util.find_spec(_PACKAGES[name]) is None
    ]


@contextlib.contextmanager
def tracked_stage(
    trackers: list[str], directory: Path, study: str, run_name: str, hyperparameters: Mapping[str, Any]
) -> Iterator[None]:
    """Open one run in each tracker for the block (main process only); `log_metrics` inside it reaches them."""
    from accelerate import PartialState

    if not trackers or not PartialState().is_main_process:
        yield
        return
    problems = check_available(trackers)
    if problems:
        raise XstiltsError("; ".join(problems))
    opened = [_open(name, directory, study, run_name) for name in trackers]
    flat = flatten(hyperparameters)
    for tracker in opened:
        tracker.store_init_configuration(flat)
    token = _active.set(opened)
    try:
        yield
    finally:
        _active.reset(token)
        for tracker in opened:
            tracker.finish()


def stage_tracking(trackers: list[str], run_root: Path, study: str, request: Any) -> contextlib.AbstractContextManager:
    """`tracked_stage` for one stage request: its readable name and its resolved settings."""
    if not trackers:
        return contextlib.nullcontext()
    run_name = folder_name(
        "-".join(
            [request.role, request.name]
            + (["after", "+".join(request.chain)] if request.chain else [])
            + [f"seed{request.seed}", request.identity[:8]]
        )
    )
    hyperparameters = {
        "study": study,
        "identity": request.identity,
        "role": request.role,
        "task": request.name,
        "chain": "+".join(request.chain) or "none",
        "chain_length": len(request.chain),
        "seed": request.seed,
        "mode": request.mode,
        "settings": request.settings.model_dump(mode="json"),
    }
    return tracked_stage(trackers, RunDirectory(run_root).trackers_dir, study, run_name, hyperparameters)


def log_metrics(values: Mapping[str, float], step: int | None = None) -> None:
    """Send numbers to the trackers of the stage being run (none open: nothing happens)."""
    trackers = _active.get()
    if not trackers or not values:
        return
    numbers = {key: float(value) for key, value in values.items()}
    for tracker in trackers:
        tracker.log(numbers, step=step)


def _open(name: str, directory: Path, study: str, run_name: str) -> Any:
    """A started accelerate tracker for one stage."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    if name == "tensorboard":
        tracker = TensorBoardTracker(run_name, str(directory))
    elif name == "wandb":  # project = the study; one run per stage, grouped by the study
        tracker = WandBTracker(_safe(study), name=run_name, group=study, job_type="stage", reinit="finish_previous")
    else:
        tracker = MLflowTracker(experiment_name=study, logging_dir=str(directory / "mlruns"), run_name=run_name)
    tracker.start()
    return tracker


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as `a/b` keys of plain values (what every tracker accepts as hyper-parameters)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        elif value is None:
            flat[name] = "null"
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def _safe(name: str) -> str:
    """A W&B project name: letters, digits, '-', '_' and '.' only."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "xstilts"
