"""The records a run writes, typed: what each JSON file holds, in one place.

- `StageRecord` (stages/<id>-<task>/stage.json): a trained stage, written last, listing its files.
- `Evaluation` (stages/.../evaluations/<lang>.json, retrieval/.../<lang>.json): one target in one language.
- `ResultRow` (results/<chain>/<target>/<lang>.json): an evaluation placed in its chain.
- `RunPlan` (plan.json): the stage graph and every evaluation the run is to produce, so that status,
  report and latency never rebuild the plan from the config and the data.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from xstilts.chain_modes import FULL
from xstilts.terms import TEST


class StageRecord(TypedDict, total=False):
    identity: str
    role: str  # "intermediate" or "target"
    task: str  # the task, or the mixture's name
    kind: str  # a task kind, or "mixture"
    chain: list[str]  # the intermediate tasks behind the parent encoder, in order
    parent: str  # encoder the stage started from (relative to the stage store when it is one of its stages)
    parent_identity: str
    seed: int
    settings: dict[str, Any]
    reused_heads: list[str]
    train_examples: int
    train_features: int
    unknown_tags: dict[str, int]  # per open-label-set task (CCG): training tags mapped to the unknown class
    steps: int
    best_step: int
    stopped_early: bool
    dev_metrics: dict[str, float]
    primary_metric: str
    history: list[dict[str, Any]]
    train_seconds: float
    wall_seconds: float
    train_tokens: int
    parameters: int
    trainable_parameters: int
    mode: str  # chain mode
    encoder_recipe: dict[str, Any]  # how to rebuild the stage's encoder (paths relative to the store)
    environment: dict[str, Any]
    mixture: dict[str, Any]  # multi-task stages: sampler, members, probabilities, steps
    files: dict[str, dict[str, Any]]  # relative path -> {size, sha256}
    pruned: bool  # weights deleted by `keep: needed`


class Evaluation(TypedDict, total=False):
    task: str
    language: str
    split: str  # "dev" or "test"
    examples: int
    metrics: dict[str, Any]
    units: dict[str, Any]  # {"statistic", "n"} of the units file beside it (xstilts.metrics.units)


class ResultRow(TypedDict, total=False):
    chain: list[str]
    chain_length: int
    chain_label: str
    mode: str
    seed: int
    target: str
    language: str
    split: str  # "dev" or "test"; rows of runs from before dev evaluation have none and are test
    metric: str  # the metric family: accuracy, seqeval, squad, mlqa, bucc_f1, tatoeba_accuracy
    metrics: dict[str, Any]
    score: float  # the language's headline value (xstilts.metrics.xtreme.headline)
    examples: int
    english_dev: dict[str, float]  # the target's English dev metrics (model selection)
    target_stage: str | None  # identity of the fine-tuned target stage (None for retrieval)
    control: str  # "aa" or "positive" on the rows of controls (absent on the study's own rows)
    combination: dict[str, Any]  # the combination study's rows: {"method", and a merge's "weight", "density"}
    units: dict[str, Any]  # {"statistic", "n", "file"}: per-unit statistics for intervals (file relative to the run)


RESULT_KEYS = ("chain", "chain_length", "chain_label", "target", "language", "metric", "metrics", "score")

# What a record of an older run (or a hand-written one) may lack, filled once here: readers index the fields.
RECORD_DEFAULTS: dict[str, Any] = {"mode": FULL, "seed": 0, "chain": []}  # stage, diagnostics and result records
ROW_DEFAULTS: dict[str, Any] = {**RECORD_DEFAULTS, "split": TEST, "english_dev": {}}  # rows before dev evaluation: test
STAGE_DEFAULTS: dict[str, Any] = {**RECORD_DEFAULTS, "files": {}, "dev_metrics": {}, "settings": {}}


def complete_row(row: Mapping[str, Any]) -> ResultRow:
    """A result row (or an expected or unevaluated entry) with every defaulted field present."""
    return _with_defaults(row, ROW_DEFAULTS)  # type: ignore[return-value]


def complete_rows(rows: Iterable[Mapping[str, Any]]) -> list[ResultRow]:
    return [complete_row(row) for row in rows]


def is_study_row(row: Mapping[str, Any]) -> bool:
    """A row of the sequential study itself: not a control's, not the combination study's (both reported apart)."""
    return not row.get("control") and not row.get("combination")


def complete_stage_record(record: Mapping[str, Any]) -> StageRecord:
    """A stage record (stage.json) with its defaulted fields present."""
    return _with_defaults(record, STAGE_DEFAULTS)  # type: ignore[return-value]


def complete_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stage or diagnostics record with its defaulted fields (chain mode, seed, chain) present."""
    return _with_defaults(record, RECORD_DEFAULTS)


