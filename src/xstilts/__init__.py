"""xstilts: cross-lingual intermediate-task training (X-STILTs) and the sequential-scaling study.

The Python API the CLI is a thin layer over:

    import xstilts
    config = xstilts.load_config("configs/paper/x-stilts.yaml")   # validated; raises ConfigError
    summary = xstilts.run(config)                          # trains, evaluates, writes results
    summary = xstilts.read_results(config.output_dir)      # the same summary, read back later
    xstilts.write_report(config.output_dir)                # report.md + plot

Names are imported on first use, so `import xstilts` (and `xstilts --help`) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "ConfigError": ("xstilts.errors", "ConfigError"),
    "DataError": ("xstilts.errors", "DataError"),
    "XstiltsError": ("xstilts.errors", "XstiltsError"),
    "ExperimentConfig": ("xstilts.config", "ExperimentConfig"),
    "load_config": ("xstilts.config", "load_config"),
    "parse_config": ("xstilts.config", "parse_config"),
    "TaskSpec": ("xstilts.tasks.registry", "TaskSpec"),
    "register_task": ("xstilts.tasks.registry", "register_task"),
    "run": ("xstilts.study.experiment", "run_experiment"),
    "read_results": ("xstilts.rundir.runs", "read_summary"),
    "write_report": ("xstilts.analysis.report", "write_report"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'xstilts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
