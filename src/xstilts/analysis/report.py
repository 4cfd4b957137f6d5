"""The run report: score against chain length, over orders and seeds. Reads results; never trains.

Built from `plan.json` (every (chain, target, language) the run was to produce) and the result files
under `results/`, so a partial or failed run still reports, with what is missing marked as missing.
Writes report.md, the same content as a self-contained report.html, results.csv and results.json,
and score_vs_chain_length.png (mean over orders and seeds, error bars one standard deviation).
"""

from __future__ import annotations

import csv
import html
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import atomic_writer, write_json_atomic, write_text_atomic
from xstilts.languages import language_name
from xstilts.results.aggregate import Stats, by_chain_length, summarize
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

MISSING = "missing"


def collect(run: RunDirectory) -> tuple[str, list[ResultRow], list[dict[str, Any]], list[StageRecord]]:
    """(name, result rows found, expected entries without a result, records of the intermediate stages)."""
    rows = run.result_rows()
    plan = run.read_plan()
    if not rows and plan is None:
        raise XstiltsError(f"{run.root}: no results and no {PLAN_FILE}; is this a run directory?")
    expected = plan.expected() if plan is not None else []
    found = {(r["chain_label"], r["target"], r["language"]) for r in rows}
    missing = [e for e in expected if (e["chain_label"], e["target"], e["language"]) not in found]
    stages = [
        record
        for stage in (plan.stages if plan is not None else [])
        if (record := run.store.record(stage.identity, stage.task)) is not None
    ]
    return (plan.name if plan is not None else run.root.name), rows, missing, stages


def _cell(stats: Stats | None) -> str:
    if stats is None:
        return MISSING
    mean, std, n = stats
    return f"{mean:.1f}" if n == 1 else f"{mean:.1f} ± {std:.1f} (n={n})"


def aggregate(name: str, rows: list[ResultRow], missing: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-chain summary (as summary.json holds it) and its aggregation by chain length."""
    summary = summarize(name, rows)
    return {**by_chain_length(summary, missing), "chains": summary["chains"]}


def _table(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    return [header, *rows]


def build_tables(aggregated: dict[str, Any], missing: list[dict[str, Any]]) -> list[tuple[str, list[list[str]]]]:
    by_length = aggregated["scores"]
    lengths = sorted(by_length)
    columns = sorted(
        {c for targets in by_length.values() for c in targets},
        key=lambda c: (c.startswith("group"), c.startswith("XTREME"), c),
    )
    tables = [
        (
            "Score against chain length (mean ± std over orders and seeds)",
            _table(["k", *columns], [[str(k), *(_cell(by_length[k].get(c)) for c in columns)] for k in lengths]),
        )
    ]
    if 0 in by_length and len(lengths) > 1:
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
        tables.append(("Gain over k = 0", _table(["k", *columns], gains)))
        best = []
        for c in columns:
            scored = [(by_length[k][c][0], k) for k in lengths if c in by_length[k]]
            if scored:
                value, k = max(scored)
                best.append(
                    [c, str(k), f"{value:.1f}", f"{value - by_length[0][c][0]:+.1f}" if c in by_length[0] else MISSING]
                )
        tables.append(("Best chain length per target", _table(["target", "best k", "score", "gain over k = 0"], best)))
    dev = aggregated["english_dev"]
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
    targets = sorted({t for (_, t, _) in aggregated["languages"]})
    for target in targets:
        languages = sorted(
            {lang for (_, t, lang) in aggregated["languages"] if t == target}
            | {m["language"] for m in missing if m["target"] == target},
            key=lambda lang: (lang != "en", lang),
        )
        rows = [
            [str(k), *(_cell(aggregated["languages"].get((k, target, lang))) for lang in languages)] for k in lengths
        ]
        tables.append((f"{target} by language", _table(["k", *languages], rows)))
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
        rows = [[m["chain_label"], m["target"], m["language"]] for m in missing]
        tables.append((f"Missing results ({len(missing)})", _table(["chain", "target", "language"], rows)))
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
            ["mode", "chain_label", "chain_length", "chain", "seed", "target", "language", "metric", "value", "score"]
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
                        ]
                    )


def write_report(run_dir: str | Path) -> Path:
    """Write report.md, report.html, results.csv/json and the plot into `run_dir`; returns report.md."""
    run = RunDirectory(run_dir)
    name, rows, missing, records = collect(run)
    modes = sorted({r.get("mode", "full") for r in rows} | {m.get("mode", "full") for m in missing}) or ["full"]
    by_mode, tables = {}, []
    for mode in modes:
        aggregated = aggregate(
            name,
            [r for r in rows if r.get("mode", "full") == mode],
            [m for m in missing if m.get("mode", "full") == mode],
        )
        stages = (r for r in records if r["role"] == "intermediate" and r.get("mode", "full") == mode)
        aggregated["intermediate_stages"] = sorted(stages, key=lambda r: (len(r["chain"]), r["chain"], r["seed"]))
        by_mode[mode] = aggregated
        mode_tables = build_tables(aggregated, [m for m in missing if m.get("mode", "full") == mode])
        tables += [(f"{title} [{mode}]" if len(modes) > 1 else title, table) for title, table in mode_tables]
    write_results_tables(run, rows)
    if any(s["scores"] for s in by_mode.values()):
        plot(by_mode, run.file(SCORE_PLOT), name)
    verdicts: list[str] = []
    latency = run.read_latency()
    if latency is not None:
        latency_table_list, verdicts = latency_tables(latency)
        tables += latency_table_list
        if latency["groups"]:
            plot_latency(latency, run.file(LATENCY_PLOT))
    intro = (
        "Zero-shot scores of each target after a chain of k English intermediate tasks (k = 0: the pretrained "
        "encoder), averaged over the chain orders and seeds of each length. A target's score is the unweighted mean "
        "over its languages (QA: (EM + F1) / 2); the XTREME score is marked partial unless all nine tasks and their "
        "languages are present."
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
    md += ["## Languages", "", named, ""] + ([f"Run wall time: {wall:.0f} s.", ""] if wall is not None else [])
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
