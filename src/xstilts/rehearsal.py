"""Rehearse a study before paying for it (`xstilts run CONFIG --rehearse`): the whole plan at the real model's
shapes, a step and a few examples each, in a scratch directory that is removed after.

The rehearsal runs the study's own runner (`xstilts.study.runner.run_once`) on a derived config, so every stage,
chain mode, merge, target fine-tune, language, evaluation, diagnostic and latency measurement goes through the
code the real run uses; with one export per chain mode and target kind (before `keep: needed` prunes the
fine-tune: the rehearsal keeps a few stages on disk at a time), and the report. What changes:

- the encoder: a hub model is replaced by random weights at its shapes (`xstilts.demo.shaped`, cached), a local
  directory is used as it is;
- the data: the first examples of every file the study reads, stand-ins where a file is missing (listed as
  missing, `xstilts.data.samples`);
- the plan, deduplicated: each intermediate task trained once (singles, and one chain of two when the study has
  longer chains), one seed, the targets fine-tuned after the first task only (k = 0 is the same code on the
  pretrained encoder), one grid point per merge method;
- training: one optimizer step per stage at `batch_size` examples and the stage's real max_length, `examples`
  per evaluation language.

Every piece's error is recorded instead of stopping the rehearsal, with its peak memory (`xstilts.runtime.memory`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig, parse_config
from xstilts.data.cache import cache_root
from xstilts.data.samples import SampledFile, sample_retrieval_files, sample_task_files
from xstilts.errors import XstiltsError
from xstilts.rundir.records import PlannedEvaluation
from xstilts.runtime.memory import Peak, device_memory, peak_memory
from xstilts.study.runner import Attempts
from xstilts.tasks.registry import TaskRegistry, TaskSpec

log = logging.getLogger(__name__)

FORCED_TRAINING = ("max_steps", "batch_size", "micro_batch_size", "eval_examples", "max_eval_examples", "epochs")
TOKENIZER_LINES = 20_000  # text the shaped encoder's tokenizer learns from
SCRATCH_PREFIX = "xstilts-rehearsal-"
DIAGNOSTIC_SENTENCES = 8  # per language: representation similarity (CKA) needs at least 4


@dataclass
class Outcome:
    """One piece of work the rehearsal did: what, how long, its peak memory, and its error if it failed."""

    kind: str
    label: str
    seconds: float
    peak: Peak
    error: str | None = None


class Rehearsal(Attempts):
    """The runner's `Attempts` of a rehearsal: each piece's error is kept (the runner skips what depends on it)."""

    def __init__(self, registry: TaskRegistry, exports: Path) -> None:
        self.outcomes: list[Outcome] = []
        self.inner_peaks: list[int] = []
        self.registry, self.exports = registry, exports
        self.exported: set[tuple[str, str]] = set()

    def fine_tuned(self, run_root: Path, evaluation: PlannedEvaluation) -> None:
        """Export the first fine-tune of each chain mode and target kind, before `keep: needed` prunes it."""
        from xstilts.export.model import export_model

        kind = self.registry.get(evaluation.target).kind
        if (evaluation.mode, kind) in self.exported:
            return
        self.exported.add((evaluation.mode, kind))
        with self.attempt(f"export {kind} ({evaluation.mode})", f"{evaluation.target} after {evaluation.chain_label}"):
            export_model(run_root, evaluation.chain_label, evaluation.target, self.exports / evaluation.target)
        shutil.rmtree(self.exports, ignore_errors=True)

    @contextlib.contextmanager
    def attempt(self, kind: str, label: str) -> Iterator[list[BaseException]]:
        failed: list[BaseException] = []
        started = time.perf_counter()
        self.inner_peaks.append(0)  # what the pieces inside this one reached (each resets the high-water mark)
        with peak_memory() as peak:
            try:
                yield failed
            except Exception as error:  # a rehearsal goes on; KeyboardInterrupt and SystemExit still stop it
                failed.append(error)
                log.warning("rehearsal: %s %s failed: %s", kind, label, _describe(error))
                log.debug("%s", "".join(traceback.format_exception(error)))
        peak.bytes = max(peak.bytes, self.inner_peaks.pop())
        if self.inner_peaks:
            self.inner_peaks[-1] = max(self.inner_peaks[-1], peak.bytes)
        error = _describe(failed[0]) if failed else None
        self.outcomes.append(Outcome(kind, label, time.perf_counter() - started, peak, error))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class Findings:
    """What a rehearsal found: the table `format_findings` prints."""

    name: str
    encoder: str
    batch_size: int
    examples: int
    missing: list[SampledFile] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # what the real run refuses before it starts
    outcomes: list[Outcome] = field(default_factory=list)
    memory_limit: int = 0
    memory_where: str = ""
    disk_needed: int | None = None
    disk_free: int | None = None
    seconds: float = 0.0

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    def over_memory(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.peak.bytes > self.memory_limit]


def rehearse(
    config: ExperimentConfig,
    examples: int = 1,
    batch_size: int = 1,
    memory_limit: int | None = None,
    scratch_parent: Path | None = None,
    progress: bool = True,
) -> Findings:
    """Rehearse `config` (see the module's docstring) and say what would break."""
    started = time.perf_counter()
    limit, where = device_memory()
    findings = Findings(config.name, config.encoder, batch_size, examples, memory_limit=memory_limit or limit)
    findings.memory_where = "stated" if memory_limit else where
    registry = config.registry()
    findings.disk_needed, findings.disk_free = _disk(config, registry)
    encoder = _rehearsal_encoder(config, registry, cache_root() / "shaped-encoders")
    _remove_stale_scratch(Path(scratch_parent or tempfile.gettempdir()))
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_parent))
    try:
        with _environment("XSTILTS_CACHE", scratch / "cache"):
            findings.encoder = encoder if encoder == config.encoder else f"{config.encoder}'s shapes"
            rehearsed = _derive(config, registry, scratch, encoder, batch_size, examples, findings)
            attempts = Rehearsal(rehearsed.registry(), scratch / "exports")
            _walk(rehearsed, attempts, progress)
            findings.outcomes = attempts.outcomes
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    findings.seconds = time.perf_counter() - started
    return findings


