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
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.evaluate.metrics.xtreme import XTREME_TASK_ORDER, xtreme_score
from xstilts.files import atomic_writer, write_json_atomic, write_text_atomic
from xstilts.languages import language_name
from xstilts.results import selection as choice_scores
from xstilts.results.aggregate import Stats, by_chain_length, split_chains, summarize
from xstilts.results.layout import (
    HTML_FILE,
    LATENCY_PLOT,
    PLAN_FILE,
    REPORT_FILE,
    RESULTS_CSV,
    RESULTS_JSON,
    SCORE_PLOT,
)
from xstilts.results.records import ResultRow, StageRecord
from xstilts.results.runs import RunDirectory
from xstilts.results.selection import RULES, choose
from xstilts.tasks.registry import DEV, TEST

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
            raise XstiltsError(f"{run.root}: no results and no {PLAN_FILE}; is this a run directory?")
        for row in found:
            key = (row.get("mode", "full"), row["chain_label"], row["target"], row["split"], row["language"])
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
    found_keys = {(r.get("mode", "full"), r["chain_label"], r["target"], r["split"], r["language"]) for r in merged}
    expected = {
        (e.get("mode", "full"), e["chain_label"], e["target"], e["split"], e["language"]): e
        for plan in plans
        for e in plan.expected()
    }
    missing = [entry for key, entry in expected.items() if key not in found_keys]
    rule = selection or next((plan.selection for plan in plans), "dev")
    return Collected(" + ".join(dict.fromkeys(names)), merged, missing, list(stages.values()), rule)


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
    title = f"Score against chain length ({split}; mean ± std over orders and seeds)"
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
    title = f"Best chain length per target (chosen on dev by {RULES[selection]}; reported on test)"
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
                    f"best intermediate model per target (chosen on dev by {RULES[selection]})",
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
                | {m["language"] for m in missing if m["target"] == target and m.get("split", TEST) == split},
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
        rows = [[m["chain_label"], m["target"], m["language"], m.get("split", TEST)] for m in missing]
        tables.append((f"Missing results ({len(missing)})", _table(["chain", "target", "language", "split"], rows)))
    return tables


