"""The run report: score against chain length, over orders and seeds. Reads results; never trains.

Built from `plan.json` (every (chain, target, language) the run was to produce) and the result files
under `results/`, so a partial or failed run still reports, with what is missing marked as missing.
Writes report.md, the same content as a self-contained report.html, results.csv and results.json,
and score_vs_chain_length.png (mean over orders and seeds, error bars one standard deviation).
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from xstilts.analysis import plots
from xstilts.analysis.diagnostics_tables import diagnostics_tables, search_section
from xstilts.analysis.headline import build_headline
from xstilts.chain_modes import FULL
from xstilts.errors import XstiltsError
from xstilts.files import atomic_writer, write_json_atomic, write_text_atomic
from xstilts.languages import language_name
from xstilts.metrics.xtreme import XTREME_TASK_ORDER, xtreme_score
from xstilts.results import selection as choice_scores
from xstilts.results.aggregate import Stats, by_chain_length, split_chains, summarize
from xstilts.results.diagnostics import summarise as summarise_diagnostics
from xstilts.results.effects import AVERAGE, analyse, units_loader
from xstilts.results.selection import choose, dev_is_test
from xstilts.rundir.records import ResultRow, StageRecord
from xstilts.rundir.runs import RunDirectory
from xstilts.terms import DEV, SELECTION_RULES, TEST

PRETRAINED = "pretrained"

MISSING = "missing"
NO_RESULT = "-"  # a cell the run has no result for by design (no dev split, not chosen)


@dataclass
class Collected:
    """Everything the report reads, from one run directory or merged from several."""

    name: str
    rows: list[ResultRow]
    missing: list[dict[str, Any]]
    stages: list[StageRecord]
    selection: str
    unevaluated: list[dict[str, Any]] = field(default_factory=list)  # planned nowhere: no files (RunPlan)


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
    return Collected(" + ".join(dict.fromkeys(names)), merged, missing, list(stages.values()), rule, unevaluated)


def _same_result(first: ResultRow, second: ResultRow) -> bool:
    if first.get("target_stage") or second.get("target_stage"):
        return first.get("target_stage") == second.get("target_stage")
    return first["metrics"] == second["metrics"]  # retrieval: the same encoder gives the same numbers


def _cell(stats: Stats | None, empty: str = MISSING) -> str:
    if stats is None:
        return empty
    mean, std, n = stats
    return f"{mean:.1f}" if n == 1 else f"{mean:.1f} ± {std:.1f} (n={n})"


def _number(value: float | None, sign: bool = False) -> str:
    return NO_RESULT if value is None else (f"{value:+.1f}" if sign else f"{value:.1f}")


def aggregate(name: str, rows: list[ResultRow], missing: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-chain summary (as summary.json holds it) and its aggregation by chain length, per split."""
    summary = summarize(name, rows)
    return {
        "summary": summary,
        TEST: by_chain_length(summary, missing, TEST),
        DEV: by_chain_length(summary, missing, DEV),
        "chains": {**split_chains(summary, DEV), **summary["chains"]},
    }


