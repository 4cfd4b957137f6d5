"""Experiment configs: the YAML schema, loading, and validation that reports every problem at once.

Each problem is one line `FILE:LINE: key.path: what is wrong (what was expected)`. Validation reads
files (encoder directory, task data) but never writes: a bad config leaves the disk untouched.
Relative paths are resolved against the directory of the config file (a config and its data travel
together); command-line overrides (`KEY.PATH=VALUE`, `apply_overrides`) against the working directory.
Numbers must be finite and in range, seeds fit numpy's seeding (0 <= seed < 2**32), and names that become paths are identifiers
(`xstilts.names`).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, ValidationInfo, field_validator

from xstilts.chain_modes import FULL, ChainModeName, MergeMethodName, chain_mode
from xstilts.errors import ConfigError, DataError
from xstilts.files import read_text
from xstilts.names import Name, name_problem
from xstilts.rundir.layout import foreign_files
from xstilts.settings import (
    AdapterSettings,
    EmbeddingSettings,
    LatencySettings,
    Settings,
    TrainingOverrides,
    resolve_settings,
)
from xstilts.tasks.registry import LocalFiles, TaskRegistry, TaskSpec, default_registry
from xstilts.terms import SelectionRule, UserTaskKind
from xstilts.tracking import TrackerName, check_available

log = logging.getLogger(__name__)
Loc = tuple[Any, ...]
MAX_ALL_ORDERS = 10_000  # `orders: {all: true}` beyond this is a mistake, not a study


def _base_dir(info: ValidationInfo) -> Path | None:
    """The directory relative paths start from: the config file's (validation context), else the working directory."""
    base = (info.context or {}).get("base_dir")
    return Path(base) if base is not None else None


def _absolute(path: Path, info: ValidationInfo) -> Path:
    """Resolved once, when the config is read, so that the resolved config saved in the run works from anywhere.

    An input that exists only relative to the working directory (configs written before paths were
    config-relative) is still found there, with a warning.
    """
    path = path.expanduser()
    base = _base_dir(info)
    if path.is_absolute() or base is None:
        return path.absolute()
    beside_config = Path(os.path.normpath((base / path).absolute()))  # runs/../data reads as data
    legacy = path.absolute()
    if not beside_config.exists() and legacy.exists() and legacy != beside_config and info.field_name != "output_dir":
        log.warning(
            "%s: %s is not there relative to the config file (%s) but is relative to the working directory; "
            "using it. Relative paths in a config are read from the config file's directory: write %s",
            info.field_name,
            path,
            base,
            os.path.relpath(legacy, base),
        )
        return legacy
    return beside_config


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]


def _absolute_if_local(encoder: str, info: ValidationInfo) -> str:
    """A local encoder directory as an absolute path (relative ones as data paths are); a hub id as written."""
    if not encoder.startswith((".", "/", "~")) and not any(
        (base / encoder).exists() for base in (_base_dir(info) or Path.cwd(), Path.cwd())
    ):
        return encoder  # a hub id such as xlm-roberta-large
    return str(_absolute(Path(encoder), info))


Seed = Annotated[int, Field(ge=0, lt=2**32, description="0 <= seed < 2**32 (numpy's seeding range).")]
PositiveInt = Annotated[int, Field(gt=0)]


def _spec_default(field_name: str) -> Any:
    """The default a `TaskSpec` field has: a user's task definition defaults to what a built-in task does."""
    return TaskSpec.__dataclass_fields__[field_name].default


class TaskDefinition(Settings):
    """A task of the user's own: their files, one of the known kinds."""

    kind: UserTaskKind
    languages: list[Name] = Field(min_length=1, description="Languages with an evaluation file.")
    data_dir: AbsolutePath = Field(description="Directory with {split}-{language}.jsonl files in the kind's schema.")
    labels: Optional[list[str]] = Field(None, description="Label set (classification, tagging).")
    num_choices: Optional[int] = Field(None, gt=1, description="Multiple choice: candidates per example.")
    allow_no_answer: bool = Field(
        _spec_default("allow_no_answer"), description="QA: SQuAD v2.0-style unanswerable questions."
    )
    metric: Optional[str] = None
    train_language: Name = _spec_default("train_language")
    dev_languages: list[Name] = Field(
        default_factory=list,
        description="Languages with a labelled dev file besides train_language (dev-<lang>.jsonl).",
    )
    eval_split: Name = _spec_default("eval_split")
    parallel: Optional[Literal["line", "id"]] = Field(
        _spec_default("parallel"),
        description="The dev and test sets hold the same items in every language: 'line' (line i of each language's "
        "file is one item) or 'id' (QA: matched by question id); intervals then draw an item in every language at "
        "once. null: each language is its own sample.",
    )
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    description: str = _spec_default("description")

    def to_spec(self, name: str) -> TaskSpec:
        return TaskSpec(
            name=name,
            kind=self.kind,
            languages=tuple(self.languages),
            data=LocalFiles(self.data_dir),
            labels=tuple(self.labels or ()),
            num_choices=self.num_choices,
            allow_no_answer=self.allow_no_answer,
            metric=self.metric or "",
            train_language=self.train_language,
            eval_split=self.eval_split,
            dev_languages=tuple(self.dev_languages),
            training_defaults=self.training.model_dump(exclude_none=True),
            description=self.description,
            parallel=self.parallel,
        )


def _task_shorthand(value: Any) -> Any:
    """Allow `- mnli` for `- {task: mnli}` in chain and targets."""
    return {"task": value} if isinstance(value, str) else value


class VariantDefinition(Settings):
    """A built-in task read from other files, e.g. its training data machine-translated (translate-train).

    The variant keeps the base task's kind, labels and metric; `data_dir` holds files in the
    prepared layout ({split}-{language}.jsonl) and `train_language` names the training/dev language.
    """

    base: Name = Field(description="The built-in or config-defined task this is a variant of.")
    data_dir: AbsolutePath
    train_language: Optional[Name] = Field(
        None, description="Language of the train and dev files; default: the base task's."
    )
    description: str = ""


class MixtureTask(Settings):
    """A member of a mixture; members naming the same `head` share one head (same kind and labels)."""

    task: Name
    head: Optional[Name] = Field(None, description="Shared head name; default: the task's own head.")


