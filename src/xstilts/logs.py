"""Where xstilts' messages go: people on a terminal get progress bars, batch jobs and `RUN_DIR/run.log` get lines.

Everything is the standard `logging` module under the "xstilts" logger. The console handler's level is the
user's (`--log-level`, `-v`, `-q`); the run log always records INFO and up, whatever the console shows, so a
job started with `-q` still leaves the training progress on disk. Progress bars use tqdm's own terminal
detection (`disable=None`): under Slurm, `nohup` or `> log 2>&1` they vanish and the progress lines remain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xstilts.rundir.runs import RunDirectory

LOGGER_NAME = "xstilts"
LEVELS = ("debug", "info", "warning", "error")
# Libraries whose INFO chatter ("generated new fontManager", loading notes) is not ours to show.
THIRD_PARTY = (
    "accelerate",
    "datasets",
    "filelock",
    "fsspec",
    "httpx",
    "huggingface_hub",
    "matplotlib",
    "PIL",
    "ray",
    "torch",
    "transformers",
    "urllib3",
)
_CONSOLE_FORMAT = "%(asctime)s %(message)s"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test runners and notebooks replace it), not the one at setup."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str | int = "info") -> None:
    """Send xstilts' messages at `level` and up to stderr; keep the libraries' own at WARNING. Safe to call twice."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)  # handlers filter: the run log wants INFO even when the console wants less
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, "_xstilts_console", False)]:
        logger.removeHandler(handler)
    console = _StderrHandler()
    console.setLevel(numeric)
    console.setFormatter(logging.Formatter(_CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    console._xstilts_console = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def run_log(run_dir: str | Path) -> Iterator[Path]:
    """Append every xstilts message at INFO and up to `run_dir/run.log` while the block runs."""
    path = RunDirectory(run_dir).log_file
    logger = logging.getLogger(LOGGER_NAME)
    if any(os.path.realpath(getattr(h, "baseFilename", "")) == os.path.realpath(path) for h in logger.handlers):
        yield path  # already logging there (the demo around its study): one copy of each line
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FILE_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)  # the Python API without setup_logging still fills the run log
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


def progress_bar(enabled: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar that shows only when `enabled` and stderr is a terminal (tqdm decides: `disable=None`)."""
    return tqdm(disable=None if enabled else True, dynamic_ncols=True, **kwargs)


def duration(seconds: float) -> str:
    """A short human duration for progress lines: 45s, 12m05s, 3h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLines:
    """When a log without a progress bar hears about a loop: at its log intervals, but no more often than every
    `min_seconds` (a fast CPU stage would otherwise fill the log) and no less often than every `max_seconds`.
    """

    def __init__(
        self,
        name: str,
        total: int,
        first_step: int = 1,
        min_seconds: float = 10.0,
        max_seconds: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.name, self.total, self.first_step = name, total, first_step
        self.min_seconds, self.max_seconds, self.clock = min_seconds, max_seconds, clock
        self.started = self.last = clock()

    def due(self, step: int, at_interval: bool) -> bool:
        """Should a line be written after `step`? Always after the last one."""
        since = self.clock() - self.last
        return step == self.total or since >= self.max_seconds or (at_interval and since >= self.min_seconds)

    def line(self, step: int, fields: str) -> str:
        """The line for `step` ("NAME: step 40/200 FIELDS, 12s, ETA 48s"); resets the clock of `due`."""
        self.last = now = self.clock()
        elapsed = now - self.started
        done = step - self.first_step + 1
        eta = elapsed / done * (self.total - step) if done > 0 else 0.0
        timing = f"{duration(elapsed)}" + (f", ETA {duration(eta)}" if step < self.total else "")
        return f"{self.name}: step {step}/{self.total} {fields}, {timing}"