def _with_defaults(record: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The record's own fields in their order, then the missing defaults (fresh copies of mutable ones)."""
    missing = {key: copy.copy(value) for key, value in defaults.items() if key not in record}
    return {**record, **missing}


def is_evaluation(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("metrics"), dict)


def is_result_row(value: Any) -> bool:
    return isinstance(value, dict) and all(key in value for key in RESULT_KEYS) and isinstance(value["metrics"], dict)


@dataclass(frozen=True)
class PlannedStage:
    """A node of the stage graph: an intermediate stage (a task or a mixture) after its parent."""

    identity: str
    task: str
    parent: str  # the parent node's identity (a pretrained encoder's node for the first stage)
    chain: tuple[str, ...]  # the tasks up to and including this one
    seed: int
    mode: str
    label: str  # e.g. "k2-mnli+squad_v1"
    settings: str  # hash of the resolved training settings (a merge's: of its merge settings)
    combination: dict[str, Any] | None = None  # the combination study's stages (a merge, a mixture of a set)

    @property
    def chain_length(self) -> int:
        return len(self.chain)


@dataclass(frozen=True)
class PlannedEvaluation:
    """A target evaluated after one prefix of a chain, for one seed, in `languages`."""

    chain_label: str  # the chain's label in results and reports (with "-seedN" when a study has several seeds)
    chain: tuple[str, ...]
    mode: str
    seed: int
    prefix: str  # identity of the prefix node the target hangs off
    target: str
    metric: str
    languages: tuple[str, ...]
    stage: str | None = None  # identity of the target's fine-tuned stage (None: retrieval, evaluated on the encoder)
    retrieval: str | None = None  # retrieval results directory, relative to the run directory
    split: str = "test"  # "dev" or "test" (the plans of runs from before dev evaluation hold test only)
    control: str | None = None  # "aa" or "positive": a known-answer check, reported apart from the study
    combination: dict[str, Any] | None = None  # {"method", ...}: the combination study, reported apart from it

    @property
    def chain_length(self) -> int:
        return len(self.chain)


@dataclass
class RunPlan:
    """plan.json: the contract between the planner and everything that reads the run afterwards."""

    name: str
    encoder: str = ""
    stages: list[PlannedStage] = field(default_factory=list)
    evaluations: list[PlannedEvaluation] = field(default_factory=list)
    provisional: bool = False  # data was missing when the plan was made: identities may change
    selection: str = "dev"  # how the report chooses models: "dev" (every dev language) or "dev-en"
    # (target, split, language) defined and asked for but without files: never planned, named in the report
    unevaluated: list[dict[str, str]] = field(default_factory=list)
    # stage identity -> its estimated training tokens (xstilts.study.price), what status measures its rate against
    estimated_tokens: dict[str, int] = field(default_factory=dict)

    def expected(self) -> list[dict[str, Any]]:
        """Every (chain, target, split, language) result the run is to produce."""
        return [
            {
                "chain_label": e.chain_label,
                "chain_length": e.chain_length,
                "chain": list(e.chain),
                "mode": e.mode,
                "seed": e.seed,
                "target": e.target,
                "metric": e.metric,
                "split": e.split,
                "language": language,
                **({"control": e.control} if e.control else {}),
                **({"combination": e.combination} if e.combination else {}),
            }
            for e in self.evaluations
            for language in e.languages
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "encoder": self.encoder,
            "provisional": self.provisional,
            "selection": self.selection,
            "unevaluated": self.unevaluated,
            "estimated_tokens": self.estimated_tokens,
            "stages": [{**asdict(s), "chain": list(s.chain)} for s in self.stages],
            "evaluations": [
                {**asdict(e), "chain": list(e.chain), "languages": list(e.languages)} for e in self.evaluations
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunPlan:
        """Also reads the plan.json of older runs (only "expected" entries, no graph)."""
        if "evaluations" not in data:
            return cls(data.get("name", ""), evaluations=_evaluations_from_expected(data.get("expected", [])))
        return cls(
            name=data.get("name", ""),
            encoder=data.get("encoder", ""),
            provisional=bool(data.get("provisional", False)),
            selection=data.get("selection", "dev"),
            unevaluated=list(data.get("unevaluated", [])),
            estimated_tokens=dict(data.get("estimated_tokens", {})),
            stages=[PlannedStage(**{**s, "chain": tuple(s["chain"])}) for s in data.get("stages", [])],
            evaluations=[
                PlannedEvaluation(**{**e, "chain": tuple(e["chain"]), "languages": tuple(e["languages"])})
                for e in data["evaluations"]
            ],
        )


def _evaluations_from_expected(expected: list[dict[str, Any]]) -> list[PlannedEvaluation]:
    grouped: dict[tuple[str, str], PlannedEvaluation] = {}
    for entry in complete_rows(expected):
        key = (entry["chain_label"], entry["target"])
        planned = grouped.get(key)
        if planned is None:
            grouped[key] = PlannedEvaluation(
                entry["chain_label"],
                tuple(entry["chain"]),
                entry["mode"],
                entry["seed"],
                "",
                entry["target"],
                entry.get("metric", ""),
                (entry["language"],),
            )
        else:
            grouped[key] = PlannedEvaluation(
                **{**asdict(planned), "languages": planned.languages + (entry["language"],)}
            )
    return list(grouped.values())