class MaskedLMConfig(Settings):
    """Masked LM on multilingual text as a mixture member (the paper's MLM alternative)."""

    data_dir: AbsolutePath = Field(
        description="Directory with one {language}.txt file per language, one text per line."
    )
    languages: list[Name] = Field(min_length=1)
    max_examples_per_language: Optional[int] = Field(None, gt=0)
    max_length: int = Field(128, ge=16, le=1_000_000)


class MixtureConfig(Settings):
    """Several tasks trained together in one stage; each optimizer step trains one member drawn by `sampler`."""

    tasks: list[MixtureTask] = Field(min_length=1)
    sampler: Literal["proportional", "temperature", "uniform", "capped"] = "proportional"
    temperature: float = Field(2.0, gt=0, le=1000, description="temperature sampler: p ∝ size^(1/T).")
    cap: Optional[int] = Field(None, gt=0, description="capped sampler: p ∝ min(size, cap).")
    mlm: Optional[MaskedLMConfig] = None
    training: TrainingOverrides = Field(
        default_factory=TrainingOverrides, description="Overrides for the mixture's stage."
    )

    _tasks_shorthand = field_validator("tasks", mode="before")(
        lambda cls, v: [_task_shorthand(x) for x in v] if isinstance(v, list) else v
    )


class StageConfig(Settings):
    """One intermediate stage of the chain."""

    task: Name
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    reuse_heads: bool = Field(
        False, description="Start this stage's head from the previous stage's head of the same task, if present."
    )


class TargetConfig(Settings):
    """A target task: fine-tuned on its English training data, evaluated zero-shot in `languages`.

    Retrieval targets (bucc2018, tatoeba) are not fine-tuned: the encoder after each prefix is used
    as it is, with the `embedding` settings.
    """

    task: Name
    languages: Optional[list[Name]] = Field(None, description="Evaluation languages; default: all of the task's.")
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)


class OrdersConfig(Settings):
    """How a study orders its pool of intermediate tasks; the orders of all three kinds are combined."""

    explicit: list[list[Name]] = Field(default_factory=list, description="Orders given task by task.")
    random: int = Field(0, ge=0, le=100_000, description="This many random permutations of the pool.")
    random_seed: Seed = Field(0, description="Seed of the random permutations.")
    singles: bool = Field(False, description="Every pool task alone (chains of length 1).")
    all: bool = Field(
        False, description="Every ordering of K tasks from the pool (the exhaustive study; small pools only)."
    )


class PositiveControl(Settings):
    """A chain built to help one target (for example lots of English data of the target's own kind): its gain over
    k = 0 must come out above zero beyond its interval, or the study cannot detect an effect of that size."""

    task: Name = Field(description="The intermediate task (or mixture) of the one-task control chain.")
    targets: list[Name] = Field(min_length=1, description="The targets it is built to help.")
    training: TrainingOverrides = Field(default_factory=TrainingOverrides, description="Overrides for this stage.")


class ControlsConfig(Settings):
    """Known-answer checks reported beside the study, never averaged into it."""

    a_a: Union[bool, list[Name]] = Field(
        False,
        description="Fine-tune the target(s) on the pretrained encoder again under other seeds (each of k = 0's seeds "
        "+ 1000) and report the 'gain' over k = 0, analysed exactly as the study's "
        "gains: it must come out inside its interval (Holm over the targets, so a false alarm on any of them has a "
        "5% chance). true: every trainable target; or a list of targets.",
    )
    positive: list[PositiveControl] = Field(default_factory=list)


class SearchConfig(Settings):
    """Grow chains from the pool instead of enumerating orders (xstilts.study.search)."""

    strategy: Literal["greedy", "beam"] = Field(
        "greedy", description="greedy: keep the best prefix; beam: the best `width`."
    )
    width: int = Field(2, ge=1, le=1000, description="Beam: prefixes extended each round (greedy: 1).")
    budget: Optional[int] = Field(
        None,
        gt=0,
        description="At most this many intermediate stages trained, every seed and chain mode counted (a prefix under "
        "3 seeds and 1 mode is 3 stages), as `xstilts plan` counts them; null: no limit.",
    )
    guide: Literal["dev", "estimate"] = Field(
        "dev",
        description="What ranks prefixes: the targets' mean dev score, or the transfer estimate of the diagnostics "
        "(no target fine-tunes until the chain is found).",
    )


class CombineConfig(Settings):
    """The combination study: for each task set of the study's chains, other ways to combine the same tasks than
    training them one after another, compared on the same targets (xstilts.results.combination)."""

    methods: list[MergeMethodName] = Field(
        default_factory=lambda: ["task_arithmetic", "ties", "dare_ties"],
        description="Merges of the set's single-task stages (k = 1 prefixes trained from the pretrained encoder); "
        "[]: none.",
    )
    weights: list[float] = Field(
        default_factory=lambda: [0.5, 1.0],
        min_length=1,
        description="The grid of lambda (each task vector's weight); the setting is chosen on dev per method and set.",
    )
    densities: list[float] = Field(
        default_factory=lambda: [0.2, 0.5],
        min_length=1,
        description="The grid of densities (the fraction of each task vector kept) of TIES and DARE.",
    )
    mixture: bool = Field(
        True, description="Also train one multi-task stage on the set's tasks (proportional sampling) per set."
    )
    sets: Optional[list[list[Name]]] = Field(
        None,
        description="The task sets to combine; null: the set of every chain of the study of length 2 or more.",
    )

    _weights = field_validator("weights")(lambda cls, v: _grid_values(v, 10.0))
    _densities = field_validator("densities")(lambda cls, v: _grid_values(v, 1.0))


def _grid_values(values: list[float], largest: float) -> list[float]:
    if any(not (0 < value <= largest) for value in values):
        raise ValueError(f"every value must be in (0, {largest:g}]")
    if len(set(values)) != len(values):
        raise ValueError("a value appears twice")
    return values