def _table(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    return [header, *rows]


def _columns(by_length: Mapping[int, Mapping[str, Any]]) -> list[str]:
    return sorted(
        {c for targets in by_length.values() for c in targets},
        key=lambda c: (c.startswith("group"), c.startswith("XTREME"), c),
    )


def _length_tables(aggregated: dict[str, Any], split: str) -> list[tuple[str, list[list[str]]]]:
    by_length = aggregated[split]["scores"]
    if not by_length:
        return []
    lengths, columns = sorted(by_length), _columns(by_length)
    several = any(stats[2] > 1 for columns in by_length.values() for stats in columns.values())
    spread = "mean ± standard deviation over orders and seeds (n)" if several else "one run per length: n = 1"
    title = f"Score against chain length ({split}; {spread})"
    tables = [
        (title, _table(["k", *columns], [[str(k), *(_cell(by_length[k].get(c)) for c in columns)] for k in lengths]))
    ]
    if split == TEST and 0 in by_length and len(lengths) > 1:
        gains = [
            [
                str(k),
                *(
                    f"{by_length[k][c][0] - by_length[0][c][0]:+.1f}"
                    if c in by_length[k] and c in by_length[0]
                    else MISSING
                    for c in columns
                ),
            ]
            for k in lengths
            if k
        ]
        tables.append((f"Gain over k = 0 ({split})", _table(["k", *columns], gains)))
    return tables


def _best_length_table(aggregated: dict[str, Any], selection: str) -> list[tuple[str, list[list[str]]]]:
    """The best chain length per target, chosen on dev and reported on test, with what test would have chosen."""
    dev, test = choice_scores.by_length(aggregated[DEV], aggregated[TEST], selection)
    if len(set(dev) | set(test)) < 2 or 0 not in test:
        return []
    targets = sorted({t for scores in test.values() for t in scores})
    title = f"Best chain length per target (chosen on dev by {SELECTION_RULES[selection]}; reported on test)"
    if not dev:
        return [
            (title, [["target", "best k"], ["all", "none chosen: the run has no dev results (never chosen on test)"]])
        ]
    choices = choose(targets, dev, test)
    rows = []
    for target in targets:
        choice = choices.get(target)
        if choice is None:
            continue
        baseline = test[0].get(target)
        gain = None if choice.test is None or baseline is None else choice.test - baseline
        rows.append(
            [
                target,
                str(choice.chosen),
                _number(choice.dev) if not choice.by_other_targets else "by the other targets",
                _number(choice.test),
                _number(gain, sign=True),
                str(choice.test_choice),
                _number(choice.test_choice_score),
                _number(choice.optimism, sign=True),
            ]
        )
    header = [
        "target",
        "best k",
        "dev score",
        "test score",
        "test gain over k = 0",
        "k chosen on test",
        "its test score",
        "optimism of choosing on test",
    ]
    return [(title, _table(header, rows))]


def _paper_rows(chains: Mapping[str, Any], score: Any) -> dict[str, dict[str, float]]:
    """Rows of the paper's layout from chains of length 0 and 1: "pretrained" and each intermediate task (or
    mixture), with each target's score (`score(entry)`) averaged over seeds."""
    rows: dict[str, dict[str, list[float]]] = {}
    for chain in chains.values():
        if chain["chain_length"] > 1:
            continue
        name = chain["chain"][0] if chain["chain"] else PRETRAINED
        for target, entry in chain["targets"].items():
            value = score(entry)
            if value is not None:
                rows.setdefault(name, {}).setdefault(target, []).append(value)
    return {name: {t: fmean(v) for t, v in targets.items()} for name, targets in rows.items()}


def _overall(cells: Mapping[str, float]) -> tuple[str, float | None]:
    """("XTREME" or "average", value) of one row: the XTREME score over its XTREME targets, else the mean."""
    xtreme = {t: v for t, v in cells.items() if t in XTREME_TASK_ORDER}
    if xtreme:
        result = xtreme_score(xtreme)
        return ("XTREME" + (" (partial)" if result["partial"] else "")), result["score"]
    return "average", (fmean(cells.values()) if cells else None)


def _paper_tables(aggregated: dict[str, Any], selection: str) -> list[tuple[str, list[list[str]]]]:
    """The paper's tables: the pretrained encoder and each intermediate task (and mixture) against every target,
    dev and test, each cell with its change against the pretrained encoder; on test, the best intermediate model
    per target chosen on dev and its XTREME score (the paper's +5.4 claim)."""
    summary = aggregated["summary"]
    tables: list[tuple[str, list[list[str]]]] = []
    by_split = {
        split: _paper_rows(split_chains(summary, split), lambda e: e["average"]["score"]) for split in (DEV, TEST)
    }
    if len([name for name in by_split[TEST] if name != PRETRAINED]) < 2:
        return []
    english = selection == "dev-en"
    selecting = _paper_rows(
        split_chains(summary, DEV), (lambda e: e["scores"].get("en")) if english else (lambda e: e["average"]["score"])
    )
    for split in (DEV, TEST):
        rows = by_split[split]
        if not rows:
            continue
        targets = sorted(
            {t for cells in rows.values() for t in cells},
            key=lambda t: (t not in XTREME_TASK_ORDER, XTREME_TASK_ORDER.index(t) if t in XTREME_TASK_ORDER else 0, t),
        )
        base = rows.get(PRETRAINED, {})
        overall_name, base_overall = _overall(base)
        names = (
            [PRETRAINED, *sorted(name for name in rows if name != PRETRAINED)] if PRETRAINED in rows else sorted(rows)
        )
        lines = []
        for name in names:
            cells = rows[name]
            label, value = _overall(cells)
            overall_name = label if name != PRETRAINED else overall_name
            lines.append(
                [
                    name,
                    *(_with_gain(cells.get(t), base.get(t), name) for t in targets),
                    _with_gain(value, base_overall, name),
                ]
            )
        if split == TEST:
            intermediate = [name for name in names if name != PRETRAINED]
            choices = choose(
                targets, {n: selecting.get(n, {}) for n in intermediate}, {n: rows[n] for n in intermediate}
            )
            chosen = {t: rows[c.chosen][t] for t, c in choices.items() if t in rows.get(c.chosen, {})}
            _, best_overall = _overall(chosen)
            lines.append(
                [
                    f"best intermediate model per target (chosen on dev by {SELECTION_RULES[selection]})",
                    *(
                        _with_gain(chosen.get(t), base.get(t), "") + (f" [{choices[t].chosen}]" if t in choices else "")
                        for t in targets
                    ),
                    _with_gain(best_overall, base_overall, ""),
                ]
            )
        tables.append(
            (
                f"Intermediate tasks ({split}; the paper's layout, change against the pretrained encoder)",
                _table(["model", *targets, overall_name], lines),
            )
        )
    for target in sorted({t for cells in by_split[TEST].values() for t in cells}):
        for split in (DEV, TEST):
            languages = _paper_languages(split_chains(summary, split), target)
            if not languages:
                continue
            rows = [[name, *(_number(value) for value in values)] for name, values in languages.items()]
            header = sorted(
                {
                    lang
                    for chain in split_chains(summary, split).values()
                    if target in chain["targets"]
                    for lang in chain["targets"][target]["scores"]
                },
                key=lambda lang: (lang != "en", lang),
            )
            tables.append((f"{target} per intermediate task, by language ({split})", _table(["model", *header], rows)))
    return tables


def _paper_languages(chains: Mapping[str, Any], target: str) -> dict[str, list[float | None]]:
    """Model -> the target's score in each language (sorted, English first), averaged over seeds."""
    languages = sorted(
        {
            lang
            for chain in chains.values()
            if target in chain["targets"]
            for lang in chain["targets"][target]["scores"]
        },
        key=lambda lang: (lang != "en", lang),
    )
    per_model: dict[str, dict[str, list[float]]] = {}
    for chain in chains.values():
        if chain["chain_length"] > 1 or target not in chain["targets"]:
            continue
        name = chain["chain"][0] if chain["chain"] else PRETRAINED
        for lang, value in chain["targets"][target]["scores"].items():
            per_model.setdefault(name, {}).setdefault(lang, []).append(value)
    order = (
        [PRETRAINED, *sorted(n for n in per_model if n != PRETRAINED)] if PRETRAINED in per_model else sorted(per_model)
    )
    return {
        name: [fmean(per_model[name][lang]) if lang in per_model[name] else None for lang in languages]
        for name in order
    }


def _with_gain(value: float | None, base: float | None, name: str) -> str:
    if value is None:
        return NO_RESULT
    if name == PRETRAINED or base is None:
        return f"{value:.1f}"
    return f"{value:.1f} ({value - base:+.1f})"


def _language_notes(summary: Mapping[str, Any]) -> list[str]:
    """Which languages a target's average leaves out (those outside XTREME's set: shown in its by-language table)."""
    extra: dict[str, set[str]] = {}
    for chains in (split_chains(summary, TEST), split_chains(summary, DEV)):
        for chain in chains.values():
            for target, entry in chain["targets"].items():
                extra.setdefault(target, set()).update(entry.get("extra_languages", []))
    return [
        f"{target}: the average leaves out {', '.join(sorted(langs))} (not part of XTREME; shown in the by-language tables)"
        for target, langs in sorted(extra.items())
        if langs
    ]


def build_tables(
    aggregated: dict[str, Any], missing: list[dict[str, Any]], selection: str = "dev"
) -> list[tuple[str, list[list[str]]]]:
    tables = _length_tables(aggregated, TEST)
    tables += _best_length_table(aggregated, selection)
    tables += _length_tables(aggregated, DEV)
    dev = aggregated[TEST]["english_dev"]
    if dev:
        dev_targets = sorted({t for targets in dev.values() for t in targets})
        tables.append(
            (
                "English dev score of the fine-tuned targets (model selection)",
                _table(
                    ["k", *dev_targets], [[str(k), *(_cell(dev[k].get(t)) for t in dev_targets)] for k in sorted(dev)]
                ),
            )
        )
    tables += _paper_tables(aggregated, selection)
    for split in (TEST, DEV):
        by_language = aggregated[split]["languages"]
        lengths = sorted(aggregated[split]["scores"]) or sorted({k for (k, _, _) in by_language})
        for target in sorted({t for (_, t, _) in by_language}):
            languages = sorted(
                {lang for (_, t, lang) in by_language if t == target}
                | {m["language"] for m in missing if m["target"] == target and m["split"] == split},
                key=lambda lang: (lang != "en", lang),
            )
            rows = [[str(k), *(_cell(by_language.get((k, target, lang))) for lang in languages)] for k in lengths]
            tables.append((f"{target} by language ({split})", _table(["k", *languages], rows)))
    stages = aggregated.get("intermediate_stages", [])
    if stages:
        rows = [
            [
                " → ".join(st["chain"] + [st["task"]]),
                st["kind"],
                ", ".join(f"{m} {v:.1f}" for m, v in st["dev_metrics"].items()),
                f"{st['steps']} ({st['best_step']})",
                f"{st['train_seconds']:.0f}",
                str(st["seed"]),
            ]
            for st in stages
        ]
        tables.append(
            (
                "Intermediate stages (English dev of the task itself)",
                _table(["stage", "kind", "English dev", "steps (best)", "seconds", "seed"], rows),
            )
        )
    chains = sorted(aggregated["chains"].items(), key=lambda item: (item[1]["chain_length"], item[0]))
    tables.append(
        (
            "Chains evaluated",
            _table(
                ["chain", "k", "tasks", "seed"],
                [
                    [label, str(c["chain_length"]), " → ".join(c["chain"]) or "(pretrained)", str(c["seed"])]
                    for label, c in chains
                ],
            ),
        )
    )
    if missing:
        rows = [[m["chain_label"], m["target"], m["language"], m["split"]] for m in missing]
        tables.append((f"Missing results ({len(missing)})", _table(["chain", "target", "language", "split"], rows)))
    return tables


def _markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def latency_tables(latency: dict[str, Any]) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    """One table per (mode, target, batch, length) and the verdict lines."""
    tables, verdicts = [], []
    header = [
        "k",
        "median ms",
        "p90 ms",
        "p99 ms",
        "tokens/s",
        "ratio to k = 0 [95% CI]",
        "parameters",
        "GFLOPs/token",
        "MB on disk (stage / chain)",
    ]
    for group in latency["groups"]:
        rows = []
        for m in group["models"]:
            low, high = m["ratio_ci95"]
            size = (
                f"{m['bytes_on_disk'] / 2**20:.1f} / {m['chain_bytes_on_disk'] / 2**20:.1f}"
                if "bytes_on_disk" in m
                else "(same model)"
            )
            rows.append(
                [
                    m["name"] if m["name"].endswith("(twin)") else str(m["chain_length"]),
                    f"{m['median_ms']:.2f}",
                    f"{m['p90_ms']:.2f}",
                    f"{m['p99_ms']:.2f}",
                    f"{m['tokens_per_second']:.0f}",
                    f"{m['ratio_to_k0']:.3f} [{low:.3f}, {high:.3f}]",
                    f"{m.get('parameters', 0):,}",
                    f"{m['flops_per_token'] / 1e9:.4f}",
                    size,
                ]
            )
        title = f"Latency: {group['mode']}, {group['target']}, batch {group['batch_size']} x {group['length']} tokens"
        tables.append((title, _table(header, rows)))
        verdicts.append(f"{group['target']}, batch {group['batch_size']} x {group['length']}: {group['verdict']}")
    return tables, verdicts


def _embedded(path: Path, alt: str | None = None) -> str:
    import base64

    return (
        f'<img alt="{alt or path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
        if path.is_file()
        else ""
    )


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
                            row["split"],
                        ]
                    )


