"""Running an experiment: plan the chain's stages, train them in order, fine-tune and evaluate targets.

With `evaluate_every_prefix`, targets hang off every prefix of the chain (k = 0..K) and the chain's
stages are trained once and shared by all prefixes. Results are written per (chain, target,
language), plus a summary with per-task averages over languages the XTREME way.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig, config_to_yaml
from xstilts.errors import XstiltsError
from xstilts.evaluate.metrics.xtreme import XTREME_SCORE_LANGUAGES, XTREME_TASK_ORDER, headline, task_score, xtreme_score
from xstilts.study.plan import ChainPrefix, Plan, build_plan, evaluated_prefixes, target_request
from xstilts.train.stage import EVALUATIONS_DIR, evaluate_target, run_stage
from xstilts.files import read_json, read_json_or_none, write_json_atomic, write_text_atomic
from xstilts.study.lock import run_lock
from xstilts.results.store import StageStore, content_identity, inside
from xstilts.train.loop import is_main_process, wait_for_everyone
from xstilts.tasks.registry import TaskRegistry, TaskSpec

log = logging.getLogger(__name__)

STAGES_DIR = "stages"
RESULTS_DIR = "results"
SUMMARY_FILE = "summary.json"
PLAN_FILE = "plan.json"


def run_experiment(config: ExperimentConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the experiment; returns the summary that is also written to `summary.json`.

    The run holds the lock of its output directory throughout (a second run there fails with the owner's name).
    """
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(output_dir):
        return _run_locked(config, output_dir, progress)


def _run_locked(config: ExperimentConfig, output_dir: Path, progress: bool) -> dict[str, Any]:
    if is_main_process():
        write_text_atomic(output_dir / "config.resolved.yaml", config_to_yaml(config))
    registry = config.registry()
    store = StageStore(output_dir / STAGES_DIR)
    started = time.perf_counter()

    plan = build_plan(config, registry, store)
    evaluated = evaluated_prefixes(plan, config)
    multi_seed = config.study is not None and len(config.study.seeds) > 1
    expected = [
        {"chain_label": plan.nodes[i].label + (f"-seed{seed}" if multi_seed else ""), "chain_length": plan.nodes[i].length, "chain": list(plan.nodes[i].tasks), "mode": plan.nodes[i].mode,
         "seed": seed, "target": t.task, "metric": registry.get(t.task).metric, "language": lang}
        for i, seed in evaluated for t in config.targets for lang in config.target_languages(t, registry)
    ]
    _write(output_dir, PLAN_FILE, {"name": config.name, "expected": expected})  # what the report must account for

    executor = Executor(config, registry, store, plan, progress)
    rows: list[dict[str, Any]] = []
    for node in plan.nodes.values():  # parents first, chain by chain: a pruned parent is never needed again
        executor.ensure_trained(node)
        for seed in sorted(seed for identity, seed in evaluated if identity == node.identity):
            rows += executor.run_targets(replace(node, seed=seed), multi_seed)
        if config.keep == "needed":
            executor.prune_finished(node)
    if config.keep == "needed":
        executor.prune_all()

    if config.latency is not None:
        from xstilts.analysis.latency import measure_run

        if is_main_process():
            measure_run(output_dir, config.latency.settings(), progress)
        wait_for_everyone()
    summary = summarize(config.name, rows, registry)
    summary["intermediate_stages"] = [_stage_summary(store.record(node.identity, node.stage.name)) for node in plan.stages]
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    if config.keep == "needed":
        summary["bytes_pruned"] = executor.bytes_pruned
    _write(output_dir, SUMMARY_FILE, summary)
    return summary


def _write(output_dir: Path, relative: str | Path, payload: Any) -> None:
    """Write a run file (checked to lie inside the run directory) from the main process only."""
    if is_main_process():
        write_json_atomic(inside(output_dir, output_dir / relative), payload)


