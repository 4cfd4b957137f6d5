"""xstilts: cross-lingual intermediate-task training (X-STILTs) and the sequential-scaling study.

The Python API the CLI is a thin layer over:

    import xstilts
    config = xstilts.load_config("configs/example.yaml")   # validated; raises ConfigError
    summary = xstilts.run(config)                          # trains, evaluates, writes results
    summary = xstilts.read_results(config.output_dir)      # the same summary, read back later
    xstilts.write_report(config.output_dir)                # report.md + plot
"""

from __future__ import annotations

from xstilts.config import ExperimentConfig, load_config, parse_config
from xstilts.errors import ConfigError, DataError, XstiltsError
from xstilts.analysis.report import write_report
from xstilts.study.runner import read_summary as read_results
from xstilts.study.runner import run_experiment as run
from xstilts.tasks import TaskSpec, register_task

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ExperimentConfig",
    "TaskSpec",
    "XstiltsError",
    "load_config",
    "parse_config",
    "read_results",
    "register_task",
    "run",
    "write_report",
]
