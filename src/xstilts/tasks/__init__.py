"""Task kinds (one implementation each) and the registry of named tasks."""

from __future__ import annotations

from xstilts.tasks.base import TaskKind
from xstilts.tasks.classification import ClassificationKind
from xstilts.tasks.multiple_choice import MultipleChoiceKind
from xstilts.tasks.qa import QAKind
from xstilts.tasks.registry import LocalFiles, TaskRegistry, TaskSpec, default_registry, register_task
from xstilts.tasks.tagging import TaggingKind

# Retrieval (BUCC, Tatoeba) evaluates a bare encoder and gets its own kind in xstilts.tasks.retrieval.
KIND_IMPLEMENTATIONS: dict[str, TaskKind] = {
    kind.name: kind for kind in (ClassificationKind(), MultipleChoiceKind(), QAKind(), TaggingKind())
}


# The built-in catalogue registers itself on import.
from xstilts.tasks import catalogue as _catalogue  # noqa: E402,F401


def kind_of(spec: TaskSpec) -> TaskKind:
    return KIND_IMPLEMENTATIONS[spec.kind]


__all__ = ["KIND_IMPLEMENTATIONS", "LocalFiles", "TaskKind", "TaskRegistry", "TaskSpec", "default_registry", "kind_of", "register_task"]