class Executor:
    """Runs plan nodes and the targets hanging off them; with `keep: needed` it deletes weights no longer needed."""

    def __init__(self, config: ExperimentConfig, registry: TaskRegistry, store: StageStore, plan: Plan, progress: bool):
        self.config, self.registry, self.store, self.plan, self.progress = config, registry, store, plan, progress
        self.output_dir = Path(config.output_dir)
        self.children: dict[str, list[ChainPrefix]] = {}
        for node in plan.stages:
            self.children.setdefault(node.stage.parent_identity, []).append(node)
        self.bytes_pruned = 0

    def ensure_trained(self, node: ChainPrefix, verify: bool = False) -> None:
        """Train `node` (and, first, any pruned or damaged ancestor whose weights it needs) unless its weights are on disk.

        With `verify` (its weights are about to be loaded), every file's sha256 is checked against its record.
        """
        if node.stage is None:
            return
        record = self.store.record(node.identity, node.stage.name, full=verify)
        if record is not None and not record.get("pruned"):
            return
        if record is not None:
            if not self._needed(node):
                return
            log.info("stage %s was pruned and is needed again: retraining it", node.label)
        self._discard(node.identity, node.stage.name)  # pruned or damaged: trained afresh
        self.ensure_trained(self.plan.nodes[node.stage.parent_identity], verify=True)
        run_stage(node.stage, self.store, self.progress, self.config.checkpoint_every_steps)

    def _discard(self, identity: str, name: str) -> None:
        """Remove what is left of a stage that must be trained again (nothing happens when there is nothing)."""
        if is_main_process():
            self.store.discard(identity, name)
        wait_for_everyone()

    def _needed(self, node: ChainPrefix) -> bool:
        """Does a child stage or a target of this node still have to be trained from its weights?"""
        if any(self.store.record(child.identity, child.stage.name) is None for child in self.children.get(node.identity, [])):
            return True
        return any(not self._target_done(node, seed, target) for seed in self._seeds(node) for target in self.config.targets)

    def _seeds(self, node: ChainPrefix) -> list[int]:
        return sorted({seed for seed, _, prefixes in self.plan.chains if node.identity in prefixes})


    def _target_done(self, node: ChainPrefix, seed: int, target: Any) -> bool:
        prefix = replace(node, seed=seed)
        spec = self.registry.get(target.task)
        languages = self.config.target_languages(target, self.registry)
        if not spec.trainable:
            directory = _retrieval_dir(self.output_dir, prefix, spec, target)
            return all(_evaluation(directory / f"{lang}.json") is not None for lang in languages)
        request = target_request(self.config, self.registry, prefix, target)
        if self.store.record(request.identity, spec.name) is None:
            return False
        stage_dir = self.store.stage_dir(request.identity, spec.name)
        return all(_evaluation(stage_dir / EVALUATIONS_DIR / f"{lang}.json") is not None for lang in languages)

    def run_targets(self, prefix: ChainPrefix, multi_seed: bool) -> list[dict[str, Any]]:
        """Fine-tune and evaluate every target on this prefix (retrieval targets: evaluate the encoder as it is)."""
        rows = []
        label = prefix.label + (f"-seed{prefix.seed}" if multi_seed else "")
        for target in self.config.targets:
            spec = self.registry.get(target.task)
            languages = self.config.target_languages(target, self.registry)
            if not self._target_done(prefix, prefix.seed, target):
                self.ensure_trained(prefix, verify=True)
            if not spec.trainable:
                # Inference only: the main process computes, the others then read its files.
                evaluations = _evaluate_retrieval(self.output_dir, prefix, prefix.recipe, spec, languages, target) if is_main_process() else None
                wait_for_everyone()
                evaluations = evaluations or _evaluate_retrieval(self.output_dir, prefix, prefix.recipe, spec, languages, target)
                record: dict[str, Any] = {"dev_metrics": {}, "identity": None}
            else:
                request = target_request(self.config, self.registry, prefix, target)
                if not self._target_done(prefix, prefix.seed, target):  # its weights will be used: intact, or trained afresh
                    record = self.store.record(request.identity, spec.name, full=True)
                    if record is None or record.get("pruned"):
                        self._discard(request.identity, spec.name)
                record = run_stage(request, self.store, self.progress, self.config.checkpoint_every_steps)
                stage_dir = self.store.stage_dir(request.identity, spec.name)
                evaluations = evaluate_target(stage_dir, spec, languages, request.settings, self.progress)
                if self.config.keep == "needed":
                    self.bytes_pruned += self.store.prune(request.identity, spec.name) if is_main_process() else 0
                    wait_for_everyone()
            for language, evaluation in evaluations.items():
                row = _result_row(prefix, label, spec, language, evaluation, record)
                _write(self.output_dir, Path(RESULTS_DIR, label, spec.name, f"{language}.json"), row)
                rows.append(row)
        return rows

    def prune_finished(self, node: ChainPrefix) -> None:
        """Prune the node's parent and the node itself when nothing still to run needs their weights."""
        candidates = [node] + ([self.plan.nodes[node.stage.parent_identity]] if node.stage else [])
        for candidate in candidates:
            if candidate.stage is not None and not self._needed(candidate):
                self.bytes_pruned += self.store.prune(candidate.identity, candidate.stage.name) if is_main_process() else 0
        wait_for_everyone()

    def prune_all(self) -> None:
        for node in self.plan.stages:
            self.prune_finished(node)


def _evaluation(path: Path) -> dict[str, Any] | None:
    """An evaluation file that is intact (a damaged one is logged and counts as missing, so it is computed again)."""
    evaluation = read_json_or_none(path, "evaluation (it is computed again)")
    return evaluation if isinstance(evaluation, dict) and isinstance(evaluation.get("metrics"), dict) else None


