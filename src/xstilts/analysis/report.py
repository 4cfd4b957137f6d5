"""The run report: score against chain length, over orders and seeds. Reads results; never trains.

Built from `plan.json` (every (chain, target, language) the run was to produce) and the result files
under `results/`, so a partial or failed run still reports, with what is missing marked as missing.
Writes report.md, the same content as a self-contained report.html, results.csv and results.json,
and score_vs_chain_length.png (mean over orders and seeds, error bars one standard deviation).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from xstilts.analysis import plots
from xstilts.analysis.combination import combination_blocks, cost_points, training_costs
from xstilts.analysis.headline import build_headline
from xstilts.analysis.render import render_html, render_markdown
from xstilts.analysis.sections import ReportInputs, build_sections
from xstilts.analysis.tables import aggregate, build_tables, language_notes
from xstilts.chain_modes import FULL
from xstilts.errors import XstiltsError
from xstilts.files import atomic_writer, write_json_atomic, write_text_atomic
from xstilts.results import selection as choice_scores
from xstilts.results.effects import AVERAGE, analyse, units_loader
from xstilts.results.selection import choose, dev_is_test
from xstilts.rundir.records import ResultRow, StageRecord, is_study_row
from xstilts.rundir.runs import RunDirectory
from xstilts.terms import DEV, SELECTION_RULES, TEST


@dataclass
class Collected:
    """Everything the report reads, from one run directory or merged from several."""

    name: str
    rows: list[ResultRow]
    missing: list[dict[str, Any]]
    stages: list[StageRecord]
    selection: str
    unevaluated: list[dict[str, Any]] = field(default_factory=list)  # planned nowhere: no files (RunPlan)
    prefixes: dict[str, str] = field(default_factory=dict)  # chain label -> its prefix's identity (plan.json)
    combined_stages: set[str] = field(default_factory=set)  # identities of the combination study's stages


def collect(runs: Sequence[RunDirectory], selection: str | None = None) -> Collected:
    """The result rows, the planned results still missing and the intermediate stages' records of `runs`.

    Several runs merge into one set: the same (mode, chain, target, split, language) from two runs must come
    from the same target stage (identities are content hashes, so the same stage is the same result);
    anything else is an error naming both runs.
    """
    rows: dict[tuple, tuple[ResultRow, RunDirectory]] = {}
    plans, stages, names = [], {}, []
    for run in runs:
        plan = run.read_plan()
        found = run.result_rows()
        if not found and plan is None:
            raise XstiltsError(f"{run.root}: no results and no {run.plan_file.name}; is this a run directory?")
        for row in found:
            if isinstance(row.get("units"), dict) and "file" in row["units"]:  # read from this run's directory
                row = {**row, "units": {**row["units"], "path": str(run.recorded(row["units"]["file"]))}}
            key = (row["mode"], row["chain_label"], row["target"], row["split"], row["language"])
            if key in rows and not _same_result(rows[key][0], row):
                raise XstiltsError(
                    f"{run.root} and {rows[key][1].root} both hold {'/'.join(map(str, key[1:]))} from different models "
                    f"(target stages {rows[key][0].get('target_stage')} and {row.get('target_stage')}); merge runs of "
                    "different settings under different chain labels, or report them apart"
                )
            rows.setdefault(key, (row, run))
        if plan is not None:
            plans.append(plan)
            names.append(plan.name)
            for stage in plan.stages:
                record = run.store.record(stage.identity, stage.task)
                if record is not None:
                    stages.setdefault(stage.identity, record)
        else:
            names.append(run.root.name)
    merged = [row for row, _ in rows.values()]
    found_keys = {(r["mode"], r["chain_label"], r["target"], r["split"], r["language"]) for r in merged}
    expected = {
        (e["mode"], e["chain_label"], e["target"], e["split"], e["language"]): e
        for plan in plans
        for e in plan.expected()
    }
    missing = [entry for key, entry in expected.items() if key not in found_keys]
    rule = selection or next((plan.selection for plan in plans), "dev")
    unevaluated = list({(u["target"], u["split"], u["language"]): u for p in plans for u in p.unevaluated}.values())
    prefixes = {e.chain_label: e.prefix for plan in plans for e in plan.evaluations if e.prefix}
    combined = {s.identity for plan in plans for s in plan.stages if s.combination}
    name = " + ".join(dict.fromkeys(names))
    return Collected(name, merged, missing, list(stages.values()), rule, unevaluated, prefixes, combined)


def _same_result(first: ResultRow, second: ResultRow) -> bool:
    if first.get("target_stage") or second.get("target_stage"):
        return first.get("target_stage") == second.get("target_stage")
    return first["metrics"] == second["metrics"]  # retrieval: the same encoder gives the same numbers


CSV_COLUMNS = [
    "mode",
    "chain_label",
    "chain_length",
    "chain",
    "seed",
    "target",
    "language",
    "metric",
    "value",
    "score",
    "score_lower",
    "score_upper",
    "gain_over_k0",
    "gain_lower",
    "gain_upper",
    "interval_examples",
    "interval_method",
    "control",
    "combination",
    "split",
]


def write_results_tables(run: RunDirectory, rows: list[ResultRow], effects: Mapping[str, Any]) -> None:
    """results.json (the rows, each with its intervals) and results.csv (one line per chain, target, language and
    metric; the headline score's 95% interval and its gain over k = 0 with interval beside it)."""
    with_intervals = []
    for row in rows:
        found = effects.get(row["mode"], {}).get(row["split"], {}).get("rows", {})
        intervals = found.get(f"{row['chain_label']}/{row['target']}/{row['language']}", {})
        public = {key: value for key, value in row.items() if key != "units"}
        if "units" in row:
            public["units"] = {key: value for key, value in row["units"].items() if key != "path"}
        with_intervals.append({**public, "intervals": intervals})
    write_json_atomic(run.results_json, with_intervals)
    with atomic_writer(run.results_csv) as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for row in with_intervals:
            score, gain = row["intervals"].get("score") or {}, row["intervals"].get("gain") or {}
            interval = [
                score.get("lower"),
                score.get("upper"),
                gain.get("estimate"),
                gain.get("lower"),
                gain.get("upper"),
                row["intervals"].get("examples"),
                score.get("method") or gain.get("method") or "",
            ]
            for metric, value in row["metrics"].items():
                if isinstance(value, (int, float)):
                    writer.writerow(
                        [
                            row["mode"],
                            row["chain_label"],
                            row["chain_length"],
                            "+".join(row["chain"]),
                            row["seed"],
                            row["target"],
                            row["language"],
                            metric,
                            value,
                            row["score"],
                            *("" if v is None else v for v in interval),
                            row.get("control", ""),
                            (row.get("combination") or {}).get("method", ""),
                            row["split"],
                        ]
                    )


@dataclass
class WrittenReport:
    """What `write_report_files` wrote: report.md, the headline as markdown (the terminal summary), every file."""

    path: Path
    headline: str
    files: list[Path]


def write_report(
    run_dir: str | Path | Sequence[str | Path], output_dir: str | Path | None = None, selection: str | None = None
) -> Path:
    """Write report.md, report.html, results.csv/json and the plots; returns report.md.

    `run_dir` is one run directory, or several to merge into one report (written to `output_dir`, which
    defaults to the single run directory). `selection` overrides the rule the run's plan names.
    """
    return write_report_files(run_dir, output_dir, selection).path


def write_report_files(
    run_dir: str | Path | Sequence[str | Path], output_dir: str | Path | None = None, selection: str | None = None
) -> WrittenReport:
    """`write_report`, also returning the headline and the list of files written."""
    run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if not run_dirs:
        raise XstiltsError("no run directory to report")
    if output_dir is None and len(run_dirs) > 1:
        raise XstiltsError("several run directories: name the directory the merged report goes to (-o/--output-dir)")
    runs = [RunDirectory(path) for path in run_dirs]
    run = RunDirectory(output_dir) if output_dir is not None else runs[0]
    for opened in [*runs, run]:
        opened.check_contained()
    run.root.mkdir(parents=True, exist_ok=True)
    collected = collect(runs, selection)
    name, rows = collected.name, collected.rows
    effects = analyse(rows, units_loader(), unevaluated=collected.unevaluated)
    latency = next((latency for source in runs if (latency := source.read_latency()) is not None), None)
    aggregated_by_mode, tables, notes = _aggregate_modes(collected)
    best = {mode: _dev_best_lengths(aggregated, collected.selection) for mode, aggregated in aggregated_by_mode.items()}
    latency_lines = _latency_verdicts(latency)
    headline = build_headline(effects, best, latency_lines)
    costs = training_costs(collected.stages, collected.prefixes)
    headline.blocks += combination_blocks(effects, costs, latency)
    write_results_tables(run, rows, effects)

    images = _plots(run, effects, aggregated_by_mode, latency)
    lengths = {(r["mode"], r["chain_label"]): r["chain_length"] for r in rows if is_study_row(r)}
    if plots.gain_against_cost(cost_points(effects, costs, lengths), run.plot_file("cost")):
        images["cost"] = (
            "gain over k = 0 against training cost, one marker per method and k",
            run.plot_file("cost").name,
        )
    inputs = ReportInputs(run, runs, rows, headline, tables, notes, latency, images)
    sections = build_sections(inputs)
    intro = (
        "Zero-shot scores of each target after a chain of k English intermediate tasks (k = 0: the pretrained "
        "encoder). A target's score is the unweighted mean over its languages (QA: (EM + F1) / 2); the XTREME score "
        "is marked partial unless all nine tasks and their languages are present. Each table names its split: test is "
        "the default view; every choice (best chain length, intermediate task, model per target) is made on dev, by "
        f"{SELECTION_RULES[collected.selection]}, and reported on test, next to what choosing on test would have given."
    )
    wall = run.wall_seconds()
    footer = f"Run wall time: {wall:.0f} s." if wall is not None else None
    path = run.report_file
    write_text_atomic(path, render_markdown(name, intro, sections, footer))
    write_text_atomic(run.html_file, render_html(run, name, intro, sections, footer))
    answer = [replace(section, images=[]) for section in sections if section.answer]
    written = [path, run.html_file, run.results_csv, run.results_json]
    written += [run.file(image).with_suffix(suffix) for _, image in images.values() for suffix in (".png", ".svg")]
    return WrittenReport(path, render_markdown(name, "", answer, None), written)


def _aggregate_modes(
    collected: Collected,
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, list[list[str]]]], list[str]]:
    """Per chain mode: the aggregation, its tables (titled by mode when there are several) and the language notes."""
    rows, missing = collected.rows, collected.missing
    modes = sorted({r["mode"] for r in rows} | {m["mode"] for m in missing}) or [FULL]
    by_mode, tables, notes = {}, [], []
    for mode in modes:
        mode_missing = [m for m in missing if m["mode"] == mode]
        aggregated = aggregate(collected.name, [r for r in rows if r["mode"] == mode], mode_missing)
        stages = (
            r
            for r in collected.stages
            if r["role"] == "intermediate" and r["mode"] == mode and r["identity"] not in collected.combined_stages
        )
        aggregated["intermediate_stages"] = sorted(stages, key=lambda r: (len(r["chain"]), r["chain"], r["seed"]))
        by_mode[mode] = aggregated
        mode_tables = build_tables(aggregated, mode_missing, collected.selection)
        tables += [(f"{title} [{mode}]" if len(modes) > 1 else title, table) for title, table in mode_tables]
        notes += [note for note in language_notes(aggregated["summary"]) if note not in notes]
    return by_mode, tables, notes


