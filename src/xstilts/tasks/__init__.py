"""The registry of named tasks and their kinds.

Importing this package is light: the registry, the catalogue and the example schema (`tasks.schema`) need
no model. The kind implementations (features, heads, losses, decoding; they import torch) are loaded the
first time `kind_of` is called. Retrieval tasks (BUCC, Tatoeba) have no kind implementation: they evaluate
a bare encoder (`xstilts.evaluate.retrieval`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from xstilts.tasks.registry import LocalFiles, TaskRegistry, TaskSpec, default_registry, register_task

if TYPE_CHECKING:
    from xstilts.tasks.base import TaskKind


@functools.cache
def kind_implementations() -> dict[str, TaskKind]:
    """Every kind implementation by name (imports torch on first use)."""
    from xstilts.tasks.classification import ClassificationKind
    from xstilts.tasks.mlm import MaskedLMKind
    from xstilts.tasks.multiple_choice import MultipleChoiceKind
    from xstilts.tasks.qa import QAKind
    from xstilts.tasks.tagging import TaggingKind

    return {
        kind.name: kind
        for kind in (ClassificationKind(), MultipleChoiceKind(), QAKind(), TaggingKind(), MaskedLMKind())
    }


def __getattr__(name: str) -> Any:
    """`KIND_IMPLEMENTATIONS` and `TaskKind` stay importable from here without loading torch up front."""
    if name == "KIND_IMPLEMENTATIONS":
        return kind_implementations()
    if name == "TaskKind":
        from xstilts.tasks.base import TaskKind

        return TaskKind
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The built-in catalogue registers itself on import.
from xstilts.tasks import catalogue as _catalogue  # noqa: E402, F401

ENTRY_POINT_GROUP = "xstilts.tasks"


def load_plugin_tasks() -> list[str]:
    """Register tasks that installed packages declare under the `xstilts.tasks` entry-point group.

    Each entry point names a TaskSpec, a list of them, or a function returning either, e.g. in a
    plug-in's pyproject.toml: `[project.entry-points."xstilts.tasks"] my_nli = "my_pkg.tasks:MY_NLI"`.
    """
    from importlib.metadata import entry_points

    names = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry_point.load()
        loaded = loaded() if callable(loaded) and not isinstance(loaded, TaskSpec) else loaded
        for spec in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
            if not isinstance(spec, TaskSpec):
                raise TypeError(
                    f"entry point {entry_point.name} ({entry_point.value}) must give TaskSpec objects, got {type(spec).__name__}"
                )
            register_task(spec, replace=True)
            names.append(spec.name)
    return names


load_plugin_tasks()


def kind_of(spec: TaskSpec) -> TaskKind:
    return kind_implementations()[spec.kind]


__all__ = [
    "KIND_IMPLEMENTATIONS",
    "LocalFiles",
    "load_plugin_tasks",
    "TaskKind",
    "TaskRegistry",
    "TaskSpec",
    "default_registry",
    "kind_of",
    "register_task",
]