def _retrieval_dir(output_dir: Path, prefix: ChainPrefix, spec: TaskSpec, target: Any) -> Path:
    from xstilts.evaluate.retrieval import EmbeddingSettings

    settings = EmbeddingSettings(**target.embedding.model_dump())
    return output_dir / "retrieval" / f"{prefix.identity}-{spec.name}-{content_identity(settings.describe())}"


def _evaluate_retrieval(output_dir: Path, prefix: ChainPrefix, recipe: Any, spec: TaskSpec, languages: list[str], target: Any) -> dict[str, dict[str, Any]]:
    """Retrieval targets use the prefix's encoder as it is; finished languages are read back."""
    from xstilts.train.adapters import build_encoder
    from xstilts.train.modeling import load_tokenizer
    from xstilts.evaluate.retrieval import EmbeddingSettings, evaluate_encoder
    from xstilts.train.loop import get_accelerator

    settings = EmbeddingSettings(**target.embedding.model_dump())
    results_dir = _retrieval_dir(output_dir, prefix, spec, target)
    results: dict[str, dict[str, Any]] = {}
    encoder = tokenizer = None
    for language in languages:
        path = results_dir / f"{language}.json"
        evaluation = _evaluation(path)
        if evaluation is not None:
            results[language] = evaluation
            continue
        if encoder is None:
            device = get_accelerator().device
            encoder, tokenizer = build_encoder(recipe).to(device).eval(), load_tokenizer(recipe.base)
        metrics = evaluate_encoder(spec, language, encoder, tokenizer, settings, device, prefix.identity)
        results[language] = {"metrics": metrics, "examples": metrics.get("examples", metrics.get("pairs")), "language": language, "task": spec.name}
        write_json_atomic(path, results[language])
        log.info("%s %s after %s: %s", spec.name, language, prefix.label, {k: v for k, v in metrics.items() if isinstance(v, float)})
    return results


def _result_row(prefix: ChainPrefix, label: str, spec: TaskSpec, language: str, evaluation: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {
        "chain": list(prefix.tasks),
        "chain_length": prefix.length,
        "chain_label": label,
        "mode": prefix.mode,
        "seed": prefix.seed,
        "target": spec.name,
        "language": language,
        "metric": spec.metric,
        "metrics": evaluation["metrics"],
        "score": headline(evaluation["metrics"], spec.metric),
        "examples": evaluation["examples"],
        "english_dev": record["dev_metrics"],
        "target_stage": record["identity"],
    }


def _stage_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("task", "kind", "chain", "identity", "dev_metrics", "primary_metric", "steps", "best_step", "train_seconds")
    return {key: record[key] for key in keys}


def summarize(name: str, rows: list[dict[str, Any]], registry: TaskRegistry) -> dict[str, Any]:
    """Per chain: each target's per-language headline scores and its XTREME-way average over languages.

    The average over targets is only an XTREME score when all nine XTREME tasks are present; otherwise
    it is labelled partial.
    """
    chains: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["chain_length"], r["chain_label"], r["target"], r["language"])):
        chain = chains.setdefault(row["chain_label"], {"chain": row["chain"], "chain_length": row["chain_length"], "targets": {}})
        target = chain["targets"].setdefault(row["target"], {"metric": row["metric"], "languages": {}, "english_dev": row["english_dev"]})
        target["languages"][row["language"]] = row["metrics"]
    for chain in chains.values():
        for target in chain["targets"].values():
            target["average"] = task_score(target["languages"], target["metric"])
            target["scores"] = {lang: headline(m, target["metric"]) for lang, m in target["languages"].items()}
        target_scores = [t["average"]["score"] for _, t in sorted(chain["targets"].items())]
        chain["average_over_targets"] = sum(target_scores) / len(target_scores)
        xtreme = _xtreme_summary(chain["targets"], registry)
        if xtreme is not None:
            chain["xtreme"] = xtreme
    return {"name": name, "chains": chains}


def _xtreme_summary(targets: dict[str, Any], registry: TaskRegistry) -> dict[str, Any] | None:
    """The XTREME score over the XTREME tasks evaluated, on XTREME's own languages; partial when a task or language is missing."""
    task_scores: dict[str, float] = {}
    missing_languages: dict[str, list[str]] = {}
    for task, target in targets.items():
        if task not in XTREME_TASK_ORDER:
            continue
        wanted = XTREME_SCORE_LANGUAGES.get(task, registry.get(task).languages)
        languages = {lang: m for lang, m in target["languages"].items() if lang in wanted}
        if languages:
            task_scores[task] = task_score(languages, target["metric"])["score"]
        absent = [lang for lang in wanted if lang not in languages]
        if absent:
            missing_languages[task] = absent
    if not task_scores:
        return None
    summary = xtreme_score(task_scores)
    summary["missing_languages"] = missing_languages
    summary["partial"] = bool(summary["missing"] or missing_languages)
    return summary


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The summary a finished run wrote."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise XstiltsError(f"{path}: no summary; has the run finished?")
    return read_json(path)
