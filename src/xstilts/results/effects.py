"""The study's answer with its uncertainty: per target and for the average over targets, the score at each k,
the gain over k = 0 at each k, each chain against its prefix one task shorter, and the two parts of the
question (does the first task help; does each further task add?) with verdicts, Holm-controlled; the minimum
detectable effect of the design; the controls through the same machinery; where the variance comes from and
whether order matters, where the design identifies them.

`analyse` reads result rows (and the per-unit files they point to) and returns what summary.json stores under
"effects" and what the report's first section prints. The arithmetic is in `statistics` (runs) and
`resampling` (test items).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from xstilts.metrics.units import Units
from xstilts.metrics.xtreme import XTREME_TASK_ORDER
from xstilts.results import combination
from xstilts.results import statistics as st
from xstilts.results.curve import gain_curve
from xstilts.results.resampling import RESAMPLES, item_replicates, seeded
from xstilts.rundir.records import ResultRow, complete_rows, is_study_row
from xstilts.rundir.units import read_units
from xstilts.terms import DEV, TEST

AVERAGE = "average"  # the mean over targets, named by what it averages unless it is the full XTREME set
XTREME = "XTREME"
UnitsLoader = Callable[[Mapping[str, Any]], Units | None]


def units_loader(root: Path | None = None) -> UnitsLoader:
    """Loads a row's units from `row["units"]["path"]` (set when runs are collected) or `root / file`."""

    def load(row: Mapping[str, Any]) -> Units | None:
        info = row.get("units")
        if not isinstance(info, Mapping) or "file" not in info:
            return None
        path = Path(info["path"]) if "path" in info else (Path(root) / info["file"] if root else None)
        if path is None:
            return None
        return read_units(path, info.get("statistic", ""), int(info.get("n", -1)), bool(info.get("parallel")))

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


def expected_languages(target: str, split: str) -> tuple[str, ...] | None:
    """The languages the benchmark defines for a built-in XTREME target on `split` (None for other targets)."""
    from xstilts.results.aggregate import xtreme_languages
    from xstilts.tasks import default_registry

    if target not in XTREME_TASK_ORDER:
        return None
    spec = default_registry().get(target)
    languages = set(spec.evaluation_languages(split)) & set(xtreme_languages(target))
    return tuple(sorted(languages, key=lambda lang: (lang != "en", lang)))


class TargetDraws:
    """The bootstrap replicates over test items of every model evaluated on one (target, split), computed once and
    shared by the study, the controls and the per-row intervals. Parallel languages are drawn together."""

    def __init__(
        self, rows: Sequence[Mapping[str, Any]], load_units: UnitsLoader, resamples: int = RESAMPLES, key: tuple = ()
    ):
        loaded: dict[str, dict[str, Units]] = defaultdict(dict)
        for row in rows:
            units = load_units(row)
            if units is not None:
                loaded[row["language"]][row["chain_label"]] = units
        self.examples: dict[str, int] = {}
        self.parallel: set[str] = set()
        self._index: dict[str, dict[str, int]] = {}
        family: dict[str, list[Units]] = {}
        for language, by_label in sorted(loaded.items()):
            # models evaluated on other items cannot be paired with the rest: keep the most common item set
            signature = Counter(_signature(u) for u in by_label.values()).most_common(1)[0][0]
            labels = sorted(label for label, u in by_label.items() if _signature(u) == signature)
            self._index[language] = {label: i for i, label in enumerate(labels)}
            self.examples[language] = len(by_label[labels[0]])
            if by_label[labels[0]].keys is not None:
                self.parallel.add(language)
            family[language] = [by_label[label] for label in labels]
        self.replicates = item_replicates(family, resamples, seeded(*key)) if family else {}
        self.resamples = resamples

    def of(self, labels: Sequence[str], language: str) -> np.ndarray | None:
        """(len(labels), resamples) replicates in one language, or None when one of them has no units."""
        index = self._index.get(language, {})
        if any(label not in index for label in labels):
            return None
        return self.replicates[language][[index[label] for label in labels]]

    def mean_of(self, labels: Sequence[str], languages: Sequence[str]) -> np.ndarray | None:
        """(len(labels), resamples): the mean over `languages` of each model's replicates (the target's score)."""
        per_language = [self.of(labels, language) for language in languages]
        if not labels or not languages or any(r is None for r in per_language):
            return None
        return np.mean(per_language, axis=0)


def _signature(units: Units) -> tuple:
    return (len(units), units.statistic, None if units.keys is None else tuple(units.keys.tolist()))


class SplitModels(NamedTuple):
    """The models of one (mode, split), per target and the average: the study's and the combination study's."""

    study: dict[str, st.ModelScores]
    combined: dict[str, st.ModelScores]