class StudyConfig(Settings):
    """The sequential-scaling study: chains of k = 0..max_chain_length tasks from a pool, over orders and seeds."""

    pool: list[Name] = Field(min_length=1, description="Intermediate tasks the orders are drawn from.")
    orders: OrdersConfig = Field(default_factory=OrdersConfig)
    max_chain_length: Optional[int] = Field(None, ge=0, description="K; default: the pool's size.")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    baseline_runs: int = Field(
        3,
        ge=1,
        le=1000,
        description="k = 0 is fine-tuned under at least this many seeds (the study's seeds, then the next unused "
        "integers): every gain is measured against k = 0, so its own training noise must be measured too. It costs "
        "target fine-tunes only. 1: the gains' intervals leave k = 0's training noise out and carry no verdict.",
    )
    search: Optional[SearchConfig] = Field(
        None, description="Search the chains (greedy or beam on dev scores) instead of running given orders."
    )
    evaluate_on: Optional[list[list[Name]]] = Field(
        None,
        description="Fine-tune and evaluate the targets only after these chains ([] is k = 0); null: after every prefix.",
    )
    combine: Optional[CombineConfig] = Field(
        None,
        description="Compare sequential chains with merges (task arithmetic, TIES, DARE) and a multi-task mixture of "
        "the same tasks.",
    )


def baseline_seeds(study: StudyConfig) -> list[int]:
    """The seeds k = 0 is fine-tuned under: the study's seeds, then the next unused integers, at least
    `study.baseline_runs` of them."""
    seeds = list(study.seeds)
    candidate = max(seeds) + 1
    while len(seeds) < study.baseline_runs:
        if candidate not in seeds:
            seeds.append(candidate)
        candidate += 1
    return seeds


def control_seeds(config: ExperimentConfig) -> list[int]:
    """The seeds every control runs under: k = 0's seeds (`baseline_seeds`; two for a single chain), so that a
    control's own training noise is measured as the study's is, from as many runs as k = 0 has."""
    return baseline_seeds(config.study) if config.study else [config.seed, config.seed + 1]


class DiagnosticsConfig(Settings):
    """Per-prefix diagnostics, no fine-tuning (xstilts.evaluate.diagnostics): drift, alignment, transfer estimates."""

    probe_sentences: int = Field(
        500, gt=1, le=100_000, description="Drift: sentences of the targets' dev text, spread over their languages."
    )
    parallel_dir: Optional[AbsolutePath] = Field(
        None, description="Alignment: en.txt and <lang>.txt files aligned line by line; none: no alignment."
    )
    parallel_sentences: int = Field(500, gt=1, le=100_000, description="Alignment: sentence pairs per language.")
    estimators: list[Literal["logme", "knn"]] = Field(
        default_factory=lambda: ["logme", "knn"], description="Transferability estimators of each target."
    )
    estimate_examples: int = Field(
        1000, gt=1, le=1_000_000, description="Estimates: the target's English training examples used."
    )
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per probe sentence or estimation feature.")
    forgetting: bool = Field(
        True, description="Score every earlier task of the chain on English dev: its own head, and a fresh probe."
    )
    forgetting_examples: int = Field(
        500, gt=1, le=1_000_000, description="Forgetting: dev examples scored, training examples the probe sees."
    )
    probe_steps: int = Field(200, gt=0, le=1_000_000, description="Forgetting: optimizer steps of each probe head.")


class ExperimentConfig(Settings):
    """One X-STILTs experiment: an encoder, a chain of intermediate stages, and target tasks."""

    name: str = "experiment"
    encoder: Annotated[str, AfterValidator(_absolute_if_local)] = Field(
        description="Hugging Face hub id or local directory of a pretrained encoder."
    )
    output_dir: AbsolutePath
    data_dir: AbsolutePath = Field(
        Path("data"),
        validate_default=True,
        description="Prepared data of the built-in tasks (`xstilts data prepare --output-dir`): <data_dir>/<task>/.",
    )
    seed: Seed = 0
    tasks: dict[Name, TaskDefinition] = Field(default_factory=dict, description="Tasks defined by this config.")
    variants: dict[Name, VariantDefinition] = Field(
        default_factory=dict, description="Built-in tasks read from other files (translated training data)."
    )
    mixtures: dict[Name, MixtureConfig] = Field(
        default_factory=dict,
        description="Multi-task stages; a mixture's name can stand wherever a chain or pool task can.",
    )
    chain: list[StageConfig] = Field(default_factory=list)
    targets: list[TargetConfig] = Field(min_length=1)
    training: TrainingOverrides = Field(
        default_factory=TrainingOverrides, description="Overrides for every stage and target."
    )
    selection: SelectionRule = Field(
        "dev",
        description="How the report chooses (best chain length, intermediate task, model per target): on the mean over "
        "each target's dev languages (dev, as the paper), or on English dev only (dev-en, strictly zero-shot). Choices "
        "never read test results; they are reported on test.",
    )
    controls: ControlsConfig = Field(
        default_factory=ControlsConfig, description="A/A and positive controls (reported apart from the study)."
    )
    evaluate_every_prefix: bool = Field(
        False,
        description="Fine-tune and evaluate the targets after every prefix of the chain (k = 0..K), not only after the whole chain.",
    )
    study: Optional[StudyConfig] = Field(
        None, description="Many chains from a pool of tasks instead of `chain` (targets after every prefix)."
    )
    chain_modes: list[ChainModeName] = Field(
        default_factory=lambda: [FULL],
        min_length=1,
        description="How each stage changes the encoder; several modes run side by side (see xstilts.train.adapters).",
    )
    adapters: AdapterSettings = Field(
        default_factory=AdapterSettings, description="LoRA / bottleneck settings of the adapter chain modes."
    )
    latency: Optional[LatencySettings] = Field(
        None, description="Time the target models against chain length when the run ends."
    )
    keep: Literal["all", "needed"] = Field(
        "all",
        description="all: keep every stage's weights; needed: delete a stage's weights once nothing left to run needs them "
        "(records, evaluations and predictions stay; a later run that needs them retrains that stage).",
    )
    diagnostics: Optional[DiagnosticsConfig] = Field(
        None, description="Diagnose the encoder after every prefix (k = 0 included): drift, alignment, estimates."
    )
    trackers: list[TrackerName] = Field(
        default_factory=list,
        description="Experiment trackers (tensorboard, wandb, mlflow; their packages are extras): one run per stage, "
        "grouped under the study, with the settings, losses, learning rate, dev metrics and scores.",
    )
    checkpoint_every_steps: Optional[int] = Field(
        500,
        gt=0,
        description="Checkpoint a training stage every N optimizer steps so a killed run resumes mid-stage; null: only whole stages resume.",
    )

    _chain_shorthand = field_validator("chain", mode="before")(
        lambda cls, v: [_task_shorthand(x) for x in v] if isinstance(v, list) else v
    )
    _targets_shorthand = field_validator("targets", mode="before")(
        lambda cls, v: [_task_shorthand(x) for x in v] if isinstance(v, list) else v
    )

    def registry(self) -> TaskRegistry:
        """The built-in tasks, reading from `data_dir`, plus this config's own."""
        registry = builtin_registry(self.data_dir)
        for name, definition in self.tasks.items():
            registry.add(definition.to_spec(name), replace=False)
        for name, variant in self.variants.items():
            registry.add(variant_spec(name, variant, registry.get(variant.base)))
        return registry

    def target_languages(self, target: TargetConfig, registry: TaskRegistry) -> list[str]:
        return list(target.languages or registry.get(target.task).languages)


