"""The local executor: plan the study's stages, train them in order, fine-tune and evaluate the targets.

With `evaluate_every_prefix` (or a `study`), targets hang off every prefix of every chain (k = 0..K) and the
stages are trained once and shared by all prefixes. The run writes plan.json before anything else, then
one result row per (chain, target, language) and, at the end, summary.json, all through
`xstilts.rundir.runs.RunDirectory`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig, TargetConfig, config_to_yaml
from xstilts.files import read_json_or_none
from xstilts.logs import run_log
from xstilts.metrics.xtreme import headline
from xstilts.readers.jsonl import write_jsonl
from xstilts.results.aggregate import summarize
from xstilts.results.effects import analyse, units_loader
from xstilts.rundir.layout import evaluation_file, retrieval_evaluation_file, retrieval_predictions_file
from xstilts.rundir.lock import run_lock
from xstilts.rundir.records import Evaluation, PlannedEvaluation, ResultRow, StageRecord
from xstilts.rundir.runs import RunDirectory, read_evaluation, write_evaluation
from xstilts.rundir.units import units_file, write_units
from xstilts.runtime.device import is_main_process, wait_for_everyone
from xstilts.study.plan import ChainPrefix, Plan, build_plan, run_plan, target_request
from xstilts.study.preflight import check_before_training
from xstilts.study.price import stage_tokens
from xstilts.study.stage import evaluate_target, run_stage
from xstilts.tasks.registry import TaskRegistry
from xstilts.tracking import stage_tracking
from xstilts.train.modeling import check_encoder_available
from xstilts.train.request import StageRequest

log = logging.getLogger(__name__)


class Attempts:
    """How the runner tries each piece of work (a stage, a merge, an evaluation, diagnostics, latency).

    A real run lets every error stop it: `attempt` catches nothing. A rehearsal (`xstilts.rehearsal`) records
    each error and the memory each piece took, and goes on with the pieces that do not depend on it.
    """

    @contextlib.contextmanager
    def attempt(self, kind: str, label: str) -> Iterator[list[BaseException]]:
        """Do the block as a piece of work of `kind`; yields the list its error is put in (a real run: never)."""
        yield []

    def fine_tuned(self, run_root: Path, evaluation: PlannedEvaluation) -> None:
        """A target was fine-tuned and evaluated, its rows written, its weights not yet pruned (a rehearsal
        exports it here); a real run does nothing."""


def run_once(config: ExperimentConfig, progress: bool = True, attempts: Attempts | None = None) -> dict[str, Any]:
    """Run (or resume) the plan of `config` once; returns the summary that is also written to `summary.json`.

    The run holds the lock of its output directory throughout (a second run there fails with the owner's name).
    A search is several such runs (`xstilts.study.experiment` chooses). `attempts`: see `Attempts`.
    """
    check_encoder_available(config.encoder)  # an encoder that cannot be had (offline, no such model) writes nothing
    check_before_training(config, config.registry())  # what the encoder's shape says would fail, before any stage
    run = RunDirectory(config.output_dir)
    run.check_contained()  # a link leading out of the run is refused before anything is written
    run.root.mkdir(parents=True, exist_ok=True)
    # The log only once the run is ours (a refused run writes nothing), and from one process.
    with run_lock(run.root), run_log(run.root) if is_main_process() else contextlib.nullcontext():
        return _run_locked(config, run, progress, attempts or Attempts())


def _run_locked(config: ExperimentConfig, run: RunDirectory, progress: bool, attempts: Attempts) -> dict[str, Any]:
    started = time.perf_counter()
    registry = config.registry()
    plan = build_plan(config, registry, run.store)
    record = run_plan(plan, config, registry, run)
    record.estimated_tokens = {s.identity: s.tokens for s in stage_tokens(plan, config, registry) if s.tokens}
    if is_main_process():
        run.write_config(config_to_yaml(config))
        run.write_plan(record)  # what status and the report account for, before anything is trained

    executor = Executor(config, registry, run, plan, record.evaluations, progress, attempts)
    rows: list[ResultRow] = []
    try:
        for node in plan.nodes.values():  # parents first, chain by chain: a pruned parent is never needed again
            if node.stage is not None or node.merge is not None:  # the pretrained encoder has nothing to build
                with attempts.attempt(node_kind(node), node.label) as failed:
                    executor.ensure_trained(node)
                if failed:
                    continue
            if config.diagnostics is not None and node.combination is None:
                with attempts.attempt("diagnostics", node.label):
                    executor.diagnose(node)
            for evaluation in executor.evaluations_after(node.identity):
                with attempts.attempt(executor.evaluation_kind(evaluation), evaluation.target + " after " + node.label):
                    rows += executor.run_evaluation(evaluation)
            if config.keep == "needed":
                executor.prune_finished(node)
    finally:
        executor.stop_tracking()
    if config.keep == "needed":
        executor.prune_all()

    if config.latency is not None:
        from xstilts.study.latency import measure_run

        if is_main_process():
            with attempts.attempt("latency", "every evaluated model"):
                measure_run(run.root, config.latency, progress)
        wait_for_everyone()
    summary = summarize(config.name, rows)
    summary["effects"] = analyse(rows, units_loader(run.root), unevaluated=record.unevaluated)
    summary["intermediate_stages"] = [
        _stage_summary(run.store.record(node.identity, node.stage.name)) for node in plan.stages
    ]
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    if config.keep == "needed":
        summary["bytes_pruned"] = executor.bytes_pruned
    if is_main_process():
        run.write_summary(summary)
        run.write_chain_links(run.result_rows())
    return summary


def node_kind(node: ChainPrefix) -> str:
    """What building a plan node is, for a rehearsal's table: a merge, a mixture, an intermediate stage of a kind."""
    if node.merge is not None:
        return f"merge ({node.merge.settings.method})"
    if node.stage.mixture is not None:
        return "mixture stage"
    return f"intermediate {node.stage.spec.kind} ({node.stage.mode})"


class Executor:
    """Runs plan nodes and the evaluations hanging off them; with `keep: needed` it deletes weights no longer needed."""

    def __init__(
        self,
        config: ExperimentConfig,
        registry: TaskRegistry,
        run: RunDirectory,
        plan: Plan,
        evaluations: list[PlannedEvaluation],
        progress: bool,
        attempts: Attempts | None = None,
    ):
        self.config, self.registry, self.run, self.plan, self.progress = config, registry, run, plan, progress
        self.attempts = attempts or Attempts()
        self.store = run.store
        self.targets: dict[str, TargetConfig] = {target.task: target for target in config.targets}
        self.by_prefix: dict[str, list[PlannedEvaluation]] = defaultdict(list)
        self.by_stage: dict[str | None, list[PlannedEvaluation]] = defaultdict(list)  # a target stage's evaluations
        for evaluation in evaluations:
            self.by_prefix[evaluation.prefix].append(evaluation)
            self.by_stage[evaluation.stage].append(evaluation)
        self.children: dict[str, list[ChainPrefix]] = {}  # what is built from a node's weights
        for node in plan.stages:
            self.children.setdefault(node.stage.parent_identity, []).append(node)
        for node in plan.merges:
            for identity, _ in node.merge.members:
                self.children.setdefault(identity, []).append(node)
        self.bytes_pruned = 0
        target_stages = {e.stage for e in evaluations if e.stage is not None}
        self.stage_count = len(plan.stages) + len(plan.merges) + len(target_stages)
        self.stage_numbers: dict[str, int] = {}  # identity -> its place in this run's order, for log lines
        self.tracking = contextlib.ExitStack()  # the experiment-tracker runs of the stage being worked on
        self.tracked_identity: str | None = None
        self.diagnostics: Any = None  # PrefixDiagnostics, made at the first diagnosis

    def position(self, identity: str) -> str:
        """ "stage 3/14": where a stage stands in the run (done stages count too, so numbers hold across resumes)."""
        number = self.stage_numbers.setdefault(identity, len(self.stage_numbers) + 1)
        return f"stage {number}/{self.stage_count}"

    def evaluation_kind(self, evaluation: PlannedEvaluation) -> str:
        """ "target qa (full)": a fine-tune and its evaluation; "retrieval": an encoder evaluated as it is."""
        spec = self.registry.get(evaluation.target)
        return "retrieval" if evaluation.stage is None else f"target {spec.kind} ({evaluation.mode})"

    def evaluations_after(self, identity: str) -> list[PlannedEvaluation]:
        """The evaluations hanging off a prefix: seed by seed, targets in config order."""
        return sorted(self.by_prefix.get(identity, []), key=lambda e: e.seed)

    def ensure_trained(self, node: ChainPrefix, verify: bool = False) -> None:
        """Train `node` (and, first, any pruned or damaged ancestor whose weights it needs) unless its weights are on disk.

        With `verify` (its weights are about to be loaded), every file's sha256 is checked against its record.
        """
        if node.merge is not None:
            self._ensure_merged(node, verify)
        if node.stage is None:
            return
        self.position(node.identity)  # numbered in plan order, trained now or not
        record = self.store.record(node.identity, node.stage.name, full=verify)
        if record is not None and not record.get("pruned"):
            return
        if record is not None:
            if not self._needed(node):
                return
            log.info("stage %s was pruned and is needed again: retraining it", node.label)
        self._discard(node.identity, node.stage.name)  # pruned or damaged: trained afresh
        self.ensure_trained(self.plan.nodes[node.stage.parent_identity], verify=True)
        self.track(node.stage)
        run_stage(
            node.stage, self.store, self.progress, self.config.checkpoint_every_steps, self.position(node.identity)
        )

    def _ensure_merged(self, node: ChainPrefix, verify: bool) -> None:
        """Build the merged encoder unless it is on disk and intact: its members first (trained again if pruned),
        checked by sha256 as they are read. An interrupted merge left only its scratch folder: it is built again."""
        self.position(node.identity)
        if self.store.record(node.identity, node.merge.name, full=verify) is not None:
            return
        self._discard(node.identity, node.merge.name)
        for identity, _ in node.merge.members:
            self.ensure_trained(self.plan.nodes[identity], verify=True)
        if is_main_process():
            from xstilts.study.merge import build_merged_stage

            log.info("%s merge %s (%s)", self.position(node.identity), node.label, node.merge.settings.describe())
            build_merged_stage(self.store, node.merge)
        wait_for_everyone()

    def track(self, request: StageRequest) -> None:
        """Send what follows to the stage's runs in the config's experiment trackers: one run per stage, kept
        open across its dev and test evaluations, closed when another stage starts (or by `stop_tracking`)."""
        if request.identity == self.tracked_identity:
            return
        self.stop_tracking()
        self.tracked_identity = request.identity
        self.tracking.enter_context(
            stage_tracking(list(self.config.trackers), self.run.root, self.config.name, request)
        )

    def diagnose(self, node: ChainPrefix) -> None:
        """Write the prefix's diagnostics record unless it exists. Every process computes (evaluations split their
        work between processes); the main one writes."""
        wait_for_everyone()  # every process decides from the same files
        if read_json_or_none(self.run.diagnostics_file(node.identity), "diagnostics") is None:
            from xstilts.study.diagnostics import PrefixDiagnostics

            self.diagnostics = self.diagnostics or PrefixDiagnostics(self.config, self.registry, self.plan, self.run)
            self.diagnostics.write(node)
        wait_for_everyone()

    def stop_tracking(self) -> None:
        self.tracking.close()
        self.tracked_identity = None

    def _discard(self, identity: str, name: str) -> None:
        """Remove what is left of a stage that must be trained again (nothing happens when there is nothing)."""
        if is_main_process():
            self.store.discard(identity, name)
        wait_for_everyone()

    def _needed(self, node: ChainPrefix) -> bool:
        """Does a child stage or an evaluation of this node still have to be trained from its weights?"""
        if any(
            self.store.record(child.identity, child.built_name) is None
            for child in self.children.get(node.identity, [])
        ):
            return True
        return any(not self._done(evaluation) for evaluation in self.by_prefix.get(node.identity, []))

    def _done(self, evaluation: PlannedEvaluation) -> bool:
        """Is every language of the evaluation on disk and intact (with its target stage's record)?"""
        if evaluation.stage is None:
            directory = self.run.recorded(evaluation.retrieval)
            return all(
                read_evaluation(retrieval_evaluation_file(directory, evaluation.split, lang)) is not None
                for lang in evaluation.languages
            )
        if self.store.record(evaluation.stage, evaluation.target) is None:
            return False
        stage_dir = self.store.stage_dir(evaluation.stage, evaluation.target)
        return all(
            read_evaluation(evaluation_file(stage_dir, evaluation.split, lang)) is not None
            for lang in evaluation.languages
        )

    def run_evaluation(self, evaluation: PlannedEvaluation) -> list[ResultRow]:
        """Fine-tune and evaluate one target on its prefix (a retrieval target: evaluate the encoder as it is)."""
        prefix = replace(self.plan.nodes[evaluation.prefix], seed=evaluation.seed)
        target = self.targets[evaluation.target]
        spec = self.registry.get(target.task)
        done = self._done(evaluation)
        if not done:
            self.ensure_trained(prefix, verify=True)
        if evaluation.stage is None:
            # Inference only: the main process computes, the others then read its files.
            directory = self.run.recorded(evaluation.retrieval)
            languages = list(evaluation.languages)
            evaluations = (
                _evaluate_retrieval(directory, prefix, spec, evaluation.split, languages, target)
                if is_main_process()
                else None
            )
            wait_for_everyone()
            evaluations = evaluations or _evaluate_retrieval(
                directory, prefix, spec, evaluation.split, languages, target
            )
            record: StageRecord = {"dev_metrics": {}, "identity": None}
        else:
            request = target_request(self.config, self.registry, prefix, target)
            if not done:  # its weights will be used: intact, or trained afresh
                existing = self.store.record(request.identity, spec.name, full=True)
                if existing is None or existing.get("pruned"):
                    self._discard(request.identity, spec.name)
            if not done:
                self.track(request)
            record = run_stage(
                request,
                self.store,
                self.progress,
                self.config.checkpoint_every_steps,
                self.position(request.identity),
            )
            stage_dir = self.store.stage_dir(request.identity, spec.name)
            evaluations = evaluate_target(
                stage_dir,
                spec,
                evaluation.split,
                list(evaluation.languages),
                request.settings,
                self.progress,
                self.position(request.identity) + " " + request.label,
            )
        rows = [
            _result_row(evaluation, language, result, record, self._units_path(evaluation, language, record))
            for language, result in evaluations.items()
        ]
        if is_main_process():
            for row in rows:
                self.run.write_result(row)
        if evaluation.stage is not None:
            self._after_fine_tune(evaluation, record["identity"], spec.name)
        return rows

    def _after_fine_tune(self, evaluation: PlannedEvaluation, identity: str, target: str) -> None:
        """The fine-tune's rows are written: `Attempts.fine_tuned` may use its weights, which are then pruned
        (`keep: needed`) once every split of it is evaluated."""
        if is_main_process():
            self.attempts.fine_tuned(self.run.root, evaluation)
        if self.config.keep == "needed" and all(self._done(e) for e in self.by_stage[identity]):
            self.bytes_pruned += self.store.prune(identity, target) if is_main_process() else 0
            wait_for_everyone()

    def _units_path(self, evaluation: PlannedEvaluation, language: str, record: StageRecord) -> str:
        """Where the evaluation's units are, relative to the run directory (the result row points there)."""
        if evaluation.stage is None:
            path = retrieval_evaluation_file(self.run.recorded(evaluation.retrieval), evaluation.split, language)
        else:
            stage_dir = self.store.stage_dir(record["identity"], self.targets[evaluation.target].task)
            path = evaluation_file(stage_dir, evaluation.split, language)
        return self.run.relative(units_file(path))

    def prune_finished(self, node: ChainPrefix) -> None:
        """Prune the node's parent and the node itself when nothing still to run needs their weights."""
        candidates = [node] + ([self.plan.nodes[node.stage.parent_identity]] if node.stage else [])
        for candidate in candidates:
            if candidate.stage is not None and not self._needed(candidate):
                self.bytes_pruned += (
                    self.store.prune(candidate.identity, candidate.stage.name) if is_main_process() else 0
                )
        wait_for_everyone()

    def prune_all(self) -> None:
        for node in self.plan.stages:
            self.prune_finished(node)


def _evaluate_retrieval(
    directory: Path, prefix: ChainPrefix, spec: Any, split: str, languages: list[str], target: TargetConfig
) -> dict[str, Evaluation]:
    """Retrieval targets use the prefix's encoder as it is; finished languages are read back. One computation gives
    every split of a language (BUCC's dev chooses the threshold its test uses), and each is written with its predictions."""
    from xstilts.evaluate.retrieval import evaluate_encoder
    from xstilts.runtime.device import get_accelerator
    from xstilts.train.adapters import build_encoder
    from xstilts.train.modeling import load_tokenizer

    results: dict[str, Evaluation] = {}
    encoder = tokenizer = None
    for language in languages:
        evaluation = read_evaluation(retrieval_evaluation_file(directory, split, language))
        if evaluation is not None:
            results[language] = evaluation
            continue
        if encoder is None:
            device = get_accelerator().device
            encoder, tokenizer = build_encoder(prefix.recipe).to(device).eval(), load_tokenizer(prefix.recipe.base)
        by_split = evaluate_encoder(spec, language, encoder, tokenizer, target.embedding, device, prefix.identity)
        for computed, outcome in by_split.items():
            record: Evaluation = {
                "task": spec.name,
                "language": language,
                "split": computed,
                "examples": outcome["examples"],
                "metrics": outcome["metrics"],
                "units": outcome["units"].describe(),
            }
            write_jsonl(
                retrieval_predictions_file(directory, computed, language),
                [{"prediction": p} for p in outcome["predictions"]],
            )
            path = retrieval_evaluation_file(directory, computed, language)
            write_units(units_file(path), outcome["units"])
            write_evaluation(path, record)
            if computed == split:
                results[language] = record
        metrics = results[language]["metrics"]
        log.info(
            "%s %s %s after %s: %s",
            spec.name,
            split,
            language,
            prefix.label,
            {k: v for k, v in metrics.items() if isinstance(v, float)},
        )
    return results


def _result_row(
    evaluation: PlannedEvaluation, language: str, result: Evaluation, record: StageRecord, units_path: str
) -> ResultRow:
    units = {**result["units"], "file": units_path} if "units" in result else None  # evaluations from older runs: none
    return {
        "chain": list(evaluation.chain),
        "chain_length": evaluation.chain_length,
        "chain_label": evaluation.chain_label,
        "mode": evaluation.mode,
        "seed": evaluation.seed,
        "target": evaluation.target,
        "language": language,
        "split": evaluation.split,
        "metric": evaluation.metric,
        "metrics": result["metrics"],
        "score": headline(result["metrics"], evaluation.metric),
        "examples": result["examples"],
        "english_dev": record["dev_metrics"],
        "target_stage": record["identity"],
        **({"units": units} if units else {}),
        **({"control": evaluation.control} if evaluation.control else {}),
        **({"combination": evaluation.combination} if evaluation.combination else {}),
    }


def _stage_summary(record: StageRecord) -> dict[str, Any]:
    keys = ("task", "kind", "chain", "identity", "dev_metrics", "primary_metric", "steps", "best_step", "train_seconds")
    return {key: record[key] for key in keys}