def _dev_best_lengths(aggregated: dict[str, Any], selection: str) -> dict[str, int]:
    """The chain length each target (and the average over targets) would be chosen at, on dev only."""
    dev, test = choice_scores.by_length(aggregated[DEV], aggregated[TEST], selection)
    if not dev:
        return {}
    targets = sorted({t for scores in dev.values() for t in scores})
    chosen = {target: choice.chosen for target, choice in choose(targets, dev, test).items()}
    own = [t for t in targets if t not in dev_is_test(targets)]  # a dev split read from test files never chooses
    complete = {k: fmean(scores[t] for t in own) for k, scores in dev.items() if own and all(t in scores for t in own)}
    if complete and len(targets) > 1:
        chosen[AVERAGE] = max(complete, key=lambda k: complete[k])
    return chosen


def _latency_verdicts(latency: dict[str, Any] | None) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = {}
    for group in (latency or {}).get("groups", []):
        lines.setdefault(group["mode"], []).append(
            f"{group['target']}, batch {group['batch_size']} x {group['length']}: {group['verdict']}"
        )
    return lines


def _plots(
    run: RunDirectory, effects: dict[str, Any], by_mode: dict[str, dict[str, Any]], latency: dict[str, Any] | None
) -> dict[str, tuple[str, str]]:
    """Draw every figure there is data for: plot -> (alt text, PNG name) (an SVG of the same name beside it)."""
    images = {}
    if plots.gain_panels(effects, run.plot_file("gain")):
        images["gain"] = ("gain over k = 0 against chain length, one panel per target", run.plot_file("gain").name)
    languages = next((a[TEST]["languages"] for a in by_mode.values() if a[TEST]["languages"]), None)
    if languages and plots.gain_heatmap(languages, run.plot_file("heatmap")):
        images["heatmap"] = ("gain over k = 0 by language and chain length", run.plot_file("heatmap").name)
    if latency is not None and latency["groups"] and plots.latency_panels(latency, run.plot_file("latency")):
        images["latency"] = ("latency against chain length", run.plot_file("latency").name)
    if plots.tradeoff(effects, latency, run.plot_file("tradeoff")):
        images["tradeoff"] = (
            "gain against latency ratio, one point per chain mode and length",
            run.plot_file("tradeoff").name,
        )
    return images
