"""The one aggregation of a run's results: language -> target -> XTREME score, then over orders and seeds.

`summarize` turns result rows into the per-chain summary (summary.json); `by_chain_length` turns that
summary into the report's tables (mean, standard deviation and count over the chains of each length).
Both the runner and the report call them, so summary.json and report.md cannot disagree. The XTREME
score and its `partial` flag come from `xtreme_summary` alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from statistics import fmean, stdev
from typing import Any

from xstilts.metrics.xtreme import XTREME_SCORE_LANGUAGES, XTREME_TASK_ORDER, headline, task_score, xtreme_score
from xstilts.rundir.records import ResultRow, complete_rows, is_study_row
from xstilts.terms import DEV, TEST

Stats = tuple[float, float, int]  # mean, standard deviation (0 for n = 1), n


def xtreme_languages(task: str) -> tuple[str, ...]:
    """The languages a task contributes to the XTREME score (later additions such as XQuAD ro excluded)."""
    from xstilts.tasks import default_registry

    return XTREME_SCORE_LANGUAGES.get(task) or default_registry().get(task).languages


def xtreme_summary(targets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The XTREME score over the XTREME tasks among `targets` ({task: {"metric", "languages": {lang: metrics}}}),
    each averaged over its XTREME languages that are present. `partial` when a task or a language is missing."""
    task_scores: dict[str, float] = {}
    missing_languages: dict[str, list[str]] = {}
    for task in XTREME_TASK_ORDER:
        if task not in targets:
            continue
        wanted = xtreme_languages(task)
        languages = {lang: metrics for lang, metrics in targets[task]["languages"].items() if lang in wanted}
        if languages:
            task_scores[task] = task_score(languages, targets[task]["metric"])["score"]
        absent = [lang for lang in wanted if lang not in languages]
        if absent:
            missing_languages[task] = absent
    if not task_scores:
        return None
    summary = xtreme_score(task_scores)
    summary["missing_languages"] = missing_languages
    summary["partial"] = bool(summary["missing"] or missing_languages)
    return summary


def summarize(name: str, rows: Iterable[ResultRow]) -> dict[str, Any]:
    """summary.json: the test results per chain (`chains`, the default view) and the dev results (`dev.chains`).

    Per chain: each target's metrics and headline score per language, its average over languages the XTREME
    way, the mean over targets, and the XTREME score when XTREME tasks are among the targets."""
    rows = [row for row in complete_rows(rows) if is_study_row(row)]  # controls, combinations: reported apart (effects)
    return {
        "name": name,
        "chains": summarize_chains(r for r in rows if r["split"] == TEST),
        DEV: {"chains": summarize_chains(r for r in rows if r["split"] == DEV)},
    }


def split_chains(summary: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The per-chain summary of one split."""
    return summary["chains"] if split == TEST else summary.get(split, {}).get("chains", {})


def summarize_chains(rows: Iterable[ResultRow]) -> dict[str, Any]:
    """The per-chain summary of rows of one split (completed rows, as `summarize` passes them)."""
    chains: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["chain_length"], r["chain_label"], r["target"], r["language"])):
        chain = chains.setdefault(
            row["chain_label"],
            {
                "chain": row["chain"],
                "chain_length": row["chain_length"],
                "mode": row["mode"],
                "seed": row["seed"],
                "targets": {},
            },
        )
        target = chain["targets"].setdefault(
            row["target"], {"metric": row["metric"], "languages": {}, "english_dev": row["english_dev"]}
        )
        target["languages"][row["language"]] = row["metrics"]
    for chain in chains.values():
        for task, target in chain["targets"].items():
            _average(task, target)
            target["scores"] = {
                lang: headline(metrics, target["metric"]) for lang, metrics in target["languages"].items()
            }
        chain["average_over_targets"] = fmean(t["average"]["score"] for _, t in sorted(chain["targets"].items()))
        xtreme = xtreme_summary(chain["targets"])
        if xtreme is not None:
            chain["xtreme"] = xtreme
    return chains


def _average(task: str, target: dict[str, Any]) -> None:
    """The target's score over its languages the XTREME way. For an XTREME task, languages outside XTREME's set
    (XQuAD ro, Tatoeba's XTREME-R additions) are kept apart: `average` leaves them out, `average_all_languages`
    includes them, `extra_languages` names them."""
    languages, metric = target["languages"], target["metric"]
    extra = sorted(lang for lang in languages if task in XTREME_TASK_ORDER and lang not in xtreme_languages(task))
    if extra and len(extra) < len(languages):
        target["average"] = task_score({k: v for k, v in languages.items() if k not in extra}, metric)
        target["average_all_languages"] = task_score(languages, metric)
        target["extra_languages"] = extra
    else:
        target["average"] = task_score(languages, metric)


def mean_std(values: list[float]) -> Stats:
    return fmean(values), (stdev(values) if len(values) > 1 else 0.0), len(values)


def by_chain_length(
    summary: Mapping[str, Any], missing: Iterable[Mapping[str, Any]] = (), split: str = TEST
) -> dict[str, Any]:
    """Over the chains of each length (orders x seeds), on `split`: each target's score (targets with every planned
    language only), the XTREME and group scores, each language's score, and the English dev scores."""
    incomplete = {(m["chain_label"], m["target"]) for m in missing if m["split"] == split}
    per_length: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_language: dict[tuple[int, str, str], list[float]] = defaultdict(list)
    per_dev: dict[int, dict[str, dict[str, float]]] = defaultdict(dict)
    for label, chain in split_chains(summary, split).items():
        length = chain["chain_length"]
        for target, entry in chain["targets"].items():
            for language, score in entry["scores"].items():
                per_language[(length, target, language)].append(score)
            if entry.get("english_dev"):
                per_dev[length].setdefault(target, {})[label] = headline(entry["english_dev"], entry["metric"])
            if (label, target) not in incomplete:
                per_length[length][target].append(entry["average"]["score"])
        xtreme = chain.get("xtreme")
        if xtreme is not None:
            per_length[length]["XTREME" + (" (partial)" if xtreme["partial"] else "")].append(xtreme["score"])
            for group, value in xtreme["groups"].items():
                per_length[length][f"group: {group}"].append(value)
    return {
        "scores": {
            length: {column: mean_std(v) for column, v in columns.items()}
            for length, columns in sorted(per_length.items())
        },
        "languages": {key: mean_std(v) for key, v in per_language.items()},
        "english_dev": {
            length: {t: mean_std(list(v.values())) for t, v in targets.items()}
            for length, targets in sorted(per_dev.items())
        },
    }