def analyse(
    rows: Sequence[ResultRow],
    load_units: UnitsLoader,
    splits: Sequence[str] = (TEST, "dev"),
    resamples: int = RESAMPLES,
    unevaluated: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """{mode: {split: {"targets": {name: effects}, "average", "comparisons", "order_tests", "controls", "rows"}}};
    "rows" maps "chain_label/target/language" to that result's score and gain intervals (for results.csv).
    `unevaluated`: planned (target, split, language) the run could not evaluate (no files), named in the output."""
    result: dict[str, Any] = {}
    models: dict[tuple[str, str], SplitModels] = {}
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row in complete_rows(rows):
        groups[(row["mode"], row["split"])].append(row)
    for (mode, split), group in sorted(groups.items()):
        if split in splits:
            skipped = [u for u in complete_rows(unevaluated) if u["split"] == split]
            found, models[(mode, split)] = _analyse_split(mode, split, group, load_units, resamples, skipped)
            result.setdefault(mode, {})[split] = found
    combinations = {r["chain_label"]: r["combination"] for r in complete_rows(rows) if r.get("combination")}
    for mode, by_split in result.items():
        if TEST in by_split:
            test, dev = models[(mode, TEST)], models.get((mode, DEV), SplitModels({}, {}))
            by_split[TEST]["curves"] = _curves(by_split, test.study, dev.study)
            if test.combined:
                by_split[TEST]["combination"] = _combination(by_split, test, dev, combinations)
    return result


def _dev_name(found: Mapping[str, Any], name: str) -> str | None:
    """The dev analysis's name of a test target or average (an average's label may name its split)."""
    return {found[TEST].get("average"): found.get(DEV, {}).get("average")}.get(name, name)


def _combination(
    found: Mapping[str, Any], test: SplitModels, dev: SplitModels, combinations: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The combination study of every target and the average (`xstilts.results.combination`): choices on each
    target's dev scores, or for a target without dev on the dev average (of the targets that have dev)."""
    out = {}
    for name, combined in test.combined.items():
        chooser = _dev_name(found, name)
        if chooser not in dev.study:
            chooser = found.get(DEV, {}).get("average")
        out[name] = combination.analyse_target(
            test.study[name], combined, dev.study.get(chooser), dev.combined.get(chooser), combinations
        )
    return out


def _curves(
    found: Mapping[str, Any], test: Mapping[str, st.ModelScores], dev: Mapping[str, st.ModelScores]
) -> dict[str, Any]:
    """The curve of the gain against k for every target and the average: form chosen on dev, fitted on test."""
    curves = {}
    for name, models in test.items():
        detectable = found[TEST]["targets"][name]["detectable"]
        mde = detectable.get("further") or detectable.get("first")
        curves[name] = gain_curve(dev.get(_dev_name(found, name)), models, mde)
    return curves


def _analyse_split(
    mode: str,
    split: str,
    rows: list[ResultRow],
    load_units: UnitsLoader,
    resamples: int,
    unevaluated: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], SplitModels]:
    """The split's analysis (JSON) and the models it analysed, per target and the average: the study's, and the
    combination study's (scored on the same languages, drawn with the same test items)."""
    by_target: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        by_target[row["target"]].append(row)
    draws = {
        target: TargetDraws(target_rows, load_units, resamples, key=(mode, split, target))
        for target, target_rows in sorted(by_target.items())
    }
    models: dict[str, st.ModelScores] = {}
    combined: dict[str, st.ModelScores] = {}
    for target, target_rows in sorted(by_target.items()):
        study_rows = [r for r in target_rows if is_study_row(r)]
        languages = target_languages(target, study_rows)
        if languages:
            models[target] = target_scores(study_rows, languages, draws[target])
            combined_rows = [r for r in target_rows if r.get("combination")]
            if combined_rows:
                combined[target] = target_scores(combined_rows, languages, draws[target])
    names = sorted(models)
    average_name = None
    if len(names) > 1:
        average = st.average_of([models[t] for t in names])
        if average is not None:
            average_name = average_label(names, {t: models[t].languages for t in names}, split)
            models[average_name] = average
            if all(t in combined for t in names) and (merged := st.average_of([combined[t] for t in names])):
                combined[average_name] = merged
    found = {name: st.effects(m) for name, m in models.items()}
    family = _family(found)
    adjusted = dict(zip(family, st.holm([p for _, p in family.items()]))) if family else {}
    strictest = st.ALPHA / max(1, len(family))
    targets = {
        name: _target_json(name, models[name], e, adjusted, strictest, split, unevaluated) for name, e in found.items()
    }
    controls: dict[str, Any] = {}
    for target, target_rows in sorted(by_target.items()):
        controls.update(_controls(target, target_rows, draws[target], models.get(target)))
    _judge_controls(controls)
    return {
        "targets": targets,
        "average": average_name,
        "comparisons": len(family),
        "alpha_strictest": strictest,
        "order_tests": _order_tests(models, names),
        "controls": controls,
        "rows": {
            key: value
            for target, target_rows in by_target.items()
            for key, value in _row_intervals(target_rows, draws[target]).items()
        },
    }, SplitModels(models, combined)


def average_label(names: Sequence[str], languages: Mapping[str, Sequence[str]], split: str) -> str:
    """ "XTREME" for the mean over all nine XTREME targets, each in all its languages; otherwise "average of N
    targets", which the report spells out (which targets, which languages are missing)."""
    full = set(names) == set(XTREME_TASK_ORDER) and all(
        set(expected_languages(t, split) or ()) <= set(languages[t]) for t in names
    )
    return XTREME if full else f"{AVERAGE} of {len(names)} targets"


def target_scores(rows: Sequence[Mapping[str, Any]], languages: Sequence[str], draws: TargetDraws) -> st.ModelScores:
    """Scores of every model (chain label) with all `languages`: their mean, as the target's score, with its
    replicates over test items when every one of those evaluations has its units."""
    by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["chain_label"], {})[row["language"]] = row
    labels = sorted(
        (label for label, langs in by_model.items() if all(lang in langs for lang in languages)),
        key=lambda label: (len(next(iter(by_model[label].values()))["chain"]), label),
    )
    first = [next(iter(by_model[label].values())) for label in labels]
    points = np.array([np.mean([by_model[label][lang]["score"] for lang in languages]) for label in labels])
    return st.ModelScores(
        labels,
        [tuple(r["chain"]) for r in first],
        [int(r["seed"]) for r in first],
        points,
        draws.mean_of(labels, languages),
        list(languages),
        {lang: draws.examples[lang] for lang in languages if lang in draws.examples},
        bool(languages) and all(lang in draws.parallel for lang in languages),
    )


