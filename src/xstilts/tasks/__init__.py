"""Task kinds (one implementation each) and the registry of named tasks."""

from __future__ import annotations

from xstilts.tasks.base import TaskKind
from xstilts.tasks.classification import ClassificationKind
from xstilts.tasks.mlm import MaskedLMKind
from xstilts.tasks.multiple_choice import MultipleChoiceKind
from xstilts.tasks.qa import QAKind
from xstilts.tasks.registry import LocalFiles, TaskRegistry, TaskSpec, default_registry, register_task
from xstilts.tasks.tagging import TaggingKind

# Retrieval (BUCC, Tatoeba) evaluates a bare encoder and gets its own kind in xstilts.tasks.retrieval.
KIND_IMPLEMENTATIONS: dict[str, TaskKind] = {
    kind.name: kind for kind in (ClassificationKind(), MultipleChoiceKind(), QAKind(), TaggingKind(), MaskedLMKind())
}


# The built-in catalogue registers itself on import.
from xstilts.tasks import catalogue as _catalogue  # noqa: E402,F401

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
                raise TypeError(f"entry point {entry_point.name} ({entry_point.value}) must give TaskSpec objects, got {type(spec).__name__}")
            register_task(spec, replace=True)
            names.append(spec.name)
    return names


load_plugin_tasks()


def kind_of(spec: TaskSpec) -> TaskKind:
    return KIND_IMPLEMENTATIONS[spec.kind]


__all__ = ["KIND_IMPLEMENTATIONS", "LocalFiles", "load_plugin_tasks", "TaskKind", "TaskRegistry", "TaskSpec", "default_registry", "kind_of", "register_task"]
