"""The study's answer with its uncertainty: per target and for the average, the score at k = 0, the gain at
each k (over k = 0 and over k - 1), the slope over k and a verdict; calls of significance Holm-controlled.

`analyse` reads result rows (and the per-unit files they point to) and returns what summary.json stores
under "effects" and what the report's first section prints. The arithmetic is in `statistics`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.evaluate.metrics.xtreme import XTREME_TASK_ORDER
from xstilts.evaluate.units import Units, read_units
from xstilts.results import statistics as st
from xstilts.results.records import ResultRow
from xstilts.tasks.registry import TEST

AVERAGE = "average"  # the mean over targets; "XTREME" when every target is an XTREME task
UnitsLoader = Callable[[Mapping[str, Any]], Units | None]


def units_loader(root: Path | None = None) -> UnitsLoader:
    """Loads a row's units from `row["units"]["path"]` (set when runs are collected) or `root / file`."""

    def load(row: Mapping[str, Any]) -> Units | None:
        info = row.get("units")
        if not isinstance(info, Mapping) or "file" not in info:
            return None
        path = Path(info["path"]) if "path" in info else (Path(root) / info["file"] if root else None)
        return read_units(path, info.get("statistic", ""), int(info.get("n", -1))) if path else None

    return load


def target_languages(target: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The languages a target's average is over: those every model has, XTREME's own set for XTREME tasks."""
    from xstilts.results.aggregate import xtreme_languages

    by_model: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_model[row["chain_label"]].add(row["language"])
    shared = set.intersection(*by_model.values()) if by_model else set()
    if target in XTREME_TASK_ORDER:
        wanted = set(xtreme_languages(target))
        shared = {lang for lang in shared if lang in wanted} or shared
    return sorted(shared, key=lambda lang: (lang != "en", lang))


def analyse(
    rows: Sequence[ResultRow], load_units: UnitsLoader, splits: Sequence[str] = (TEST, "dev")
) -> dict[str, Any]:
    """{mode: {split: {"targets": {name: effects}, "average", "comparisons", "order_tests", "controls", "rows"}}};
    "rows" maps "chain_label/target/language" to that result's score and gain intervals (for results.csv)."""
    result: dict[str, Any] = {}
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row in rows:
        groups[(row.get("mode", "full"), row.get("split", TEST))].append(row)
    for (mode, split), group in sorted(groups.items()):
        if split in splits:
            result.setdefault(mode, {})[split] = _analyse_split(mode, split, group, load_units)
    return result


def _analyse_split(mode: str, split: str, rows: list[ResultRow], load_units: UnitsLoader) -> dict[str, Any]:
    by_target: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        by_target[row["target"]].append(row)
    draws = {
        target: {
            language: st.LanguageDraws(
                [r for r in target_rows if r["language"] == language], load_units, key=(mode, split, target, language)
            )
            for language in sorted({r["language"] for r in target_rows})
        }
        for target, target_rows in by_target.items()
    }
    models: dict[str, st.ModelScores] = {}
    for target, target_rows in sorted(by_target.items()):
        study_rows = [r for r in target_rows if not r.get("control")]
        languages = target_languages(target, study_rows)
        if languages:
            models[target] = st.target_scores(study_rows, languages, draws[target])
    names = sorted(models)
    average_name = "XTREME" if names and all(t in XTREME_TASK_ORDER for t in names) else AVERAGE
    if len(names) > 1:
        average = st.average_of([models[t] for t in names])
        if average is not None:
            models[average_name] = average
    found = {name: st.effects(m, key=(mode, split, name)) for name, m in models.items()}
    tests = [(name, "slope", None) for name, e in found.items() if e.slope is not None and e.slope.p_value is not None]
    tests += [(name, "gain", k) for name, e in found.items() for k, g in e.gains.items() if g.p_value is not None]
    p_values = [(found[n].slope if what == "slope" else found[n].gains[k]).p_value for n, what, k in tests]
    adjusted = dict(zip(tests, st.holm(p_values)))
    targets = {name: _target_json(name, models[name], e, adjusted) for name, e in found.items()}
    controls = {}
    for target, target_rows in sorted(by_target.items()):
        controls.update(_controls(target, target_rows, draws[target], models.get(target), mode, split))
    return {
        "targets": targets,
        "average": average_name if average_name in targets else None,
        "comparisons": len(tests),
        "order_tests": _order_tests(by_target, models, load_units),
        "controls": controls,
        "rows": {
            key: value
            for target, target_rows in by_target.items()
            for key, value in _row_intervals(target_rows, draws[target]).items()
        },
    }


def _target_json(name: str, models: st.ModelScores, e: st.Effects, adjusted: Mapping[tuple, float]) -> dict[str, Any]:
    slope_p = adjusted.get((name, "slope", None))
    return {
        "languages": models.languages,
        "examples": models.examples,
        "runs": e.runs,
        "baseline": e.baseline.to_json() if e.baseline else None,
        "scores": {k: v.to_json() for k, v in e.scores.items()},
        "gains": {k: {**v.to_json(), "holm_p": adjusted.get((name, "gain", k))} for k, v in e.gains.items()},
        "steps": {k: v.to_json() for k, v in e.steps.items()},
        "slope": {**e.slope.to_json(), "holm_p": slope_p} if e.slope else None,
        "verdict": st.verdict(name, e.slope, slope_p),
        "variance": st.variance_shares(models),
    }


def _baseline_label(rows: Sequence[Mapping[str, Any]], seed: int) -> str | None:
    """The study's k = 0 model of `seed` (the first seed's for controls refitted under another seed)."""
    baselines = sorted(
        {(int(r.get("seed", 0)), r["chain_label"]) for r in rows if r["chain_length"] == 0 and not r.get("control")}
    )
    same = [label for s, label in baselines if s == seed]
    return same[0] if same else (baselines[0][1] if baselines else None)


def _row_intervals(rows: Sequence[ResultRow], draws: Mapping[str, st.LanguageDraws]) -> dict[str, dict[str, Any]]:
    """Per result row: its score's interval and its gain over k = 0 (same seed, same language) with interval."""
    out = {}
    for row in rows:
        language_draws = draws[row["language"]]
        mine = language_draws.of([row["chain_label"]])
        entry: dict[str, Any] = {"examples": language_draws.examples if mine is not None else None}
        if mine is not None:
            entry["score"] = st.Interval(row["score"], *st.percentile_interval(mine[0]), 1, st.PAIRED).to_json()
        base = _baseline_label(rows, int(row.get("seed", 0)))
        base_row = next((r for r in rows if r["chain_label"] == base and r["language"] == row["language"]), None)
        if base_row is not None and base != row["chain_label"]:
            gain = row["score"] - base_row["score"]
            pair = language_draws.of([row["chain_label"], base])
            entry["gain"] = (
                st.Interval(
                    gain, *st.percentile_interval(pair[0] - pair[1]), 1, st.PAIRED, st.p_value(gain, pair[0] - pair[1])
                )
                if pair is not None
                else st.Interval(gain)
            ).to_json()
        out[f"{row['chain_label']}/{row['target']}/{row['language']}"] = entry
    return out


def _order_tests(
    by_target: Mapping[str, list[ResultRow]], models: Mapping[str, st.ModelScores], load_units: UnitsLoader
) -> list[dict[str, Any]]:
    """A permutation test per target and group of chains holding the same tasks in different orders."""
    tests = []
    for target, target_rows in sorted(by_target.items()):
        scores = models.get(target)
        if scores is None:
            continue
        index = {(row["chain_label"], row["language"]): row for row in target_rows}
        for members in st.order_groups(scores):
            labels = [scores.labels[i] for i in members]
            units = [[load_units(index[(label, lang)]) for label in labels] for lang in scores.languages]
            if any(u is None for per_language in units for u in per_language):
                continue
            if any(len({len(u) for u in per_language}) != 1 for per_language in units):
                continue
            statistic, p = st.order_permutation_test(units, rng=st.seeded("orders", target, *labels))
            tests.append({"target": target, "chains": labels, "variance_between_orders": statistic, "p_value": p})
    adjusted = st.holm([t["p_value"] for t in tests])
    return [{**t, "holm_p": p} for t, p in zip(tests, adjusted)]


def _controls(
    target: str,
    rows: Sequence[ResultRow],
    draws: Mapping[str, st.LanguageDraws],
    study: st.ModelScores | None,
    mode: str,
    split: str,
) -> dict[str, Any]:
    """Known-answer checks: each control model's gain over the study's k = 0, on the target's languages, paired."""
    out: dict[str, Any] = {}
    if study is None:
        return out
    for kind, label, seed in sorted(
        {(r["control"], r["chain_label"], int(r.get("seed", 0))) for r in rows if r.get("control")}
    ):
        base = _baseline_label(rows, seed)
        if base is None:
            continue
        by_language = {r["language"]: r for r in rows if r["chain_label"] == label}
        base_scores = {r["language"]: r["score"] for r in rows if r["chain_label"] == base}
        languages = [lang for lang in study.languages if lang in by_language and lang in base_scores]
        if not languages:
            continue
        gain = float(np.mean([by_language[lang]["score"] - base_scores[lang] for lang in languages]))
        pairs = [draws[lang].of([label, base]) for lang in languages]
        replicates = None if any(p is None for p in pairs) else np.mean([p[0] - p[1] for p in pairs], axis=0)[None]
        rng = st.seeded("control", mode, split, label)
        method = st.PAIRED
        spread = st.seed_spread(study) if languages == study.languages else None
        if replicates is not None and spread is not None:
            replicates = st.with_seed_noise(replicates, spread[0], rng)
            method = f"{st.PAIRED}, plus the between-seed variance ({spread[1]} degrees of freedom)"
        interval = st.two_level(np.array([gain]), replicates, rng, method)
        expected = "inside its interval" if kind == "aa" else "above zero beyond its interval"
        passed = (not interval.excludes_zero()) if kind == "aa" else (interval.has_interval and interval.lower > 0)
        out[f"{label}/{target}"] = {
            "kind": kind,
            "target": target,
            "chain": list(by_language[languages[0]]["chain"]),
            "languages": languages,
            "gain": interval.to_json(),
            "seed_sd": spread[0] if spread else None,
            "expected": expected,
            "passed": bool(passed) if interval.has_interval else None,
        }
    return out
