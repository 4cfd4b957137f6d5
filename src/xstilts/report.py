"""The run report: tables of score against chain length and a plot. Reads results; never trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts.languages import language_name
from xstilts.metrics.xtreme import headline
from xstilts.runner import read_summary

REPORT_FILE = "report.md"
PLOT_FILE = "score_vs_chain_length.png"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def target_table(summary: dict[str, Any], target: str) -> list[list[str]]:
    """Rows: chain length; columns: chain, each language, the average, English dev (model selection)."""
    chains = [c for c in sorted(summary["chains"].values(), key=lambda c: c["chain_length"]) if target in c["targets"]]
    languages = sorted({lang for c in chains for lang in c["targets"][target]["scores"]}, key=lambda l: (l != "en", l))
    header = ["k", "chain", *languages, "avg", "en dev"]
    rows = [header]
    for chain in chains:
        entry = chain["targets"][target]
        dev_value = headline(entry["english_dev"], entry["metric"]) if entry["english_dev"] else None  # retrieval: no fine-tuning
        rows.append(
            [
                str(chain["chain_length"]),
                " → ".join(chain["chain"]) or "(pretrained)",
                *[_fmt(entry["scores"].get(lang)) for lang in languages],
                _fmt(entry["average"]["score"]),
                _fmt(dev_value),
            ]
        )
    return rows


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def plot_scores(summary: dict[str, Any], path: Path) -> None:
    """Average score over languages against chain length, one line per target task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chains = sorted(summary["chains"].values(), key=lambda c: c["chain_length"])
    targets = sorted({t for c in chains for t in c["targets"]})
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for target in targets:
        points = [(c["chain_length"], c["targets"][target]["average"]["score"]) for c in chains if target in c["targets"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=target)
    ax.set_xlabel("number of intermediate tasks (chain length k)")
    ax.set_ylabel("zero-shot score, mean over languages")
    ax.set_xticks(sorted({c["chain_length"] for c in chains}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(summary.get("name", ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(run_dir: str | Path) -> Path:
    """Write `report.md` and the plot into `run_dir`; returns the report's path."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    targets = sorted({t for c in summary["chains"].values() for t in c["targets"]})
    plot_scores(summary, run_dir / PLOT_FILE)
    parts = [
        f"# xstilts report: {summary.get('name', run_dir.name)}",
        "",
        "Zero-shot scores of each target task after a chain of k English intermediate tasks "
        "(k = 0 is the pretrained encoder). Targets are fine-tuned on English and evaluated in every "
        "language with one shared head; `avg` is the unweighted mean over languages (XTREME's way; "
        "QA scores are (EM + F1) / 2). `en dev` is the English dev score used for model selection.",
        "",
        f"![score against chain length]({PLOT_FILE})",
        "",
    ]
    for target in targets:
        parts += [f"## {target}", "", _markdown(target_table(summary, target)), ""]
    stages = summary.get("intermediate_stages", [])
    if stages:
        rows = [["k", "stage", "kind", "English dev", "steps (best)", "seconds"]]
        for k, stage in enumerate(stages, start=1):
            metrics = ", ".join(f"{name} {value:.1f}" for name, value in stage["dev_metrics"].items())
            rows.append([str(k), stage["task"], stage["kind"], metrics, f"{stage['steps']} ({stage['best_step']})", f"{stage['train_seconds']:.0f}"])
        parts += ["## Intermediate stages", "", _markdown(rows), ""]
    languages = sorted({lang for c in summary["chains"].values() for t in c["targets"].values() for lang in t["scores"]})
    parts += ["## Languages", "", ", ".join(f"{code} ({language_name(code)})" if language_name(code) != code else code for code in languages), ""]
    if "wall_seconds" in summary:
        parts += [f"Run wall time: {summary['wall_seconds']:.0f} s.", ""]
    path = run_dir / REPORT_FILE
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
