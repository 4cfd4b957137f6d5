"""`xstilts run` and `xstilts.run`: one run of the plan, or a search that is several (rounds of) runs."""

from __future__ import annotations

from typing import Any

from xstilts.config import ExperimentConfig
from xstilts.rundir.runs import RunDirectory
from xstilts.study.runner import run_once
from xstilts.study.search import run_search


def run_experiment(config: ExperimentConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; returns the summary that is also written to `summary.json`."""
    if config.study is not None and config.study.search is not None:
        run_search(config, progress)
        return RunDirectory(config.output_dir).read_summary()
    return run_once(config, progress)
