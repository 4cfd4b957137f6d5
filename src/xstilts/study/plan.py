"""Chains -> a graph of stages in which identical prefixes are one node, and the plan record the run keeps.

A node's identity is a content hash of its parent's identity, its task, its data, its resolved
training settings and its seed (see `stage_request`). Chains of a study that share a prefix share its
nodes, so each is trained once; target fine-tunes and retrieval evaluations hang off every prefix.
`run_plan` turns the graph into plan.json (`xstilts.rundir.records.RunPlan`), the contract every
reader of the run works from. Planning loads no model: `xstilts plan` does not import torch, and a
study can be sized before its data is on disk (its identities are then provisional).
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xstilts.chain_modes import FULL, chain_mode, merge_method
from xstilts.config import (
    ExperimentConfig,
    MixtureConfig,
    MixtureTask,
    StageConfig,
    baseline_seeds,
    control_seeds,
    missing_data,
)
from xstilts.data.examples import data_fingerprint
from xstilts.rundir.records import PlannedEvaluation, PlannedStage, RunPlan
from xstilts.rundir.runs import RunDirectory
from xstilts.rundir.stage_directory import StageDirectory
from xstilts.rundir.store import StageStore, content_identity
from xstilts.settings import AdapterSettings, resolve_settings
from xstilts.tasks.registry import LocalFiles, TaskRegistry, TaskSpec
from xstilts.terms import EVALUATION_SPLITS, MIXTURE, TEST
from xstilts.train.mixture import Mixture, MixtureMember
from xstilts.train.request import EncoderRecipe, MergeRequest, MergeSettings, StageRequest


@dataclass(frozen=True)
class ChainPrefix:
    """The encoder after the first k stages of a chain (k = 0: the pretrained encoder)."""

    chain_length: int
    tasks: tuple[str, ...]
    identity: str
    stage: StageRequest | None  # the stage that produces it (None for k = 0)
    seed: int = 0
    mode: str = FULL
    recipe: EncoderRecipe | None = None  # how to build this prefix's encoder
    merge: MergeRequest | None = None  # a merged encoder (built from single-task stages, not trained)
    combination: dict[str, Any] | None = None  # the combination study's prefixes: {"method", "weight", "density"}

    @property
    def label(self) -> str:
        if self.combination is not None:
            prefix = combination_tag(self.combination) + "-"
        else:
            prefix = "" if self.mode == FULL else f"{self.mode}-"
        return f"{prefix}k{self.chain_length}-" + ("+".join(self.tasks) if self.tasks else "pretrained")

    @property
    def built_name(self) -> str | None:
        """The name of what produces this prefix in the stage store (a stage's task, a merge), None for k = 0."""
        if self.merge is not None:
            return self.merge.name
        return self.stage.name if self.stage is not None else None


def combination_tag(combination: dict[str, Any]) -> str:
    """ "ties-w1-d0.5": a combination's method and merge setting, as chain labels carry them."""
    tag = combination["method"]
    if combination.get("weight") is not None:
        tag += f"-w{combination['weight']:g}"
    if combination.get("density") is not None:
        tag += f"-d{combination['density']:g}"
    return tag


@dataclass
class Plan:
    """Distinct prefix nodes (parents before children) and, per chain, its prefixes k = 0..K."""

    nodes: dict[str, ChainPrefix] = field(default_factory=dict)
    chains: list[tuple[int, tuple[str, ...], list[str]]] = field(
        default_factory=list
    )  # (seed, order, prefix identities)
    provisional: bool = False  # some data was not on disk: identities will change when it is
    controls: list[tuple[str, str, int, tuple[str, ...]]] = field(
        default_factory=list
    )  # (kind, prefix identity, seed, targets): the A/A refits of k = 0 and the positive-control chains
    baselines: list[tuple[str, int]] = field(
        default_factory=list
    )  # (k = 0 identity, seed): the extra seeds k = 0 is fine-tuned under (study.baseline_runs)
    combined: list[tuple[str, int]] = field(
        default_factory=list
    )  # (identity, seed): the combination study's merged and mixture prefixes, every target evaluated after each

    @property
    def stages(self) -> list[ChainPrefix]:
        return [node for node in self.nodes.values() if node.stage is not None]

    @property
    def merges(self) -> list[ChainPrefix]:
        return [node for node in self.nodes.values() if node.merge is not None]

    def naive_stage_count(self) -> int:
        """Stages a per-chain run would train: every prefix chain k = 1..K of every order from scratch."""
        return sum(k for _, _, prefixes in self.chains for k in range(len(prefixes)))


def encoder_identity(encoder: str) -> str:
    """Identity of the starting encoder: the hub id, or for a local directory the hash of its files."""
    import hashlib

    path = Path(encoder).expanduser()
    if not path.is_dir():
        return content_identity({"hub": encoder})
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes() if file.stat().st_size < (64 << 20) else str(file.stat().st_size).encode())
    return content_identity({"local": digest.hexdigest()})