def _family(found: Mapping[str, st.Effects]) -> dict[tuple, float]:
    """The comparisons the verdicts rest on (Holm's family): per target and for the average, the first task (the
    gain at k = 1) and each further task (the trend over k >= 1), where the interval holds the training noise."""
    family: dict[tuple, float] = {}
    for name, e in found.items():
        for key, found_interval in (((name, "gain", 1), e.first), ((name, "further", None), e.further)):
            if found_interval is not None and found_interval.judged and found_interval.p_value is not None:
                family[key] = found_interval.p_value
    return family


def _target_json(
    name: str,
    models: st.ModelScores,
    e: st.Effects,
    adjusted: Mapping[tuple, float],
    strictest: float,
    split: str,
    unevaluated: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    first_p = adjusted.get((name, "gain", 1))
    further_p = adjusted.get((name, "further", None))
    expected = expected_languages(name, split)
    missing = sorted({u["language"] for u in unevaluated if u["target"] == name})
    if expected:
        missing = sorted(set(missing) | (set(expected) - set(models.languages)))
    shares = st.variance_shares(models)
    return {
        "languages": models.languages,
        "missing_languages": missing,
        "parallel": models.parallel,
        "examples": models.examples,
        "runs": e.runs,
        "baseline": e.baseline.to_json() if e.baseline else None,
        "scores": {k: v.to_json() for k, v in e.scores.items()},
        "gains": {k: {**v.to_json(), "holm_p": adjusted.get((name, "gain", k))} for k, v in e.gains.items()},
        "steps": {k: v.to_json() for k, v in e.steps.items()},
        "further": {**e.further.to_json(), "holm_p": further_p} if e.further else None,
        "verdict": st.verdict(name, e.first, first_p, e.further, further_p),
        "calls": {
            "first": st.call(e.first, first_p, "helps", "hurts") if e.first else None,
            "further": st.call(e.further, further_p, "adds", "takes away") if e.further else None,
        },
        "detectable": {
            "alpha": strictest,
            "power": st.POWER,
            "first": e.first.minimum_detectable(strictest) if e.first and e.first.judged else None,
            "further": e.further.minimum_detectable(strictest) if e.further and e.further.judged else None,
        },
        "variance": shares if isinstance(shares, dict) else None,
        "variance_not_identified": shares if isinstance(shares, str) else None,
    }


def _baseline_labels(rows: Sequence[Mapping[str, Any]]) -> Callable[[int], str | None]:
    """seed -> the study's k = 0 model of that seed (the first seed's when k = 0 has no run of that seed)."""
    baselines = sorted({(int(r["seed"]), r["chain_label"]) for r in rows if r["chain_length"] == 0 and is_study_row(r)})
    by_seed: dict[int, str] = {}
    for seed, label in baselines:
        by_seed.setdefault(seed, label)
    return lambda seed: by_seed.get(seed, baselines[0][1] if baselines else None)


def _row_intervals(rows: Sequence[ResultRow], draws: TargetDraws) -> dict[str, dict[str, Any]]:
    """Per result row (one run, one language): its score's interval and its gain over k = 0 (same seed, same
    language), over this language's test items only (one run: its training noise is not in them)."""
    baseline_of = _baseline_labels(rows)
    by_key = {(r["chain_label"], r["language"]): r for r in rows}
    out = {}
    for row in rows:
        language = row["language"]
        mine = draws.of([row["chain_label"]], language)
        entry: dict[str, Any] = {"examples": draws.examples.get(language) if mine is not None else None}
        if mine is not None:
            entry["score"] = st.Interval(
                row["score"], *st.percentile_interval(mine[0]), 1, "bootstrap over test items (one run)"
            ).to_json()
        base = baseline_of(int(row["seed"]))
        base_row = by_key.get((base, language))
        if base_row is not None and base != row["chain_label"]:
            gain = row["score"] - base_row["score"]
            pair = draws.of([row["chain_label"], base], language)
            if pair is not None:
                difference = pair[0] - pair[1]
                se = float(np.std(difference, ddof=1))
                entry["gain"] = st.Interval(
                    gain,
                    *st.percentile_interval(difference),
                    1,
                    "paired bootstrap over test items (one run each)",
                    st.p_value(gain, se, None),
                    se=se,
                ).to_json()
            else:
                entry["gain"] = st.Interval(gain).to_json()
        out[f"{row['chain_label']}/{row['target']}/{language}"] = entry
    return out


def _order_tests(models: Mapping[str, st.ModelScores], targets: Sequence[str]) -> dict[str, Any]:
    """Per target, F tests between orders of the same tasks where each order ran under several seeds; Holm over
    all of them; or why the design cannot test it."""
    tests, reasons = [], {}
    for target in targets:
        found, reason = st.order_tests(models[target])
        tests += [{"target": target, **test} for test in found]
        if reason:
            reasons[target] = reason
    adjusted = st.holm([t["p_value"] for t in tests])
    return {"tests": [{**t, "holm_p": p} for t, p in zip(tests, adjusted)], "not_identified": reasons}


def _controls(
    target: str, rows: Sequence[ResultRow], draws: TargetDraws, study: st.ModelScores | None
) -> dict[str, Any]:
    """Known-answer checks, each analysed exactly as a gain of the study: the control's runs (its seeds) against
    the study's k = 0 runs, on the target's languages."""
    out: dict[str, Any] = {}
    if study is None:
        return out
    baseline = [i for i, chain in enumerate(study.chains) if not chain]
    if not baseline:
        return out
    kinds: dict[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("control"):
            kinds[(row["control"], tuple(row["chain"]))].append(row)
    for (kind, chain), control_rows in sorted(kinds.items()):
        by_label: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
        for row in control_rows:
            by_label[row["chain_label"]][row["language"]] = row
        labels = sorted(label for label, langs in by_label.items() if set(study.languages) <= set(langs))
        if not labels:
            continue
        points = np.array([np.mean([by_label[label][lang]["score"] for lang in study.languages]) for label in labels])
        seeds = [int(next(iter(by_label[label].values()))["seed"]) for label in labels]
        runs = st.Runs(points, draws.mean_of(labels, study.languages), [kind] * len(labels), seeds, "control runs")
        gain = st.difference(runs, study.runs(baseline, "k = 0's seeds"))
        name = "aa" if kind == "aa" else "positive-" + "+".join(chain)
        out[f"{name}/{target}"] = {
            "kind": kind,
            "target": target,
            "chain": list(chain),
            "labels": labels,
            "languages": study.languages,
            "gain": gain.to_json(),
            "expected": "inside its interval" if kind == "aa" else "above zero beyond its interval",
        }
    return out


def _judge_controls(controls: dict[str, Any]) -> None:
    """A/A controls pass unless their gain is called with Holm over the A/A family (so the chance of a false
    alarm over all targets is ALPHA); positive controls pass when their interval lies above zero."""
    aa = [key for key, c in controls.items() if c["kind"] == "aa" and _judged(c["gain"])]
    adjusted = dict(zip(aa, st.holm([controls[key]["gain"]["p_value"] for key in aa])))
    for key, control in controls.items():
        gain = control["gain"]
        if not _judged(gain):
            control["passed"] = None
        elif control["kind"] == "aa":
            control["holm_p"] = adjusted[key]
            control["family"] = len(aa)
            control["passed"] = bool(adjusted[key] >= st.ALPHA)
        else:
            control["passed"] = bool(gain["lower"] > 0)


def _judged(gain: Mapping[str, Any]) -> bool:
    return (
        gain.get("lower") is not None
        and gain.get("includes") == st.WITH_TRAINING
        and gain.get("leaves_out") is None
        and gain.get("p_value") is not None
    )