def _markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "|".join("---" for _ in table[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot(by_mode: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Score against chain length, one line per target (and per chain mode when there are several)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    styles = ["-", "--", ":", "-."]
    lengths: set[int] = set()
    for index, (mode, aggregated) in enumerate(sorted(by_mode.items())):
        by_length = aggregated["scores"]
        lengths |= set(by_length)
        series = sorted({c for targets in by_length.values() for c in targets if not c.startswith("group")})
        for name in series:
            points = [(k, *by_length[k][name][:2]) for k in sorted(by_length) if name in by_length[k]]
            label = name if len(by_mode) == 1 else f"{name} [{mode}]"
            ax.errorbar(
                [p[0] for p in points],
                [p[1] for p in points],
                yerr=[p[2] for p in points],
                marker="o",
                capsize=3,
                label=label,
                linestyle=styles[index % len(styles)],
                linewidth=2.5 if name.startswith("XTREME") else 1.5,
            )
    ax.set_xlabel("number of intermediate tasks (chain length k)")
    ax.set_ylabel("zero-shot score, mean over languages")
    ax.set_xticks(sorted(lengths))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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


def plot_latency(latency: dict[str, Any], path: Path) -> None:
    """Latency ratio to k = 0 against chain length, one panel per shape, one line per mode and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({(g["batch_size"], g["length"]) for g in latency["groups"]})
    fig, axes = plt.subplots(1, len(shapes), figsize=(4.2 * len(shapes), 3.8), dpi=120, squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        for group in (g for g in latency["groups"] if (g["batch_size"], g["length"]) == shape):
            models = sorted(
                (m for m in group["models"] if not m["name"].endswith("(twin)")), key=lambda m: m["chain_length"]
            )
            lengths = [m["chain_length"] for m in models]
            ratios = [m["ratio_to_k0"] for m in models]
            errors = [
                [r - m["ratio_ci95"][0] for r, m in zip(ratios, models)],
                [m["ratio_ci95"][1] - r for r, m in zip(ratios, models)],
            ]
            ax.errorbar(lengths, ratios, yerr=errors, marker="o", capsize=3, label=f"{group['mode']} {group['target']}")
            low, high = group["noise_floor"]["ci95"]
            ax.axhspan(min(low, 1), max(high, 1), color="grey", alpha=0.15)
        ax.set_title(f"batch {shape[0]} x {shape[1]} tokens ({latency['device']})", fontsize="small")
        ax.set_xlabel("chain length k")
        ax.set_ylabel("latency / latency at k = 0")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _embedded(path: Path, alt: str | None = None) -> str:
    import base64

    return (
        f'<img alt="{alt or path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
        if path.is_file()
        else ""
    )


def write_results_tables(run: RunDirectory, rows: list[ResultRow]) -> None:
    """results.json (the rows as they are) and results.csv (one row per chain, target, language, metric)."""
    write_json_atomic(run.file(RESULTS_JSON), rows)
    with atomic_writer(run.file(RESULTS_CSV)) as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
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
                "split",
            ]
        )
        for row in rows:
            for metric, value in row["metrics"].items():
                if isinstance(value, (int, float)):
                    writer.writerow(
                        [
                            row.get("mode", "full"),
                            row["chain_label"],
                            row["chain_length"],
                            "+".join(row["chain"]),
                            row.get("seed", 0),
                            row["target"],
                            row["language"],
                            metric,
                            value,
                            row["score"],
                            row.get("split", TEST),
                        ]
                    )


def write_report(
    run_dir: str | Path | Sequence[str | Path], output_dir: str | Path | None = None, selection: str | None = None
) -> Path:
    """Write report.md, report.html, results.csv/json and the plots; returns report.md.

    `run_dir` is one run directory, or several to merge into one report (written to `output_dir`, which
    defaults to the single run directory). `selection` overrides the rule the run's plan names.
    """
    run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
    if not run_dirs:
        raise XstiltsError("no run directory to report")
    if output_dir is None and len(run_dirs) > 1:
        raise XstiltsError("several run directories: name the directory the merged report goes to (-o/--output-dir)")
    runs = [RunDirectory(path) for path in run_dirs]
    run = RunDirectory(output_dir) if output_dir is not None else runs[0]
    run.root.mkdir(parents=True, exist_ok=True)
    collected = collect(runs, selection)
    name, rows, missing, records = collected.name, collected.rows, collected.missing, collected.stages
    modes = sorted({r.get("mode", "full") for r in rows} | {m.get("mode", "full") for m in missing}) or ["full"]
    by_mode, tables, notes = {}, [], []
    for mode in modes:
        aggregated = aggregate(
            name,
            [r for r in rows if r.get("mode", "full") == mode],
            [m for m in missing if m.get("mode", "full") == mode],
        )
        stages = (r for r in records if r["role"] == "intermediate" and r.get("mode", "full") == mode)
        aggregated["intermediate_stages"] = sorted(stages, key=lambda r: (len(r["chain"]), r["chain"], r["seed"]))
        by_mode[mode] = aggregated[TEST] if aggregated[TEST]["scores"] else aggregated[DEV]
        mode_tables = build_tables(
            aggregated, [m for m in missing if m.get("mode", "full") == mode], collected.selection
        )
        tables += [(f"{title} [{mode}]" if len(modes) > 1 else title, table) for title, table in mode_tables]
        notes += [note for note in _language_notes(aggregated["summary"]) if note not in notes]
    write_results_tables(run, rows)
    if any(s["scores"] for s in by_mode.values()):
        plot(by_mode, run.file(SCORE_PLOT), name)
    verdicts: list[str] = []
    latency = next((latency for source in runs if (latency := source.read_latency()) is not None), None)
    if latency is not None:
        latency_table_list, verdicts = latency_tables(latency)
        tables += latency_table_list
        if latency["groups"]:
            plot_latency(latency, run.file(LATENCY_PLOT))
    intro = (
        "Zero-shot scores of each target after a chain of k English intermediate tasks (k = 0: the pretrained "
        "encoder), averaged over the chain orders and seeds of each length. A target's score is the unweighted mean "
        "over its languages (QA: (EM + F1) / 2); the XTREME score is marked partial unless all nine tasks and their "
        "languages are present. Each table names its split: test is the default view; every choice (best chain "
        f"length, intermediate task, model per target) is made on dev, by {RULES[collected.selection]}, and reported "
        "on test, next to what choosing on test would have given."
    )
    languages = sorted({r["language"] for r in rows})
    named = ", ".join(f"{c} ({language_name(c)})" if language_name(c) != c else c for c in languages)
    wall = run.wall_seconds()
    md = [f"# xstilts report: {name}", "", intro, "", f"![score against chain length]({SCORE_PLOT})", ""]
    if verdicts:
        device = latency
        md += [
            "## Latency verdicts",
            "",
            f"Measured on {device['device']} ({device['precision']}, {device['threads']} threads); each verdict compares the slope with the noise floor (the k = 0 model timed twice as two models).",
            "",
        ]
        md += [f"- {line}" for line in verdicts] + ["", f"![latency against chain length]({LATENCY_PLOT})", ""]
    for title, table in tables:
        md += [f"## {title}", "", _markdown(table), ""]
    md += ["## Languages", "", named, ""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    md += [f"Run wall time: {wall:.0f} s.", ""] if wall is not None else []
    path = run.file(REPORT_FILE)
    write_text_atomic(path, "\n".join(md))
    body = "".join(f"<h2>{html.escape(t)}</h2>{_html_table(table)}" for t, table in tables)
    if verdicts:
        body = (
            "<h2>Latency verdicts</h2><ul>"
            + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts)
            + "</ul>"
            + _embedded(run.file(LATENCY_PLOT))
            + body
        )
    image = ""
    if run.file(SCORE_PLOT).is_file():
        image = _embedded(run.file(SCORE_PLOT), "score against chain length")
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    write_text_atomic(
        run.file(HTML_FILE),
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title><style>{style}</style></head><body>"
        f"<h1>xstilts report: {html.escape(name)}</h1><p>{html.escape(intro)}</p>{image}{body}<h2>Languages</h2><p>{html.escape(named)}</p></body></html>",
    )
    return path