_FINGERPRINTS: dict[tuple, str] = {}
MISSING_DATA = "missing"  # the data fingerprint of files not on disk (a provisional identity)


def _fingerprint(spec: TaskSpec, splits_languages: list[tuple[str, str]] | None = None) -> str:
    """Data fingerprint of a stage's files (default: train and dev in the training language), hashed once per
    file version (size, mtime) in a process; `MISSING_DATA` when a file is not on disk."""
    splits_languages = splits_languages or [
        (spec.train_split, spec.train_language),
        (spec.dev_split, spec.train_language),
    ]
    paths = [spec.data.path(split, language) for split, language in splits_languages]
    if not all(path.is_file() for path in paths):
        return MISSING_DATA
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if stamp not in _FINGERPRINTS:
        _FINGERPRINTS[stamp] = data_fingerprint(spec, splits_languages)
    return _FINGERPRINTS[stamp]


def _adapter_fields(parent: ChainPrefix, adapter: AdapterSettings | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(identity fields, request fields) of a stage that trains an adapter (none for full fine-tuning)."""
    if adapter is None:
        return {}, {"parent_recipe": parent.recipe}
    return {"mode": parent.mode, "adapter": adapter.trained_adapter()}, {
        "parent_recipe": parent.recipe,
        "mode": parent.mode,
        "adapter": adapter,
    }


def stage_request(
    role: str,
    spec: TaskSpec,
    settings_layers: list[Any],
    seed: int,
    parent: ChainPrefix,
    adapter: AdapterSettings | None = None,
    **extra: Any,
) -> StageRequest:
    """The request for one stage; its identity hashes everything that determines the trained model."""
    settings = resolve_settings(spec.kind, spec.training_defaults, *settings_layers)
    identity_fields, request_fields = _adapter_fields(parent, adapter)
    identity = content_identity(
        {
            "role": role,
            "parent": parent.identity,
            "task": spec.fingerprint(),
            "data": _fingerprint(spec),
            "settings": settings.model_dump(),
            "seed": seed,
            **identity_fields,
        }
    )
    return StageRequest(
        identity,
        role,
        spec,
        settings,
        seed,
        parent.recipe.base,
        parent.identity,
        parent.tasks,
        **request_fields,
        **extra,
    )


def mixture_request(
    role: str,
    name: str,
    config: ExperimentConfig,
    registry: TaskRegistry,
    stage_layers: list[Any],
    seed: int,
    parent: ChainPrefix,
    adapter: AdapterSettings | None = None,
    mixture_config: MixtureConfig | None = None,
    **extra: Any,
) -> StageRequest:
    """The request for a multi-task stage: members with their own lengths, one identity for the whole mixture
    (`config.mixtures[name]` unless `mixture_config` is given)."""
    mixture_config = mixture_config or config.mixtures[name]
    layers = [config.training, mixture_config.training, *stage_layers]
    members = []
    for member in mixture_config.tasks:
        spec = registry.get(member.task)
        members.append(
            MixtureMember(
                spec,
                resolve_settings(spec.kind, spec.training_defaults, *layers),
                member.head or spec.name,
                (spec.train_language,),
            )
        )
    mlm = mixture_config.mlm
    if mlm is not None:
        spec = TaskSpec(
            name="mlm",
            kind="mlm",
            languages=tuple(mlm.languages),
            data=LocalFiles(mlm.data_dir, "{language}.txt"),
            train_language=mlm.languages[0],
        )
        members.append(
            MixtureMember(
                spec,
                resolve_settings("mlm", *layers, {"max_length": mlm.max_length}),
                "mlm",
                tuple(mlm.languages),
                mlm.max_examples_per_language,
            )
        )
    mixture = Mixture(name, tuple(members), mixture_config.sampler, mixture_config.temperature, mixture_config.cap)
    first = mixture.supervised[0].spec
    settings = resolve_settings(first.kind, *layers)
    data = {
        m.spec.name: _fingerprint(m.spec, [("train", lang) for lang in m.languages] if m.spec.kind == "mlm" else None)
        for m in members
    }
    identity_fields, request_fields = _adapter_fields(parent, adapter)
    identity = content_identity(
        {
            "role": role,
            "parent": parent.identity,
            "mixture": mixture.fingerprint(),
            "data": data,
            "settings": settings.model_dump(),
            "seed": seed,
            **identity_fields,
        }
    )
    return StageRequest(
        identity,
        role,
        first,
        settings,
        seed,
        parent.recipe.base,
        parent.identity,
        parent.tasks,
        mixture=mixture,
        **request_fields,
        **extra,
    )


def target_request(config: ExperimentConfig, registry: TaskRegistry, prefix: ChainPrefix, target: Any) -> StageRequest:
    """The fine-tune of `target` on `prefix` (with `prefix.seed`): all weights, or a fresh adapter in adapter modes."""
    adapter = config.adapters if config.adapters.tuning_for(prefix.mode) == "adapter" else None
    return stage_request(
        "target", registry.get(target.task), [config.training, target.training], prefix.seed, prefix, adapter
    )


def expand_chains(config: ExperimentConfig) -> list[tuple[int, list[StageConfig]]]:
    """(seed, stages) for every chain: the configured chain, or a study's orders cut at K, per seed."""
    study = config.study
    if study is None:
        return [(config.seed, list(config.chain))]
    orders = [list(order) for order in study.orders.explicit]
    rng = random.Random(study.orders.random_seed)
    orders += [rng.sample(study.pool, len(study.pool)) for _ in range(study.orders.random)]
    orders += [[task] for task in study.pool] if study.orders.singles else []
    limit = len(study.pool) if study.max_chain_length is None else study.max_chain_length
    orders += [list(order) for order in itertools.permutations(study.pool, limit)] if study.orders.all else []
    return [(seed, [StageConfig(task=t) for t in order[:limit]]) for seed in study.seeds for order in orders]


def build_plan(config: ExperimentConfig, registry: TaskRegistry, store: StageStore) -> Plan:
    plan = Plan()
    root_identity = encoder_identity(config.encoder)
    for mode in config.chain_modes:
        trains_adapters = chain_mode(mode).trains_adapters
        adapter = config.adapters if trains_adapters else None
        mode_root = content_identity({"encoder": root_identity, "mode": mode}) if trains_adapters else root_identity
        for seed, stages in expand_chains(config):
            root = ChainPrefix(0, (), mode_root, None, seed, mode, EncoderRecipe(config.encoder, mode))
            plan.nodes.setdefault(root.identity, root)
            prefixes = [root]
            for stage in stages:
                parent = prefixes[-1]
                heads = (
                    store.stage(parent.identity, parent.tasks[-1]).heads_file
                    if stage.reuse_heads and parent.stage
                    else None
                )
                if stage.task in config.mixtures:
                    request = mixture_request(
                        "intermediate",
                        stage.task,
                        config,
                        registry,
                        [stage.training],
                        seed,
                        parent,
                        adapter,
                        parent_heads=heads,
                    )
                else:
                    request = stage_request(
                        "intermediate",
                        registry.get(stage.task),
                        [config.training, stage.training],
                        seed,
                        parent,
                        adapter,
                        parent_heads=heads,
                    )
                recipe = request.output_recipe(store.stage_dir(request.identity, request.name))
                node = ChainPrefix(
                    parent.chain_length + 1,
                    parent.tasks + (request.name,),
                    request.identity,
                    request,
                    seed,
                    mode,
                    recipe,
                )
                prefixes.append(plan.nodes.setdefault(request.identity, node))
            plan.chains.append((seed, tuple(s.task for s in stages), [p.identity for p in prefixes]))
        if config.study is not None:
            chained = {seed for seed, _ in expand_chains(config)}
            plan.baselines += [(mode_root, seed) for seed in baseline_seeds(config.study) if seed not in chained]
    _plan_controls(plan, config, registry, store)
    if config.study is not None and config.study.combine is not None:
        _plan_combinations(plan, config, registry, store)
    plan.provisional = bool(missing_data(config))
    return plan


def combination_sets(plan: Plan, config: ExperimentConfig) -> list[tuple[str, ...]]:
    """The task sets the combination study combines: the config's, or the set of every full-mode chain of length
    >= 2 the study runs (each prefix of each order), as sorted tuples, each once."""
    combine = config.study.combine
    if combine.sets is not None:
        return list(dict.fromkeys(tuple(sorted(s)) for s in combine.sets))
    found = []
    for _, order, prefixes in plan.chains:
        if plan.nodes[prefixes[0]].mode == FULL:
            found += [tuple(sorted(order[:k])) for k in range(2, len(order) + 1)]
    return list(dict.fromkeys(found))


def _plan_combinations(plan: Plan, config: ExperimentConfig, registry: TaskRegistry, store: StageStore) -> None:
    """For each task set and seed of the study: the merges of the set's single-task stages over the grid of each
    method (settings chosen on dev by the report) and one mixture stage of the set, all hanging off the full
    mode's pretrained encoder. Single-task stages the chains do not have are added (trained, not evaluated)."""
    combine = config.study.combine
    for seed in config.study.seeds:
        root = replace(next(n for n in plan.nodes.values() if n.stage is None and n.mode == FULL), seed=seed)
        for tasks in combination_sets(plan, config):
            singles = [_single(plan, config, registry, store, root, task) for task in tasks]
            members = tuple((single.identity, task) for single, task in zip(singles, tasks))
            for settings in merge_grid(combine, seed):
                request = MergeRequest(config.encoder, root.identity, members, settings)
                recipe = EncoderRecipe(str(StageDirectory(store.stage_dir(request.identity, request.name)).encoder_dir))
                combination = {"method": settings.method, "weight": settings.weight, "density": settings.density}
                node = ChainPrefix(len(tasks), tasks, request.identity, None, seed, FULL, recipe, request, combination)
                _add_combined(plan, node)
            if combine.mixture:
                mixture = MixtureConfig(tasks=[MixtureTask(task=task) for task in tasks])
                request = mixture_request("intermediate", MIXTURE, config, registry, [], seed, root, None, mixture)
                recipe = request.output_recipe(store.stage_dir(request.identity, request.name))
                node = ChainPrefix(
                    len(tasks), tasks, request.identity, request, seed, FULL, recipe, None, {"method": MIXTURE}
                )
                _add_combined(plan, node)


def merge_grid(combine: Any, seed: int) -> list[MergeSettings]:
    """Every grid point of every method of `combine` (densities only for the methods that keep a fraction)."""
    return [
        MergeSettings(method, weight, density, seed)
        for method in combine.methods
        for weight in combine.weights
        for density in (combine.densities if merge_method(method).uses_density else [None])
    ]


def _add_combined(plan: Plan, node: ChainPrefix) -> None:
    plan.nodes.setdefault(node.identity, node)
    plan.combined.append((node.identity, node.seed))


def _single(
    plan: Plan, config: ExperimentConfig, registry: TaskRegistry, store: StageStore, root: ChainPrefix, task: str
) -> ChainPrefix:
    """The single-task stage of `task` from the pretrained encoder under `root.seed`: the chains' own k = 1 stage
    when they have it (the same identity), otherwise a node added for the merges."""
    request = stage_request(
        "intermediate", registry.get(task), [config.training, StageConfig(task=task).training], root.seed, root
    )
    recipe = request.output_recipe(store.stage_dir(request.identity, request.name))
    node = ChainPrefix(1, (task,), request.identity, request, root.seed, FULL, recipe)
    return plan.nodes.setdefault(request.identity, node)


def _plan_controls(plan: Plan, config: ExperimentConfig, registry: TaskRegistry, store: StageStore) -> None:
    """Controls hang off the first chain mode's pretrained encoder, under every control seed (`control_seeds`),
    so that each control is analysed as a gain of the study is: the A/A refits of every trainable target at
    k = 0 (under seed + A_A_SEED_OFFSET) and one one-task chain per positive control and seed."""
    root = next(n for n in plan.nodes.values() if n.stage is None)
    adapter = config.adapters if chain_mode(root.mode).trains_adapters else None
    for seed in control_seeds(config):
        if config.controls.a_a:
            chosen = config.controls.a_a if isinstance(config.controls.a_a, list) else [t.task for t in config.targets]
            trainable = tuple(t for t in chosen if registry.get(t).trainable)
            plan.controls.append(("aa", root.identity, seed + A_A_SEED_OFFSET, trainable))
        for control in config.controls.positive:
            parent = replace(root, seed=seed)
            if control.task in config.mixtures:
                request = mixture_request(
                    "intermediate", control.task, config, registry, [control.training], seed, parent, adapter
                )
            else:
                layers = [config.training, control.training]
                request = stage_request("intermediate", registry.get(control.task), layers, seed, parent, adapter)
            recipe = request.output_recipe(store.stage_dir(request.identity, request.name))
            node = ChainPrefix(1, (request.name,), request.identity, request, seed, root.mode, recipe)
            plan.nodes.setdefault(request.identity, node)
            plan.controls.append(("positive", request.identity, seed, tuple(control.targets)))


A_A_SEED_OFFSET = 1000  # the A/A control refits k = 0 under seed + this


def chain_label(prefix: ChainPrefix, config: ExperimentConfig) -> str:
    """A prefix's label in results and reports; where its length runs under several seeds (the study's seeds;
    k = 0 also under `study.baseline_runs`) each seed's run is labelled apart."""
    seeds = (
        []
        if config.study is None
        else (baseline_seeds(config.study) if prefix.chain_length == 0 else config.study.seeds)
    )
    return prefix.label + (f"-seed{prefix.seed}" if len(seeds) > 1 else "")


def control_label(kind: str, prefix: ChainPrefix) -> str:
    """A control run's label: its kind, its chain and its seed (controls run under several seeds)."""
    return f"control-{kind}-{prefix.label}-seed{prefix.seed}"


def run_plan(plan: Plan, config: ExperimentConfig, registry: TaskRegistry, run: RunDirectory) -> RunPlan:
    """plan.json: the stage graph and every evaluation, in the order the local executor runs them."""
    stages = [_planned_stage(node) for node in plan.nodes.values() if node.built_name is not None]
    evaluations = []
    for identity, seed in evaluated_prefixes(plan, config) + plan.combined:
        prefix = replace(plan.nodes[identity], seed=seed)
        for target in config.targets:
            evaluations += _planned_evaluations(config, registry, run, prefix, target, chain_label(prefix, config))
    for kind, identity, seed, targets in plan.controls:
        prefix = replace(plan.nodes[identity], seed=seed)
        label = control_label(kind, prefix)
        for target in (t for t in config.targets if t.task in targets):
            # an A/A refit of a retrieval target would be k = 0 itself: nothing is fitted
            if registry.get(target.task).trainable or kind != "aa":
                evaluations += _planned_evaluations(config, registry, run, prefix, target, label, kind)
    return RunPlan(
        config.name,
        config.encoder,
        stages,
        evaluations,
        plan.provisional,
        config.selection,
        unevaluated_languages(config, registry),
    )


def _planned_stage(node: ChainPrefix) -> PlannedStage:
    """A stage (or a merge: its parent is the pretrained encoder, its settings the merge's) as plan.json lists it."""
    if node.merge is not None:
        parent, settings = node.merge.base_identity, content_identity(asdict(node.merge.settings))
    else:
        parent, settings = node.stage.parent_identity, content_identity(node.stage.settings.model_dump())
    return PlannedStage(
        node.identity, node.built_name, parent, node.tasks, node.seed, node.mode, node.label, settings, node.combination
    )


def unevaluated_languages(config: ExperimentConfig, registry: TaskRegistry) -> list[dict[str, str]]:
    """The (target, split, language) a target defines and the config asks for, but whose files are not on disk
    (dev sets that exist for some languages only, BUCC's optional test files): planned nowhere, named in the
    report so that no average silently leaves a language out."""
    skipped = []
    for target in config.targets:
        spec = registry.get(target.task)
        requested = config.target_languages(target, registry)
        for split in EVALUATION_SPLITS:
            planned = evaluation_languages(spec, split, requested)
            skipped += [
                {"target": spec.name, "split": split, "language": language, "reason": "no file"}
                for language in requested
                if language in spec.evaluation_languages(split) and language not in planned
            ]
    return skipped


def _planned_evaluations(
    config: ExperimentConfig,
    registry: TaskRegistry,
    run: RunDirectory,
    prefix: ChainPrefix,
    target: Any,
    label: str,
    control: str | None = None,
) -> list[PlannedEvaluation]:
    """The evaluations of one target after one prefix, one per split with languages to evaluate."""
    spec = registry.get(target.task)
    stage = target_request(config, registry, prefix, target).identity if spec.trainable else None
    retrieval = (
        None
        if spec.trainable
        else run.relative(run.retrieval_dir(prefix.identity, spec.name, target.embedding.model_dump()))
    )
    planned = []
    for split in EVALUATION_SPLITS:
        languages = evaluation_languages(spec, split, config.target_languages(target, registry))
        if languages:
            planned.append(
                PlannedEvaluation(
                    label,
                    prefix.tasks,
                    prefix.mode,
                    prefix.seed,
                    prefix.identity,
                    spec.name,
                    spec.metric,
                    languages,
                    stage,
                    retrieval,
                    split,
                    control,
                    prefix.combination,
                )
            )
    return planned


def evaluation_languages(spec: TaskSpec, split: str, requested: list[str]) -> tuple[str, ...]:
    """The requested languages `split` is evaluated in: every test language of a trained target (the config check
    ensures its files); otherwise those whose files are on disk (some tasks have dev sets for some languages only;
    BUCC's test files are optional)."""
    languages = [lang for lang in requested if lang in spec.evaluation_languages(split)]
    if split == TEST and spec.trainable:
        return tuple(languages)
    return tuple(lang for lang in languages if _has_file(spec, spec.file_split(split), lang))


def _has_file(spec: TaskSpec, split: str, language: str) -> bool:
    if spec.trainable:
        return spec.data.path(split, language).is_file()
    layouts = spec.sources.local.get(split, ()) if spec.sources else ()
    return any(layout.paths(Path(spec.data.data_dir), split, language) for layout in layouts)


def format_plan(plan: Plan, config: ExperimentConfig, registry: TaskRegistry) -> str:
    """The graph as an indented tree and the counts `xstilts plan` prints."""
    lines = ["stage graph (identical prefixes are one node):"]
    if plan.provisional:
        lines = [
            "stage graph (identical prefixes are one node; identities marked ? are provisional: some data is not on disk yet):"
        ]
    mark = "?" if plan.provisional else ""
    children: dict[str, list[ChainPrefix]] = {}
    for node in plan.stages:
        children.setdefault(node.stage.parent_identity, []).append(node)

    def walk(identity: str, depth: int) -> None:
        for child in children.get(identity, []):
            name = child.tasks[-1] if child.combination is None else f"{MIXTURE} of {'+'.join(child.tasks)}"
            lines.append(f"{'  ' * depth}└─ {name}  [{child.identity}{mark}] seed {child.seed}")
            walk(child.identity, depth + 1)

    roots = [n for n in plan.nodes.values() if n.stage is None and n.merge is None]
    for root in roots:
        lines.append(f"{config.encoder}  [{root.identity}]" + ("" if root.mode == FULL else f"  ({root.mode} chains)"))
        walk(root.identity, 1)
    if plan.merges:
        lines += ["", "merges (built from the single-task stages, not trained):"]
        lines += [f"  {node.label}  [{node.identity}{mark}] seed {node.seed}" for node in plan.merges]
    counts = count(plan, config, registry)
    width = max(len(name) for name in counts) + 1
    lines += ["", *(f"{name:<{width}} {value}" for name, value in counts.items())]
    return "\n".join(lines)


def count(plan: Plan, config: ExperimentConfig, registry: TaskRegistry) -> dict[str, Any]:
    """Stages, the naive count, target fine-tunes, evaluations, and examples x epochs to train."""
    evaluated = evaluated_prefixes(plan, config)
    trainable = [t for t in config.targets if registry.get(t.task).trainable]
    retrieval = [t for t in config.targets if not registry.get(t.task).trainable]
    finetunes = len(evaluated) * len(trainable)
    evaluations = sum(len(config.target_languages(t, registry)) for t in config.targets) * len(evaluated)
    stage_examples = _total(stage_example_epochs(node.stage) for node in plan.stages)
    target_examples = _total(
        _times(
            len(evaluated),
            _example_epochs(settings, train_examples_on_disk(spec, [spec.train_language], settings.max_train_examples)),
        )
        for spec, settings in (
            (
                registry.get(t.task),
                resolve_settings(
                    registry.get(t.task).kind, registry.get(t.task).training_defaults, config.training, t.training
                ),
            )
            for t in trainable
        )
    )
    counts = {
        "chains": len(plan.chains),
        "stages to train": len([node for node in plan.stages if node.combination is None]),
        "stages a naive per-chain run trains": plan.naive_stage_count(),
        "prefixes evaluated": len(evaluated),
        "target fine-tunes": finetunes,
        "retrieval targets per prefix": len(retrieval),
        "evaluations (target x language)": evaluations,
        "examples x epochs, stages": "unknown (data missing)" if stage_examples is None else stage_examples,
        "examples x epochs, target fine-tunes": "unknown (data missing)"
        if target_examples is None
        else target_examples,
    }
    if plan.combined:  # the combination study's, counted apart: merges train nothing, mixtures are stages
        counts["merges to build"] = len(plan.merges)
        counts["combination stages to train"] = len([node for node in plan.stages if node.combination is not None])
        counts["target fine-tunes on merges and mixtures"] = len(plan.combined) * len(trainable)
    return counts


def _total(values: Any) -> int | None:
    """The sum, or None (unknown) when any value is unknown because its data is not on disk."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _times(factor: int, value: int | None) -> int | None:
    return None if value is None else factor * value


def evaluated_prefixes(plan: Plan, config: ExperimentConfig) -> list[tuple[str, int]]:
    """Distinct (prefix, seed) pairs the targets hang off (the seed matters for the fine-tunes)."""
    every = config.study is not None or config.evaluate_every_prefix
    pairs = {
        (identity, seed) for seed, _, prefixes in plan.chains for identity in (prefixes if every else prefixes[-1:])
    } | set(plan.baselines)
    if config.study is not None and config.study.evaluate_on is not None:
        chosen = {tuple(chain) for chain in config.study.evaluate_on}
        pairs = {(identity, seed) for identity, seed in pairs if plan.nodes[identity].tasks in chosen}
    return sorted(pairs)


@functools.cache
def _count_lines(path: Path, stamp: int) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def train_examples_on_disk(spec: TaskSpec, languages: Any, limit: int | None) -> int | None:
    """Training examples the stage reads: at most `limit` per language, as the stage loads them (None: not on disk)."""
    total = 0
    for language in languages:
        path = spec.data.path(spec.train_split, language)
        if not path.is_file():
            return None
        count = _count_lines(path, path.stat().st_mtime_ns)
        total += min(count, limit) if limit else count
    return total


def stage_example_epochs(
    request: StageRequest, train_examples: Callable[[TaskSpec, Any, int | None], int | None] = train_examples_on_disk
) -> int | None:
    """Examples x epochs of one stage (a mixture: its members' sizes, capped for the capped sampler); None when unknown.
    `train_examples` counts a member's examples (default: its files on disk)."""
    if request.mixture is None:
        spec = request.spec
        return _example_epochs(
            request.settings, train_examples(spec, [spec.train_language], request.settings.max_train_examples)
        )
    sizes = {
        m.spec.name: train_examples(m.spec, m.languages, m.max_examples_per_language or m.settings.max_train_examples)
        for m in request.mixture.members
    }
    if any(size is None for size in sizes.values()):
        return _example_epochs(request.settings, None)
    return _example_epochs(request.settings, request.mixture.epoch_size(sizes))


def _example_epochs(settings: Any, examples: int | None) -> int | None:
    if settings.max_steps:
        return settings.max_steps * settings.batch_size
    return None if examples is None else int(examples * settings.epochs)