@dataclass
class Section:
    """One heading of the report, rendered the same way to markdown and HTML."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: list[list[str]] | None = None
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, file name in the run directory)


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
    run.root.mkdir(parents=True, exist_ok=True)
    collected = collect(runs, selection)
    name, rows = collected.name, collected.rows
    effects = analyse(rows, units_loader(), unevaluated=collected.unevaluated)
    latency = next((latency for source in runs if (latency := source.read_latency()) is not None), None)
    aggregated_by_mode, tables, notes = _aggregate_modes(collected)
    best = {mode: _dev_best_lengths(aggregated, collected.selection) for mode, aggregated in aggregated_by_mode.items()}
    latency_lines = _latency_verdicts(latency)
    headline = build_headline(effects, best, latency_lines)
    write_results_tables(run, rows, effects)

    images = _plots(run, effects, aggregated_by_mode, latency)
    sections = [
        Section(
            headline.tables[0][0] if headline.tables else "Transfer against chain length",
            headline.notes,
            table=headline.tables[0][1] if headline.tables else None,
            images=[i for i in images if i[1] in (run.plot_file("gain").name, run.plot_file("tradeoff").name)],
        ),
        *(Section(title, table=table) for title, table in headline.tables[1:]),
        *(_block_section(title, block) for title, block in headline.blocks),
    ]
    searched = next((record for source in runs if (record := source.read_search()) is not None), None)
    if searched is not None:
        from xstilts.config import load_config
        from xstilts.results.search import regret

        config = load_config(runs[0].config_file, require_data=False)
        bullets, table = search_section(searched, regret(rows, units_loader(), config, searched))
        sections += [Section("Search", bullets=bullets), Section("Search rounds", table=table)]
    if latency is not None:
        device = latency
        sections.append(
            Section(
                "Latency measurement",
                [
                    f"Measured on {device['device']} ({device['precision']}, {device['threads']} threads); each verdict "
                    "compares the slope with the noise floor (the k = 0 model timed twice as two models)."
                ],
                images=[i for i in images if i[1] == run.plot_file("latency").name],
            )
        )
        sections += [Section(title, table=table) for title, table in latency_tables(latency)[0]]
    heatmap = [i for i in images if i[1] == run.plot_file("heatmap").name]
    sections += [Section(title, table=table) for title, table in tables]
    if heatmap:
        sections.append(Section("Gain over k = 0 by language", images=heatmap))
    diagnostics = [record for source in runs for record in source.read_diagnostics()]
    if diagnostics:
        summary = summarise_diagnostics(diagnostics, rows)
        sections += [Section(t, paragraphs, table=table) for t, table, paragraphs in diagnostics_tables(summary)]
    languages = sorted({r["language"] for r in rows})
    named = ", ".join(f"{c} ({language_name(c)})" if language_name(c) != c else c for c in languages)
    sections.append(Section("Languages", [named], bullets=notes))
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
    write_text_atomic(path, _render_markdown(name, intro, sections, footer))
    write_text_atomic(run.html_file, _render_html(run, name, intro, sections, footer))
    answer = [s for s in sections if s.title.startswith("Transfer against chain length") or s.title in _HEADLINE_BLOCKS]
    written = [path, run.html_file, run.results_csv, run.results_json]
    written += [run.file(image).with_suffix(suffix) for _, image in images for suffix in (".png", ".svg")]
    return WrittenReport(path, _render_markdown(name, "", [replace(s, images=[]) for s in answer], None), written)


_HEADLINE_BLOCKS = (
    "Verdicts",
    "Best chain length (chosen on dev, reported on test)",
    "Controls (known answers)",
    "Latency",
)


def _block_section(title: str, block: list[list[str]] | list[str]) -> Section:
    if block and isinstance(block[0], list):
        return Section(title, table=block)
    return Section(title, bullets=list(block))


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
        stages = (r for r in collected.stages if r["role"] == "intermediate" and r["mode"] == mode)
        aggregated["intermediate_stages"] = sorted(stages, key=lambda r: (len(r["chain"]), r["chain"], r["seed"]))
        by_mode[mode] = aggregated
        mode_tables = build_tables(aggregated, mode_missing, collected.selection)
        tables += [(f"{title} [{mode}]" if len(modes) > 1 else title, table) for title, table in mode_tables]
        notes += [note for note in _language_notes(aggregated["summary"]) if note not in notes]
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
) -> list[tuple[str, str]]:
    """Draw every figure there is data for; (alt text, PNG name) of each (an SVG of the same name beside it)."""
    images = []
    if plots.gain_panels(effects, run.plot_file("gain")):
        images.append(("gain over k = 0 against chain length, one panel per target", run.plot_file("gain").name))
    languages = next((a[TEST]["languages"] for a in by_mode.values() if a[TEST]["languages"]), None)
    if languages and plots.gain_heatmap(languages, run.plot_file("heatmap")):
        images.append(("gain over k = 0 by language and chain length", run.plot_file("heatmap").name))
    if latency is not None and latency["groups"] and plots.latency_panels(latency, run.plot_file("latency")):
        images.append(("latency against chain length", run.plot_file("latency").name))
    if plots.tradeoff(effects, latency, run.plot_file("tradeoff")):
        images.append(
            ("gain against latency ratio, one point per chain mode and length", run.plot_file("tradeoff").name)
        )
    return images


def _render_markdown(name: str, intro: str, sections: list[Section], footer: str | None) -> str:
    md = [f"# xstilts report: {name}", "", intro, ""]
    for section in sections:
        md += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            md += [paragraph, ""]
        if section.table:
            md += [_markdown(section.table), ""]
        if section.bullets:
            md += [f"- {line}" for line in section.bullets] + [""]
        for alt, image in section.images:
            md += [f"![{alt}]({image})", ""]
    md += [footer, ""] if footer else []
    return "\n".join(md)


def _render_html(run: RunDirectory, name: str, intro: str, sections: list[Section], footer: str | None) -> str:
    """A self-contained page (images embedded); images scale to the window."""
    body = []
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        if section.table:
            body.append(_html_table(section.table))
        if section.bullets:
            body.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets) + "</ul>")
        body += [_embedded(run.file(image), alt) for alt, image in section.images]
    if footer:
        body.append(f"<p>{html.escape(footer)}</p>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%;height:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(name)}</title><style>{style}</style></head><body>"
        f"<h1>xstilts report: {html.escape(name)}</h1><p>{html.escape(intro)}</p>{''.join(body)}</body></html>"
    )
