"""Named tasks: a declarative `TaskSpec` per task on top of a task kind and a data source.

A task is data, not code: adding one means adding an entry (here, in a config's `tasks:` block, or
from Python with `register_task`), never editing a kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import read_lines
from xstilts.names import name_problem
from xstilts.terms import DEV, KINDS, TEST

# The metric each kind reports by default and the one used for model selection ("primary").
DEFAULT_METRIC = {
    "classification": "accuracy",
    "multiple_choice": "accuracy",
    "qa": "squad",
    "tagging": "seqeval",
    "retrieval": "retrieval",
    "mlm": "loss",
}


# The one class of an open label set (CCG) that every tag outside its fixed inventory is mapped to.
UNKNOWN_TAG = "<unk>"


@dataclass(frozen=True)
class LocalFiles:
    """Examples in files `{split}-{language}.jsonl` under `data_dir`, one JSON object per line in the kind's schema."""

    data_dir: Path
    pattern: str = "{split}-{language}.jsonl"

    def path(self, split: str, language: str) -> Path:
        return Path(self.data_dir) / self.pattern.format(split=split, language=language)


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task apart from its kind's code.

    Training and model selection use `train_language` (English for every task of the study). Zero-shot
    evaluation reports two splits (`EVALUATION_SPLITS`): "test" is `eval_split` in each of `languages`,
    "dev" is `dev_split` in the training language and `dev_languages` (only `dev_languages` for retrieval
    tasks, which have no training language; none when `has_dev` is false, as for Tatoeba).
    """

    name: str
    kind: str
    languages: tuple[str, ...]
    data: LocalFiles
    labels: tuple[str, ...] = ()
    num_choices: int | None = None
    allow_no_answer: bool = False
    metric: str = ""
    train_language: str = "en"
    train_split: str = "train"
    dev_split: str = "dev"
    eval_split: str = "test"
    training_defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    dev_languages: tuple[str, ...] = ()  # languages with a labelled dev split besides train_language
    sources: Any = None  # xstilts.tasks.sources.Sources for built-in tasks
    open_label_set: bool = False  # labels fixed at prepare time (CCG supertags): `labels.txt` beside the files
    has_dev: bool = True  # a labelled dev split to evaluate (and to choose models on)
    dev_is_test: bool = False  # dev and test read the same files (TyDiQA-GoldP): dev must not choose its model
    # The evaluation sets hold the same items in every language (one item translated): "line" (line i of every
    # language's file is item i: XNLI, PAWS-X) or "id" (matched by example id: XQuAD, MLQA); None: each language
    # its own sample. Intervals draw a parallel item in every language at once (xstilts.results.resampling).
    parallel: str | None = None

    def __post_init__(self) -> None:
        languages = (*self.languages, self.train_language, *self.dev_languages)
        splits = (self.train_split, self.dev_split, self.eval_split)
        for what, value in [
            ("name", self.name),
            *(("language", v) for v in languages),
            *(("split", v) for v in splits),
        ]:
            problem = name_problem(value)
            if problem:
                raise XstiltsError(f"task {self.name!r}: {what}: {problem}")
        if self.kind not in KINDS:
            raise XstiltsError(f"task {self.name}: unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not self.metric:
            object.__setattr__(self, "metric", DEFAULT_METRIC[self.kind])
        if self.parallel not in (None, "line", "id"):
            raise XstiltsError(f"task {self.name}: parallel must be 'line', 'id' or null, got {self.parallel!r}")
        if self.kind in ("classification", "tagging") and not self.labels and not self.open_label_set:
            raise XstiltsError(f"task {self.name}: a {self.kind} task needs its label list")

    def with_data_dir(self, data_dir: Path) -> TaskSpec:
        """This task reading its prepared files from `data_dir` (open label sets read `labels.txt` there)."""
        labels = self.labels
        labels_file = Path(data_dir) / "labels.txt"
        if self.open_label_set and labels_file.is_file():
            labels = tuple(line for _, line in read_lines(labels_file) if line)
        return replace(self, data=LocalFiles(Path(data_dir)), labels=labels)

    def split_languages(self, split: str) -> tuple[str, ...]:
        """Languages a split exists in: train in the training language only, dev there and in `dev_languages`."""
        if split == self.train_split:
            return (self.train_language,)
        if split == self.dev_split:
            return (self.train_language, *[lang for lang in self.dev_languages if lang != self.train_language])
        return self.languages

    def evaluation_languages(self, split: str) -> tuple[str, ...]:
        """The languages `split` ("dev" or "test") is evaluated in; () when the task has no such split."""
        if split == TEST:
            return self.languages
        if split != DEV or not self.has_dev:
            return ()
        return self.dev_languages if self.kind == "retrieval" else self.split_languages(self.dev_split)

    def file_split(self, split: str) -> str:
        """The name of an evaluation split ("dev", "test") in this task's file names."""
        return {DEV: self.dev_split, TEST: self.eval_split}[split]

    @property
    def required_split(self) -> str:
        """The split a retrieval task cannot be evaluated without: dev (BUCC's threshold is chosen there), or test
        where there is no dev (Tatoeba)."""
        return self.dev_split if self.has_dev else self.eval_split

    @property
    def trainable(self) -> bool:
        """Retrieval tasks have no training data: they are evaluated on an encoder as it is."""
        return self.kind != "retrieval"

    def fingerprint(self) -> dict[str, Any]:
        """What about the task changes a trained model (part of a stage's identity). Where the data lives is not
        part of it (its content is hashed separately), so a moved data or run directory keeps its stages."""
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": list(self.labels),
            "num_choices": self.num_choices,
            "allow_no_answer": self.allow_no_answer,
            "train_language": self.train_language,
            # validated on a held-out slice of its training data, not on dev files that are its test files
            **({"validation": "held-out training slice"} if self.dev_is_test else {}),
        }


class TaskRegistry:
    """A name -> TaskSpec map. `default_registry()` holds the built-in catalogue; configs extend a copy."""

    def __init__(self, specs: Iterable[TaskSpec] = ()):
        self._specs: dict[str, TaskSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: TaskSpec, replace: bool = False) -> None:
        if spec.name in self._specs and not replace:
            raise XstiltsError(f"task {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise XstiltsError(
                f"unknown task {name!r}; known tasks: {', '.join(sorted(self._specs)) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)

    def copy(self) -> TaskRegistry:
        return TaskRegistry(self._specs.values())


_DEFAULT = TaskRegistry()


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add a task to the built-in registry (for Python users and plug-ins); returns the spec."""
    _DEFAULT.add(spec, replace=replace)
    return spec


def default_registry() -> TaskRegistry:
    """A copy of the built-in registry, safe to extend with a config's own tasks."""
    return _DEFAULT.copy()