def variant_spec(name: str, variant: VariantDefinition, base: TaskSpec) -> TaskSpec:
    spec = base.with_data_dir(variant.data_dir)
    return dataclasses.replace(
        spec,
        name=name,
        train_language=variant.train_language or base.train_language,
        description=variant.description or f"{base.name} from {variant.data_dir}",
        sources=None,
    )


def builtin_registry(data_dir: Path) -> TaskRegistry:
    """The built-in catalogue with every task reading its prepared files from `data_dir/<task>`."""
    base = default_registry()
    return TaskRegistry(base.get(name).with_data_dir(Path(data_dir) / name) for name in base.names())


# --- loading -------------------------------------------------------------------------------------


def format_loc(loc: Loc) -> str:
    """('chain', 0, 'task') -> 'chain[0].task'; a key that is not a plain name is quoted: tasks['a.b']."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif name_problem(part) is None:
            text += f".{part}" if text else str(part)
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the key (or list item) at `loc`, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if entry is None:
                break
            node, line = entry[1], entry[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe_pydantic_error(error: dict[str, Any], model: type[BaseModel]) -> tuple[Loc, str]:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown key{hint}; expected one of: {', '.join(known) or 'a known key'}"
    if error["type"] == "missing":
        return loc, "required key is missing"
    if loc and loc[-1] == "[key]":  # a dict key (a task, variant or mixture name) failed its own check
        return loc[:-1], error["msg"].removeprefix("Value error, ")
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and not isinstance(error["input"], (dict, list)) and error["type"] != "value_error":
        message += f" (got {error['input']!r})"
    return loc, message


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` (to list its allowed keys)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, str) and part in current.model_fields:
            current = _inner_model(current.model_fields[part].annotation)
        # An int index (list) or a free key (dict[str, Model], like a task name) keeps the value model.
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """Model inside list[X], dict[str, X] or Optional[X]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _unknown(kind: str, value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = (", ".join(known) if len(known) <= 45 else ", ".join(known[:45]) + ", ...") or "(none registered)"
    return f"unknown {kind} {value!r}{hint}; expected one of: {shown}"


def _semantic_problems(config: ExperimentConfig, config_dir: Path | None = None) -> list[tuple[Loc, str]]:
    """Cross-references pydantic cannot check: task names, languages, files on disk."""
    registry = builtin_registry(config.data_dir)
    problems = _own_task_problems(config, registry)
    problems += _mode_problems(config)
    problems += _repetition_problems(config)
    problems += _environment_problems(config, config_dir)
    shared_settings_ok = _settings_problem(problems, ("training",), "classification", config.training)
    problems += _chain_problems(config, registry, shared_settings_ok)
    problems += _target_problems(config, registry, shared_settings_ok)
    problems += _search_problems(config, registry)
    problems += _control_problems(config, registry)
    return problems


def _search_problems(config: ExperimentConfig, registry: TaskRegistry) -> list[tuple[Loc, str]]:
    """A search that could not rank anything, or whose budget pays for no prefix."""
    search = config.study.search if config.study else None
    if search is None:
        return []
    problems: list[tuple[Loc, str]] = []
    targets = [registry.get(t.task) for t in config.targets if t.task in registry]
    if search.guide == "dev" and targets and not any(spec.has_dev and not spec.dev_is_test for spec in targets):
        problems.append(
            (
                ("study", "search", "guide"),
                "guide: dev ranks chains by the targets' dev scores, but none of "
                f"{', '.join(spec.name for spec in targets)} has a dev split it may choose on (no dev split, or a dev "
                "read from the test files); add a target with one, or use guide: estimate",
            )
        )
    runs = len(config.study.seeds) * len(config.chain_modes)
    if search.budget is not None and search.budget < runs:
        problems.append(
            (
                ("study", "search", "budget"),
                f"budget: {search.budget} stages pay for no prefix (each costs {runs}: one per seed and chain mode)",
            )
        )
    return problems


def _own_task_problems(config: ExperimentConfig, registry: TaskRegistry) -> list[tuple[Loc, str]]:
    """The config's own tasks, variants and mixtures, added to `registry` when they are usable."""
    problems: list[tuple[Loc, str]] = []
    for name, definition in config.tasks.items():
        if name in registry:
            problems.append((("tasks", name), f"a built-in task is called {name!r}; choose another name"))
            continue
        if definition.kind in ("classification", "tagging") and not definition.labels:
            problems.append((("tasks", name, "labels"), f"a {definition.kind} task needs its list of labels"))
        problems += _repeated(("tasks", name, "labels"), definition.labels or [], "label")
        if not definition.data_dir.is_dir():
            problems.append((("tasks", name, "data_dir"), f"directory not found: {definition.data_dir}"))
            continue
        registry.add(definition.to_spec(name))
    for name, variant in config.variants.items():
        if name in registry:
            problems.append((("variants", name), f"a task is already called {name!r}; choose another name"))
        elif _known_task(registry, variant.base, ("variants", name, "base"), problems) is not None:
            spec = variant_spec(name, variant, registry.get(variant.base))
            registry.add(spec)
            problems += _missing_files(
                spec, [spec.train_split, spec.dev_split], [spec.train_language], ("variants", name, "data_dir")
            )
    for name, mixture in config.mixtures.items():
        problems += _mixture_problems(name, mixture, registry)
    return problems


def _mode_problems(config: ExperimentConfig) -> list[tuple[Loc, str]]:
    """Chain modes with the settings or the keep policy they cannot work with."""
    problems: list[tuple[Loc, str]] = []
    for mode in config.chain_modes:
        if chain_mode(mode).stacked and config.adapters.tuning_for(mode) == "full":
            problems.append(
                (
                    ("adapters", "target_tuning"),
                    f"target_tuning: full is not available with {mode} (the stacked adapters stay separate modules); use adapter",
                )
            )
    if config.latency is not None and config.keep == "needed":
        problems.append((("latency",), "latency needs the trained target models; use keep: all"))
    if len(set(config.chain_modes)) != len(config.chain_modes):
        problems.append((("chain_modes",), "a mode appears twice"))
    return problems


def _repetition_problems(config: ExperimentConfig) -> list[tuple[Loc, str]]:
    """Anything listed twice where it must be once."""
    problems: list[tuple[Loc, str]] = []
    problems += _repeated(
        ("targets",), [t.task for t in config.targets], "target (its results would overwrite each other)"
    )
    for i, target in enumerate(config.targets):
        problems += _repeated(("targets", i, "languages"), target.languages or [], "language")
    for name, definition in config.tasks.items():
        problems += _repeated(("tasks", name, "languages"), definition.languages, "language")
    if config.study is not None:
        problems += _repeated(("study", "pool"), config.study.pool, "task")
        problems += _repeated(("study", "seeds"), config.study.seeds, "seed")
    return problems + _case_collisions(config)


def _case_collisions(config: ExperimentConfig) -> list[tuple[Loc, str]]:
    """Names that differ only in case: on macOS and Windows (case-insensitive file systems) their directories and
    files would be one, and one task's or language's results would overwrite the other's."""
    problems: list[tuple[Loc, str]] = []
    builtin = set(default_registry().names())
    for index, name in enumerate(config.tasks):
        earlier = [*builtin, *list(config.tasks)[:index]]  # each pair once, at the later name
        other = next((o for o in earlier if o != name and o.casefold() == name.casefold()), None)
        if other is not None:
            problems.append((("tasks", name), _case_message(name, other, "task")))
    lists = [(("targets", i, "languages"), t.languages or []) for i, t in enumerate(config.targets)]
    lists += [(("tasks", name, "languages"), d.languages) for name, d in config.tasks.items()]
    for loc, languages in lists:
        seen: dict[str, str] = {}
        for index, language in enumerate(languages):
            first = seen.setdefault(language.casefold(), language)
            if first != language:
                problems.append((loc + (index,), _case_message(language, first, "language")))
    return problems


def _case_message(name: str, other: str, what: str) -> str:
    return (
        f"{what} {name!r} differs from {other!r} only in case; their files would be one on case-insensitive file "
        "systems (macOS, Windows): rename one"
    )


def _environment_problems(config: ExperimentConfig, config_dir: Path | None) -> list[tuple[Loc, str]]:
    """The output directory, the encoder, trackers and the files a search or the diagnostics need."""
    problems: list[tuple[Loc, str]] = []
    if config.study is not None and "seed" in config.model_fields_set and config.seed != 0:  # 0: older resolved configs
        problems.append(
            (
                ("seed",),
                f"a study takes its seeds from study.seeds (seed would change nothing); set study.seeds: [{config.seed}]",
            )
        )
    problems += _output_dir_problems(Path(config.output_dir), config_dir)
    search = config.study.search if config.study else None
    if search is not None and search.guide == "estimate" and not (config.diagnostics and config.diagnostics.estimators):
        problems.append(
            (
                ("study", "search", "guide"),
                "guide: estimate ranks by the diagnostics' estimates: add a `diagnostics` block",
            )
        )
    parallel = config.diagnostics.parallel_dir if config.diagnostics else None
    if parallel is not None and not (parallel / "en.txt").is_file():
        problems.append((("diagnostics", "parallel_dir"), f"{parallel}: expected en.txt and <lang>.txt files in it"))
    problems += [(("trackers",), problem) for problem in check_available(sorted(set(config.trackers)))]
    problems += _repeated(("trackers",), list(config.trackers), "tracker")
    encoder = config.encoder
    looks_local = encoder.startswith((".", "/", "~")) or Path(encoder).expanduser().exists()
    if looks_local and not Path(encoder).expanduser().is_dir():
        problems.append((("encoder",), f"directory not found: {encoder}"))
    return problems


def _chain_problems(
    config: ExperimentConfig, registry: TaskRegistry, shared_settings_ok: bool
) -> list[tuple[Loc, str]]:
    """The study's pool or the chain's stages: known, trainable tasks with their files."""
    problems: list[tuple[Loc, str]] = []
    if config.study is not None:
        problems += _study_problems(config.study, config.chain, registry, config.mixtures)
        if config.study.combine is not None:
            problems += _combine_problems(config)
    for i, stage in enumerate(config.chain):
        if stage.task in config.mixtures:
            continue
        spec = _known_task(registry, stage.task, ("chain", i, "task"), problems)
        if spec is None:
            continue
        if shared_settings_ok:
            _settings_problem(
                problems, ("chain", i, "training"), spec.kind, spec.training_defaults, config.training, stage.training
            )
        if not spec.trainable:
            problems.append(
                (
                    ("chain", i, "task"),
                    f"{spec.name} is a {spec.kind} task with no training data; it can only be a target",
                )
            )
            continue
        problems += _missing_files(
            spec, [spec.train_split, spec.dev_split], [spec.train_language], ("chain", i, "task")
        )
    return problems


def _target_problems(
    config: ExperimentConfig, registry: TaskRegistry, shared_settings_ok: bool
) -> list[tuple[Loc, str]]:
    """Targets: known tasks, their languages and their files."""
    problems: list[tuple[Loc, str]] = []
    for i, target in enumerate(config.targets):
        spec = _known_task(registry, target.task, ("targets", i, "task"), problems)
        if spec is None:
            continue
        languages = config.target_languages(target, registry)
        for j, language in enumerate(target.languages or []):
            if language not in spec.languages:
                problems.append(
                    (
                        ("targets", i, "languages", j),
                        _unknown(f"language for task {spec.name}", language, list(spec.languages)),
                    )
                )
        if not spec.trainable:
            problems += _missing_retrieval_files(
                spec, [lang for lang in languages if lang in spec.languages], ("targets", i, "languages")
            )
            continue
        if shared_settings_ok:
            _settings_problem(
                problems,
                ("targets", i, "training"),
                spec.kind,
                spec.training_defaults,
                config.training,
                target.training,
            )
        problems += _missing_files(
            spec, [spec.train_split, spec.dev_split], [spec.train_language], ("targets", i, "task")
        )
        valid = [lang for lang in languages if lang in spec.languages]
        problems += _missing_files(spec, [spec.eval_split], valid, ("targets", i, "languages"))
    return problems


def _control_problems(config: ExperimentConfig, registry: TaskRegistry) -> list[tuple[Loc, str]]:
    """A positive control names a trainable intermediate task (or a mixture) and targets of this config."""
    problems: list[tuple[Loc, str]] = []
    targets = [t.task for t in config.targets]
    for j, target in enumerate(config.controls.a_a if isinstance(config.controls.a_a, list) else []):
        if target not in targets:
            problems.append((("controls", "a_a", j), _unknown("target of this config", target, targets)))
    for i, control in enumerate(config.controls.positive):
        where = ("controls", "positive", i)
        if control.task not in config.mixtures:
            spec = _known_task(registry, control.task, (*where, "task"), problems)
            if spec is not None and not spec.trainable:
                problems.append(((*where, "task"), f"{spec.name} is a {spec.kind} task with no training data"))
            elif spec is not None:
                problems += _missing_files(spec, [spec.train_split, spec.dev_split], [spec.train_language], where)
        for j, target in enumerate(control.targets):
            if target not in targets:
                problems.append(((*where, "targets", j), _unknown("target of this config", target, targets)))
    return problems


def _repeated(loc: Loc, values: list[Any], what: str) -> list[tuple[Loc, str]]:
    """A problem at the second occurrence of the first value that appears twice."""
    seen: set[Any] = set()
    for index, value in enumerate(values):
        if value in seen:
            return [(loc + (index,), f"{value!r} appears twice; each {what} may appear once")]
        seen.add(value)
    return []


def _output_dir_problems(output_dir: Path, config_dir: Path | None) -> list[tuple[Loc, str]]:
    """The run directory must be a directory we can create or write (checked before anything is written), and
    one a run may fill: new, empty, an earlier run, or the config's own folder (`output_dir: .` beside it). A run
    never scatters its files among files it did not write."""
    if output_dir.exists() and not output_dir.is_dir():
        return [(("output_dir",), f"{output_dir} exists and is not a directory")]
    own_folder = config_dir is not None and output_dir.absolute().resolve() == config_dir.resolve()
    foreign = [] if own_folder else foreign_files(output_dir)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        return [
            (
                ("output_dir",),
                f"{output_dir} holds files that are not a run's ({shown}); a run writes only into a new or empty "
                "folder, an earlier run, or its config's own folder: choose another output_dir",
            )
        ]
    existing = next((p for p in [output_dir, *output_dir.absolute().parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return [(("output_dir",), f"cannot create {output_dir}: {existing} is a file")]
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return [(("output_dir",), f"cannot write to {existing} (permission denied); choose another output_dir")]
    return []


def _mixture_problems(name: str, mixture: MixtureConfig, registry: TaskRegistry) -> list[tuple[Loc, str]]:
    """Members known and trainable, shared heads between compatible tasks, the capped sampler's cap, MLM files."""
    problems: list[tuple[Loc, str]] = []
    loc = ("mixtures", name)
    if name in registry:
        problems.append((loc, f"a task is already called {name!r}; choose another name for the mixture"))
    heads: dict[str, TaskSpec] = {}
    for i, member in enumerate(mixture.tasks):
        spec = _known_task(registry, member.task, loc + ("tasks", i, "task"), problems)
        if spec is None:
            continue
        if not spec.trainable:
            problems.append((loc + ("tasks", i, "task"), f"{spec.name} is a {spec.kind} task with no training data"))
            continue
        problems += _missing_files(
            spec, [spec.train_split, spec.dev_split], [spec.train_language], loc + ("tasks", i, "task")
        )
        shared = heads.setdefault(member.head or spec.name, spec)
        if (shared.kind, shared.labels, shared.num_choices) != (spec.kind, spec.labels, spec.num_choices):
            problems.append(
                (
                    loc + ("tasks", i, "head"),
                    f"{spec.name} cannot share head {member.head!r} with {shared.name}: the kind, labels or number of choices differ",
                )
            )
    if len({m.task for m in mixture.tasks}) != len(mixture.tasks):
        problems.append((loc + ("tasks",), "a task appears twice in the mixture"))
    if mixture.sampler == "capped" and mixture.cap is None:
        problems.append((loc + ("cap",), "the capped sampler needs a cap (examples per task)"))
    if mixture.mlm is not None:
        for j, language in enumerate(mixture.mlm.languages):
            path = mixture.mlm.data_dir / f"{language}.txt"
            if not path.is_file():
                problems.append(_MissingData((loc + ("mlm", "languages", j), f"masked-LM text file not found: {path}")))
    return problems


def _combine_problems(config: ExperimentConfig) -> list[tuple[Loc, str]]:
    """The combination study merges single-task stages of full chains, of pool tasks, in sets of two or more."""
    study, combine, loc = config.study, config.study.combine, ("study", "combine")
    problems: list[tuple[Loc, str]] = []
    if FULL not in config.chain_modes:
        problems.append((loc, f"merges combine full fine-tunes: add {FULL!r} to chain_modes (or remove combine)"))
    if study.search is not None:
        problems.append(
            (loc, "a searching study's chains are found as it runs: combine the sets it found in a study of orders")
        )
    if combine.sets is None and any(task in config.mixtures for task in study.pool):
        problems.append((loc + ("sets",), "the pool holds mixtures: name the sets of tasks to combine"))
    if not combine.methods and not combine.mixture:
        problems.append((loc, "nothing to combine: give methods, or mixture: true"))
    for i, tasks in enumerate(combine.sets or []):
        for j, task in enumerate(tasks):
            if task not in study.pool or task in config.mixtures:
                problems.append((loc + ("sets", i, j), f"{task!r} is not a task of the study's pool"))
        if len(set(tasks)) != len(tasks) or len(tasks) < 2:
            problems.append((loc + ("sets", i), "a set holds two or more different tasks"))
    limit = len(study.pool) if study.max_chain_length is None else min(study.max_chain_length, len(study.pool))
    drawn = [len(study.pool)] if study.orders.random or study.orders.all else []
    longest = max([len(order) for order in study.orders.explicit] + drawn, default=1)
    if combine.sets is None and min(limit, longest) < 2:
        problems.append((loc, "the study's chains are shorter than 2 tasks: name the sets to combine (combine.sets)"))
    return problems


def _study_problems(
    study: StudyConfig, chain: list[StageConfig], registry: TaskRegistry, mixtures: dict[str, MixtureConfig]
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if chain:
        problems.append((("chain",), "give either `chain` or `study`, not both"))
    for i, task in enumerate(study.pool):
        if task in mixtures:
            continue
        spec = _known_task(registry, task, ("study", "pool", i), problems)
        if spec is not None and not spec.trainable:
            problems.append((("study", "pool", i), f"{task} is a {spec.kind} task with no training data"))
        elif spec is not None:
            problems += _missing_files(
                spec, [spec.train_split, spec.dev_split], [spec.train_language], ("study", "pool", i)
            )
    for i, order in enumerate(study.orders.explicit):
        for j, task in enumerate(order):
            if task not in study.pool:
                problems.append((("study", "orders", "explicit", i, j), f"{task!r} is not in the study's pool"))
    limit = len(study.pool) if study.max_chain_length is None else min(study.max_chain_length, len(study.pool))
    if study.orders.all and math.perm(len(study.pool), limit) > MAX_ALL_ORDERS:
        problems.append(
            (
                ("study", "orders", "all"),
                f"every ordering of {limit} of {len(study.pool)} tasks is {math.perm(len(study.pool), limit)} chains "
                f"(at most {MAX_ALL_ORDERS}); use random orders or `search`",
            )
        )
    for i, chain_ in enumerate(study.evaluate_on or []):
        for j, task in enumerate(chain_):
            if task not in study.pool:
                problems.append((("study", "evaluate_on", i, j), f"{task!r} is not in the study's pool"))
    has_orders = bool(study.orders.explicit or study.orders.random or study.orders.singles or study.orders.all)
    if study.search is not None and has_orders:
        problems.append((("study", "orders"), "a searching study grows its own chains: remove `orders` or `search`"))
    elif study.search is None and not has_orders:
        problems.append(
            (
                ("study", "orders"),
                "no orders: give explicit orders, a number of random ones, singles: true or all: true",
            )
        )
    if study.max_chain_length is not None and study.max_chain_length > len(study.pool):
        problems.append(
            (
                ("study", "max_chain_length"),
                f"{study.max_chain_length} is longer than the pool ({len(study.pool)} tasks)",
            )
        )
    if len(baseline_seeds(study)) < 2:
        log.warning(
            "study.baseline_runs: k = 0 is fine-tuned once, so its training noise cannot be measured; every gain's "
            "interval leaves it out and carries no verdict. Set study.baseline_runs: 3 (costs two target fine-tunes "
            "per target)"
        )
    return problems


def _settings_problem(problems: list[tuple[Loc, str]], loc: Loc, kind: str, *layers: Any) -> bool:
    """Check rules that span several keys (batch_size vs micro_batch_size) on the merged settings."""
    try:
        resolve_settings(kind, *layers)
    except ValidationError as error:
        problems += [(loc + tuple(e["loc"]), e["msg"]) for e in error.errors()]
        return False
    except ValueError as error:
        problems.append((loc, str(error)))
        return False
    return True


def _known_task(registry: TaskRegistry, name: str, loc: Loc, problems: list[tuple[Loc, str]]) -> TaskSpec | None:
    if name in registry:
        return registry.get(name)
    problems.append((loc, _unknown("task", name, registry.names())))
    return None


class _MissingData(tuple):
    """A problem that is only data not (yet) on disk: `run` refuses it, `xstilts plan` sizes the study anyway."""


def _missing_retrieval_files(spec: TaskSpec, languages: list[str], loc: Loc) -> list[tuple[Loc, str]]:
    """Retrieval data is read in place: the upstream files must lie under the task's data directory."""
    split = spec.required_split
    root = Path(spec.data.data_dir)
    layouts = spec.sources.local.get(split, ()) if spec.sources else ()
    missing = [lang for lang in languages if not any(layout.paths(root, split, lang) for layout in layouts)]
    if not missing:
        return []
    patterns = ", ".join(p for layout in layouts for p in layout.expected(split, missing[0]))
    return [
        _MissingData(
            (loc, f"{spec.name}: no {split} files for {', '.join(missing)} under {root} (for {missing[0]}: {patterns})")
        )
    ]


def _missing_files(spec: TaskSpec, splits: list[str], languages: list[str], loc: Loc) -> list[tuple[Loc, str]]:
    missing = [
        spec.data.path(split, lang)
        for split in splits
        for lang in languages
        if not spec.data.path(split, lang).is_file()
    ]
    return [_MissingData((loc, f"{spec.name}: data file not found: {path}")) for path in missing]


def parse_config(
    data: Any,
    source: str = "<config>",
    root: yaml.Node | None = None,
    require_data: bool = True,
    base_dir: Path | None = None,
    overridden: dict[Loc, str] | None = None,
) -> ExperimentConfig:
    """Validate already-loaded YAML data; raises ConfigError listing every problem with its key path.

    With `require_data=False`, data files that are not on disk yet are not problems (`xstilts plan` sizes a
    study before its data is downloaded; `missing_data` lists them). Relative paths start from `base_dir`
    (default: the working directory); `overridden` (from `apply_overrides`) names the command-line override
    behind a problem instead of a line of the file.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}:1: (top level): expected a mapping of keys (encoder, output_dir, chain, targets, ...)"]
        )
    try:
        config = ExperimentConfig.model_validate(data, context={"base_dir": base_dir})
        problems = [p for p in _semantic_problems(config, base_dir) if require_data or not isinstance(p, _MissingData)]
    except ValidationError as error:
        problems = [_describe_pydantic_error(e, ExperimentConfig) for e in error.errors()]
    if problems:
        raise ConfigError([_format_problem(source, root, loc, message, overridden or {}) for loc, message in problems])
    return config


def _format_problem(source: str, root: yaml.Node | None, loc: Loc, message: str, overridden: dict[Loc, str]) -> str:
    override = next(
        (text for key, text in overridden.items() if loc[: len(key)] == key or key[: len(loc)] == loc), None
    )
    if override is not None and loc:
        return f"override {override}: {format_loc(loc)}: {message}"
    line = _line_of(root, loc)
    where = f"{source}:{line}" if line else source
    return f"{where}: {format_loc(loc)}: {message}"


# Keys whose override values are paths: relative ones start from the working directory, as on any command line.
_PATH_KEYS = ("output_dir", "data_dir", "encoder")


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[Loc, str]:
    """Set each `KEY.PATH=VALUE` in the loaded YAML `data` (VALUE read as YAML: 2e-5, [0, 1], null, true).

    A list item is addressed by its index (`targets.0.task=xnli`). Returns each overridden key path with the
    override's text, for error messages; a malformed override raises ConfigError naming it.
    """
    overridden: dict[Loc, str] = {}
    for text in overrides:
        key, equals, raw = text.partition("=")
        if not equals or not key or any(not part for part in key.split(".")):
            raise ConfigError([f"override {text!r}: expected KEY.PATH=VALUE, e.g. training.learning_rate=2e-5"])
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError as error:
            raise ConfigError([f"override {text}: the value is not valid YAML ({error})"]) from None
        loc = tuple(int(part) if part.isdigit() else part for part in key.split("."))
        if loc[-1] in _PATH_KEYS and isinstance(value, str) and value:
            path = Path(value).expanduser()
            if not path.is_absolute() and (loc[-1] != "encoder" or path.exists()):
                value = str(path.absolute())
        _set_at(data, loc, value, text)
        overridden[loc] = text
    return overridden


def _set_at(data: Any, loc: Loc, value: Any, text: str) -> None:
    container = data
    for depth, part in enumerate(loc[:-1]):
        here = format_loc(loc[: depth + 1])
        if isinstance(container, dict):
            if not isinstance(container.get(part), (dict, list)):
                container[part] = {}
            container = container[part]
        elif isinstance(container, list) and isinstance(part, int) and part < len(container):
            if isinstance(container[part], str):  # a chain stage or target given by name only: `- mnli`
                container[part] = _task_shorthand(container[part])
            container = container[part]
        else:
            raise ConfigError([f"override {text}: {here}: no such item (a list is indexed 0..{len(container) - 1})"])
    last = loc[-1]
    if isinstance(container, list):
        if not isinstance(last, int) or last >= len(container):
            raise ConfigError([f"override {text}: {format_loc(loc)}: no such item in a list of {len(container)}"])
    elif not isinstance(container, dict):
        raise ConfigError([f"override {text}: {format_loc(loc[:-1])} is not a mapping"])
    container[last] = value


def missing_data(config: ExperimentConfig) -> list[str]:
    """`key.path: what is missing` for every data file the config needs that is not on disk."""
    return [
        f"{format_loc(problem[0])}: {problem[1]}"
        for problem in _semantic_problems(config)
        if isinstance(problem, _MissingData)
    ]


def load_config(
    path: str | Path,
    require_data: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
) -> ExperimentConfig:
    """Read and validate an experiment YAML file (yaml.safe_load; no code is executed), with command-line
    `overrides` (`KEY.PATH=VALUE`) applied first; relative paths in the file start from its directory.
    `seed` is the run's seed: `study.seeds: [seed]` for a study, `seed` otherwise.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError([f"{path}: is a directory; expected an experiment YAML file"])
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found"])
    try:
        text = read_text(path)
    except DataError as error:
        raise ConfigError([str(error)]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"{path}{line}: invalid YAML: {reason}"]) from None
    repeated = _repeated_keys(root, ())
    if repeated:  # YAML would silently keep the last value of each
        raise ConfigError(
            [
                f"{path}:{line}: {format_loc(loc)}: this key appears twice (first at line {first}); give it once"
                for loc, line, first in repeated
            ]
        )
    if seed is not None and isinstance(data, dict):
        overrides = [*overrides, f"study.seeds=[{seed}]" if isinstance(data.get("study"), dict) else f"seed={seed}"]
    overridden = apply_overrides(data, overrides) if isinstance(data, dict) else {}
    return parse_config(data, str(path), root, require_data, path.parent.absolute(), overridden)


def _repeated_keys(node: yaml.Node | None, loc: Loc) -> list[tuple[Loc, int, int]]:
    """(key path, line, line of its first occurrence) of every key given twice in one mapping."""
    found: list[tuple[Loc, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in first:
                found.append((loc + (name,), key.start_mark.line + 1, first[name]))
            first.setdefault(name, key.start_mark.line + 1)
            found += _repeated_keys(value, loc + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _repeated_keys(item, loc + (index,))
    return found


def config_to_yaml(config: ExperimentConfig) -> str:
    """The resolved config as YAML (saved beside the artifacts it produced)."""
    exclude = {"seed"} if config.study is not None else set()  # a study's seeds are study.seeds
    dumped = config.model_dump(mode="json", exclude_none=True, exclude=exclude)
    return yaml.safe_dump(dumped, sort_keys=False, allow_unicode=True)