def _remove_stale_scratch(parent: Path) -> None:
    """A rehearsal killed outright (SIGKILL, out of memory) cannot remove its scratch: the next one does, by the
    process id in its name (a rehearsal still running elsewhere keeps its own)."""
    import psutil

    for directory in parent.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = directory.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            log.info("removing the scratch of a rehearsal that was killed: %s", directory)
            shutil.rmtree(directory, ignore_errors=True)


def _walk(config: ExperimentConfig, attempts: Rehearsal, progress: bool) -> None:
    """The run (exports happen in it, `Rehearsal.fine_tuned`), then the report, each attempted."""
    from xstilts.analysis.report import write_report_files
    from xstilts.study.runner import run_once

    with attempts.attempt("whole run", "the plan"):  # what fails outside any one node (planning, the summary)
        run_once(config, progress, attempts)
    with attempts.attempt("report", "results, tables and plots"):
        write_report_files(config.output_dir)


@contextlib.contextmanager
def _environment(name: str, value: Path) -> Iterator[None]:
    """The rehearsal's caches (features, BUCC candidates) go to its scratch directory, not the user's."""
    before = os.environ.get(name)
    os.environ[name] = str(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _disk(config: ExperimentConfig, registry: TaskRegistry) -> tuple[int | None, int | None]:
    """The store's size for the full run (`xstilts plan --device` prices it) and what is free where it goes."""
    from xstilts.rundir.runs import RunDirectory
    from xstilts.study.plan import build_plan
    from xstilts.study.price import encoder_shape, price_plan

    needed = None
    with contextlib.suppress(XstiltsError):
        plan = build_plan(config, registry, RunDirectory(config.output_dir).store)
        needed = sum(stage.disk_bytes for stage in price_plan(plan, config, registry, encoder_shape(config.encoder)))
    existing = next(p for p in [Path(config.output_dir), *Path(config.output_dir).parents] if p.exists())
    return needed, shutil.disk_usage(existing).free


# ---- the encoder ----


def _rehearsal_encoder(config: ExperimentConfig, registry: TaskRegistry, cache: Path) -> str:
    """A local encoder directory as it is; otherwise random weights at the encoder's shapes, built once and cached."""
    from xstilts.study.price import encoder_shape

    if Path(config.encoder).is_dir():
        return config.encoder
    shape = encoder_shape(config.encoder)  # a clear error when the shape cannot be known offline
    directory = cache / re.sub(r"[^A-Za-z0-9_.-]+", "--", config.encoder)
    if not (directory / "config.json").is_file():
        from xstilts.demo.shaped import build_shaped_encoder

        log.info("building an encoder shaped like %s (random weights) in %s", config.encoder, directory)
        scratch = directory.with_name(directory.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        build_shaped_encoder(scratch, shape, _tokenizer_text(config, registry))
        scratch.rename(directory)
    return str(directory)


def _tokenizer_text(config: ExperimentConfig, registry: TaskRegistry) -> list[str]:
    """Lines of the targets' evaluation files that are on disk (every language they have), else the demo's text."""
    from xstilts.demo.benchmark import corpus_sentences
    from xstilts.demo.shaped import text_lines

    paths = [
        registry.get(t.task).data.path(registry.get(t.task).eval_split, language)
        for t in config.targets
        for language in config.target_languages(t, registry)
    ]
    found = [path for path in paths if path.is_file()]
    return text_lines(found, TOKENIZER_LINES) if found else corpus_sentences(TOKENIZER_LINES)


# ---- the rehearsal's config and data ----


def _derive(
    config: ExperimentConfig,
    registry: TaskRegistry,
    scratch: Path,
    encoder: str,
    batch_size: int,
    examples: int,
    findings: Findings,
) -> ExperimentConfig:
    """The config the rehearsal runs: its data sampled into `scratch`, its plan deduplicated, its training cut to a
    step. Targets the real run would refuse (`findings.refused`) or that have no data at all are left out."""
    from xstilts.study.preflight import shape_problems
    from xstilts.study.price import encoder_shape

    data = config.model_dump(mode="json")
    shape = encoder_shape(encoder)
    findings.refused = shape_problems(config, registry, shape)
    count, data_dir = max(batch_size, examples, DIAGNOSTIC_SENTENCES), scratch / "data"
    missing: list[SampledFile] = []
    sampled_tasks = _trainable_files(config, registry)
    for name, files in sampled_tasks.items():
        spec = registry.get(name)
        words = _stand_in_words(spec, config)
        sampled = sample_task_files(spec, files, data_dir / name, count, _SENTENCES, words)
        missing += [f for f in sampled if not f.found]
    targets = []
    for index, (target, dumped) in enumerate(zip(config.targets, data["targets"])):
        spec = registry.get(target.task)
        if not spec.trainable:
            if any(problem.startswith(f"targets[{index}].") for problem in findings.refused):
                continue  # the real run refuses it before anything trains
            languages = config.target_languages(target, registry)
            found, lost = _sample_retrieval(spec, languages, data_dir, count)
            missing += lost
            if not found:
                continue
            dumped = {**dumped, "languages": found}
        targets.append(dumped)
    findings.missing = missing
    for group in ("tasks", "variants"):
        for name in set(data[group]) & set(sampled_tasks):
            data[group][name]["data_dir"] = str(data_dir / name)
    data.update(
        name=f"{config.name}-rehearsal",
        encoder=encoder,
        output_dir=str(scratch / "run"),
        data_dir=str(data_dir),
        targets=targets,
        keep="needed",  # the scratch holds a few stages at a time (each exported before it is pruned)
        checkpoint_every_steps=None,
    )
    _cut_training(data, batch_size, examples)
    _deduplicate(data)
    return parse_config(data, source=f"the rehearsal of {config.name}", base_dir=scratch)


_SENTENCES = [
    "The committee met on Tuesday to discuss the new proposal for the museum.",
    "Rain fell across the northern valleys while farmers waited for the harvest.",
    "She translated the letter into three languages before the train left.",
    "Researchers measured the river's depth at twelve points along its course.",
]  # the words of stand-in examples; their meaning does not matter, their length does


def _stand_in_words(spec: TaskSpec, config: ExperimentConfig) -> int:
    """Words per stand-in text: about the stage's max_length in tokens (a word is a token or more), so that a
    stand-in fills a feature as a long real example does without being cut into many windows."""
    from xstilts.settings import resolve_settings

    return resolve_settings(spec.kind, spec.training_defaults, config.training).max_length * 3 // 4


def _trainable_files(config: ExperimentConfig, registry: TaskRegistry) -> dict[str, list[tuple[str, str]]]:
    """Every (split, language) file each trainable task of the study reads: training and English dev for every
    stage, and the targets' evaluation files in their languages."""
    names = [stage.task for stage in config.chain] + [c.task for c in config.controls.positive]
    names += config.study.pool if config.study is not None else []
    names += [member.task for mixture in config.mixtures.values() for member in mixture.tasks]  # all are checked
    files: dict[str, list[tuple[str, str]]] = {}
    for name in dict.fromkeys(names + [t.task for t in config.targets]):
        if name in config.mixtures or not registry.get(name).trainable:
            continue
        spec = registry.get(name)
        files[name] = [(spec.train_split, spec.train_language)]
        files[name] += [(spec.dev_split, language) for language in spec.split_languages(spec.dev_split)]
    for target in config.targets:
        spec = registry.get(target.task)
        if spec.trainable:
            files[spec.name] += [(spec.eval_split, language) for language in config.target_languages(target, registry)]
    return files


def _sample_retrieval(
    spec: TaskSpec, languages: list[str], data_dir: Path, count: int
) -> tuple[list[str], list[SampledFile]]:
    """A retrieval target's languages whose files were found (and copied), and the missing ones."""
    split = spec.required_split
    found, missing = [], []
    for language in languages:
        if sample_retrieval_files(spec, split, language, data_dir / spec.name, count):
            found.append(language)
            if split != spec.eval_split:  # the test files too, where there are any
                sample_retrieval_files(spec, spec.eval_split, language, data_dir / spec.name, count)
        else:
            missing.append(SampledFile(spec.name, split, language, False))
    return found, missing


def _training_blocks(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every `training:` block below the top level (tasks, mixtures, chain stages, targets, controls)."""
    for group in ("tasks", "mixtures"):
        yield from (entry["training"] for entry in data[group].values())
    for entry in (*data["chain"], *data["targets"], *data["controls"]["positive"]):
        yield entry["training"]


def _cut_training(data: dict[str, Any], batch_size: int, examples: int) -> None:
    """One optimizer step at `batch_size` (lengths as configured), `examples` per evaluation language, for every
    stage; the nested blocks lose the keys the rehearsal sets so that its top-level values hold everywhere."""
    for block in _training_blocks(data):
        for key in FORCED_TRAINING:
            block.pop(key, None)
    data["training"].update(
        max_steps=1, batch_size=batch_size, micro_batch_size=None, eval_examples=examples, max_eval_examples=examples
    )
    if data.get("diagnostics"):
        enough = max(DIAGNOSTIC_SENTENCES, examples)
        data["diagnostics"].update(
            probe_sentences=enough,
            parallel_sentences=enough,
            estimate_examples=enough,
            forgetting_examples=enough,
            probe_steps=1,
        )
    for mixture in data["mixtures"].values():
        if mixture.get("mlm"):
            mixture["mlm"]["max_examples_per_language"] = max(batch_size, examples)
    if data.get("latency"):
        data["latency"].update(warmup=0, repetitions=3, bootstrap=100)


def _deduplicate(data: dict[str, Any]) -> None:
    """Each intermediate task once (singles, and one chain of two when the study chains further), one seed,
    targets after the first task only, the first grid point of each merge method."""
    data["controls"]["a_a"] = False
    study = data.get("study")
    if not study:
        return
    pool = study["pool"]
    longest = study["max_chain_length"] if study["max_chain_length"] is not None else len(pool)
    study.update(
        orders={"singles": True, "explicit": [pool[:2]] if longest >= 2 and len(pool) >= 2 else []},
        max_chain_length=min(longest, 2),
        seeds=study["seeds"][:1],  # baseline_runs stays: k = 0 gets no fine-tune here, so it costs nothing
        search=None,
        evaluate_on=[pool[:1]],  # k = 0 is the same code on the pretrained encoder: the first task covers both
    )
    if study.get("combine"):
        combine = study["combine"]
        combine["weights"] = combine["weights"][:1]
        combine["densities"] = combine["densities"][:1]
        if combine.get("sets") is None and longest >= 2 and len(pool) >= 2:
            combine["sets"] = [pool[:2]]


# ---- the table ----


def _gb(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 1e9:.1f} GB"


def _missing_lines(missing: list[SampledFile]) -> list[str]:
    """One line per task and split: the languages whose file is missing."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for item in missing:
        grouped.setdefault((item.task, item.split), []).append(item.language)
    return [f"  {task:<15} {split:<6} {' '.join(languages)}" for (task, split), languages in sorted(grouped.items())]


def _kind_lines(findings: Findings) -> list[str]:
    """Per kind of work: how many pieces, how many failed, the slowest and the highest peak memory."""
    kinds: dict[str, list[Outcome]] = {}
    for outcome in findings.outcomes:
        kinds.setdefault(outcome.kind, []).append(outcome)
    lines = [f"  {'kind of work':<38} {'runs':>4} {'failed':>6} {'slowest':>8} {'peak memory':>12}  of the limit"]
    for kind, outcomes in kinds.items():
        peak = max(o.peak.bytes for o in outcomes)
        share = peak / findings.memory_limit
        mark = "  OVER" if share > 1 else ""
        inexact = "" if all(o.peak.exact for o in outcomes) else " (at least)"
        lines.append(
            f"  {kind:<38} {len(outcomes):>4} {sum(1 for o in outcomes if o.error):>6} "
            f"{max(o.seconds for o in outcomes):>7.1f}s {_gb(peak):>12}  {share:.0%}{mark}{inexact}"
        )
    return lines


def format_findings(findings: Findings) -> str:
    """The rehearsal's table: what is missing, what would fail, memory per kind of work against the limit, disk."""
    minutes, seconds = divmod(round(findings.seconds), 60)
    lines = [
        f"Rehearsal of {findings.name} with {findings.encoder}: one optimizer step per stage at batch "
        f"{findings.batch_size}, {findings.examples} example{'s' if findings.examples > 1 else ''} per evaluation "
        f"language ({minutes} min {seconds} s).",
    ]
    if findings.missing:
        lines += [
            "",
            f"Missing data ({len(findings.missing)} files; stand-ins were rehearsed, retrieval languages left out):",
        ]
        lines += _missing_lines(findings.missing)
    problems = [f"  refused before training: {p}" for p in findings.refused]
    problems += [f"  {o.kind}: {o.label}: {o.error}" for o in findings.failures]
    lines += ["", "Would fail:" if problems else "Would fail: nothing.", *problems]
    lines += ["", f"Memory limit {_gb(findings.memory_limit)} ({findings.memory_where}):", *_kind_lines(findings)]
    short = (
        findings.disk_needed is not None
        and findings.disk_free is not None
        and findings.disk_needed > findings.disk_free
    )
    lines += [
        "",
        f"Disk for the full run's store: {_gb(findings.disk_needed)}; free where it goes: {_gb(findings.disk_free)}"
        + ("  NOT ENOUGH" if short else ""),
    ]
    return "\n".join(lines)


def would_break(findings: Findings) -> bool:
    """Does anything found stop the real run (missing data, a refusal, a failure, memory or disk short)?"""
    short = (
        findings.disk_needed is not None
        and findings.disk_free is not None
        and findings.disk_needed > findings.disk_free
    )
    return bool(findings.missing or findings.refused or findings.failures or findings.over_memory() or short)
