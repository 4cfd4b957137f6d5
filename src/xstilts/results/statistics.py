"""Uncertainty of scores and gains: paired bootstrap over examples, then over runs; trend, verdicts, Holm.

Every model of a study is evaluated on the same examples, so the models' scores are resampled together:
one bootstrap draw picks the same units (examples, sentences, questions, queries, source sentences; see
`xstilts.evaluate.units`) for every model, and a gain is the difference of two scores computed on the same
draw (`scipy.stats.bootstrap(..., paired=True)`). Languages are independent samples: each is drawn on its
own and a target's replicate is the mean of its languages' replicates, as its score is.

With several runs at one chain length (orders x seeds), a second level resamples the runs first: a replicate
of the mean gain at k draws runs with replacement, then uses each drawn run's example-level replicate. The
spread between runs is also reported on its own. The slope of score over k is fitted over every run and
bootstrapped the same way, with whole chains (a chain and its prefixes) as the units of the first level.

p-values are two-sided, from the bootstrap standard error (z = estimate / sd of the replicates), so they
resolve below 1/resamples; calls of significance control the family-wise error with Holm's procedure over
all the comparisons a report makes, and the report states their number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from xstilts.evaluate.units import STATISTICS, Units, score_sums

CONFIDENCE = 0.95
RESAMPLES = 2000
ALPHA = 0.05
NO_INTERVAL = "n = 1"  # printed instead of an interval where nothing could be resampled
PAIRED = "paired bootstrap over examples"
BATCH_ELEMENTS = 20_000_000  # bound on the floats one bootstrap batch holds


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, the number of runs behind it, the method, and (for effects) a p-value."""

    estimate: float
    lower: float | None = None
    upper: float | None = None
    n: int = 1  # runs (chains x seeds) behind the estimate
    method: str = NO_INTERVAL
    p_value: float | None = None  # two-sided, against zero
    spread: float | None = None  # standard deviation between runs (n >= 2)

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None

    def excludes_zero(self) -> bool:
        return self.has_interval and (self.lower > 0 or self.upper < 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "n": self.n,
            "method": self.method,
            "p_value": self.p_value,
            "between_runs_sd": self.spread,
        }


def seeded(*parts: object) -> np.random.Generator:
    """A generator seeded from `parts` (target, split, language, ...): reports are reproducible, and the
    languages' draws are independent of each other."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def paired_replicates(units: Sequence[Units], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(models, resamples) scores of models evaluated on the same units, every draw shared by all models."""
    if not units:
        return np.zeros((0, resamples))
    n, statistic = len(units[0]), units[0].statistic
    if any(len(u) != n or u.statistic != statistic for u in units):
        raise ValueError("paired resampling needs every model evaluated on the same units")
    columns = STATISTICS[statistic]
    data = [u.values[:, c] for u in units for c in range(columns)]

    def scores(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = np.stack([s.sum(axis=axis) for s in samples], axis=-1)  # (..., models * columns)
        sums = sums.reshape(*sums.shape[:-1], len(units), columns)
        return np.moveaxis(score_sums(statistic, sums, n), -1, 0)

    if n == 1:  # one unit: every draw is that unit
        return np.repeat(np.array([[u.score()] for u in units]), resamples, axis=1)
    batch = max(1, BATCH_ELEMENTS // max(1, n * len(data)))
    result = stats.bootstrap(
        data,
        scores,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        batch=batch,
        method="percentile",
        confidence_level=CONFIDENCE,
        rng=rng,
    )
    return np.atleast_2d(result.bootstrap_distribution)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def p_value(estimate: float, replicates: np.ndarray) -> float:
    """Two-sided p-value against zero from the bootstrap standard error."""
    sd = float(np.std(replicates, ddof=1)) if len(replicates) > 1 else 0.0
    if sd == 0.0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * stats.norm.sf(abs(estimate) / sd))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def two_level(values: np.ndarray, replicates: np.ndarray | None, rng: np.random.Generator, method: str) -> Interval:
    """The mean of `values` (one per run) with an interval: runs resampled, then each run's example-level
    replicate (`replicates`: (runs, resamples)) used; with no replicates, runs alone are resampled."""
    runs = len(values)
    estimate = float(np.mean(values))
    spread = float(np.std(values, ddof=1)) if runs > 1 else None
    if replicates is None and runs == 1:
        return Interval(estimate, n=1)
    if replicates is None:
        draws = rng.integers(0, runs, size=(RESAMPLES, runs))
        sample = values[draws].mean(axis=1)
        method = "bootstrap over runs (no per-example units stored)"
    elif runs == 1:
        sample = replicates[0]
    else:
        resamples = replicates.shape[1]
        draws = rng.integers(0, runs, size=(resamples, runs))
        sample = replicates[draws, np.arange(resamples)[:, None]].mean(axis=1)
        method = "two-level bootstrap (runs, then examples)"
    low, high = percentile_interval(sample)
    return Interval(estimate, low, high, runs, method, p_value(estimate, sample), spread)


def paired_statistic(
    x: np.ndarray, y: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], float], rng: np.random.Generator
) -> Interval:
    """`statistic(x, y)` of paired observations (one pair per run) with a percentile interval from resampling the
    pairs; draws where the statistic is undefined (a resample with one distinct value) are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    estimate = float(statistic(x, y))
    if len(x) < 3:
        return Interval(estimate, n=len(x))
    draws = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    sample = np.array([statistic(x[d], y[d]) for d in draws], dtype=float)
    sample = sample[np.isfinite(sample)]
    if len(sample) < RESAMPLES // 2:
        return Interval(estimate, n=len(x))
    low, high = percentile_interval(sample)
    return Interval(estimate, low, high, len(x), "bootstrap over runs (pairs resampled)")


def ols_slope(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope over the first axis (values: (points, ...))."""
    centred = lengths - lengths.mean()
    return np.tensordot(centred, values - values.mean(axis=0), axes=(0, 0)) / float((centred**2).sum())


# --- a target's (or the XTREME average's) models --------------------------------------------------------------


@dataclass
class ModelScores:
    """The models of one (mode, split) and their scores on one target or on the XTREME average."""

    labels: list[str]
    chains: list[tuple[str, ...]]
    seeds: list[int]
    points: np.ndarray  # (models,)
    replicates: np.ndarray | None  # (models, resamples); None when some evaluation has no units
    languages: list[str] = field(default_factory=list)
    examples: dict[str, int] = field(default_factory=dict)  # language -> units

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(c) for c in self.chains])

    def index(self, chain: tuple[str, ...], seed: int) -> int | None:
        for i, (c, s) in enumerate(zip(self.chains, self.seeds)):
            if c == chain and s == seed:
                return i
        return None


class LanguageDraws:
    """The paired replicates of every model evaluated on one (target, split, language), computed once: the
    study's models, the controls and the per-row intervals all read the same draws."""

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        load_units: Callable[[Mapping[str, Any]], Units | None],
        resamples: int = RESAMPLES,
        key: tuple = (),
    ):
        loaded = {row["chain_label"]: load_units(row) for row in rows}
        sizes = [len(u) for u in loaded.values() if u is not None]
        n = max(set(sizes), key=sizes.count) if sizes else 0  # models on other units cannot be paired with these
        self.labels = sorted(label for label, u in loaded.items() if u is not None and len(u) == n)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.examples = n
        units = [loaded[label] for label in self.labels]
        self.replicates = paired_replicates(units, resamples, seeded(*key)) if units else np.zeros((0, resamples))

    def of(self, labels: Sequence[str]) -> np.ndarray | None:
        """(len(labels), resamples), or None when one of them has no units."""
        if any(label not in self.index for label in labels):
            return None
        return self.replicates[[self.index[label] for label in labels]]


def target_scores(
    rows: Sequence[Mapping[str, Any]], languages: Sequence[str], draws: Mapping[str, LanguageDraws]
) -> ModelScores:
    """Scores of every model (chain label) with all `languages`: their mean, as the target's score, with paired
    replicates when every one of those evaluations has its units."""
    by_model: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["chain_label"], {})[row["language"]] = row
    labels = sorted(
        (label for label, langs in by_model.items() if all(lang in langs for lang in languages)),
        key=lambda label: (len(next(iter(by_model[label].values()))["chain"]), label),
    )
    first = [next(iter(by_model[label].values())) for label in labels]
    points = np.array([np.mean([by_model[label][lang]["score"] for lang in languages]) for label in labels])
    per_language = [draws[lang].of(labels) if lang in draws else None for lang in languages]
    complete = bool(labels) and all(r is not None for r in per_language)
    return ModelScores(
        labels,
        [tuple(r["chain"]) for r in first],
        [int(r.get("seed", 0)) for r in first],
        points,
        np.mean(per_language, axis=0) if complete else None,
        list(languages),
        {lang: draws[lang].examples for lang in languages if lang in draws},
    )


def average_of(targets: Sequence[ModelScores]) -> ModelScores | None:
    """The mean over targets (the XTREME way: each target's score, then their mean), on the models all share."""
    if not targets:
        return None
    shared = [label for label in targets[0].labels if all(label in t.labels for t in targets)]
    if not shared:
        return None
    picks = [[t.labels.index(label) for label in shared] for t in targets]
    points = np.mean([t.points[p] for t, p in zip(targets, picks)], axis=0)
    complete = all(t.replicates is not None for t in targets)
    replicates = np.mean([t.replicates[p] for t, p in zip(targets, picks)], axis=0) if complete else None
    first = targets[0]
    index = [first.labels.index(label) for label in shared]
    return ModelScores(shared, [first.chains[i] for i in index], [first.seeds[i] for i in index], points, replicates)


@dataclass
class Effects:
    """What the headline reports for one target: score at k = 0, and per k the score, the gain over k = 0 and
    the gain over k - 1; the slope of score over k."""

    baseline: Interval | None
    scores: dict[int, Interval]
    gains: dict[int, Interval]  # against k = 0 (same seed), paired
    steps: dict[int, Interval]  # against the chain's own prefix of length k - 1 (diminishing returns)
    slope: Interval | None
    runs: dict[int, int]  # runs (chains x seeds) per k


def effects(models: ModelScores, key: tuple = ()) -> Effects:
    """Scores, gains and slope with intervals (see the module docstring)."""
    lengths = models.lengths
    rng = seeded("effects", *key)
    reps = models.replicates
    scores, gains, steps, runs = {}, {}, {}, {}
    for k in sorted(set(lengths.tolist())):
        members = np.flatnonzero(lengths == k)
        runs[k] = len(members)
        scores[k] = two_level(models.points[members], None if reps is None else reps[members], rng, _method(models))
        if k == 0:
            continue
        for against, store in (("baseline", gains), ("prefix", steps)):
            pairs = [(i, _reference(models, i, against)) for i in members]
            pairs = [(i, j) for i, j in pairs if j is not None]
            if not pairs:
                continue
            mine, theirs = np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])
            differences = models.points[mine] - models.points[theirs]
            paired = None if reps is None else reps[mine] - reps[theirs]
            store[k] = two_level(differences, paired, rng, _method(models))
    return Effects(scores.get(0), scores, gains, steps, _slope(models, rng), runs)


def _method(models: ModelScores) -> str:
    return PAIRED if models.replicates is not None else NO_INTERVAL


def _reference(models: ModelScores, index: int, against: str) -> int | None:
    chain, seed = models.chains[index], models.seeds[index]
    return models.index(() if against == "baseline" else chain[:-1], seed)


def _slope(models: ModelScores, rng: np.random.Generator) -> Interval | None:
    """Least-squares slope of score over k, over every chain (a leaf and its prefixes) and seed."""
    lengths = models.lengths
    if len(set(lengths.tolist())) < 2:
        return None
    leaves = [i for i in range(len(models.labels)) if not _has_child(models, i)]
    clusters = []
    for leaf in leaves:
        chain, seed = models.chains[leaf], models.seeds[leaf]
        members = [models.index(chain[:k], seed) for k in range(len(chain) + 1)]
        clusters.append([m for m in members if m is not None])
    points = np.array([m for cluster in clusters for m in cluster])
    estimate = float(ols_slope(lengths[points].astype(float), models.points[points]))
    reps = models.replicates
    if len(clusters) == 1 and reps is None:
        return Interval(estimate, n=1)
    if reps is None:
        draws = [
            np.concatenate([clusters[c] for c in rng.integers(0, len(clusters), len(clusters))])
            for _ in range(RESAMPLES)
        ]
        sample = np.array([ols_slope(lengths[d].astype(float), models.points[d]) for d in draws])
        method = "bootstrap over chains (no per-example units stored)"
    elif len(clusters) == 1:
        sample = ols_slope(lengths[points].astype(float), reps[points])
        method = "paired bootstrap over examples"
    else:
        resamples = reps.shape[1]
        sample = np.empty(resamples)
        for b in range(resamples):
            drawn = np.concatenate([clusters[c] for c in rng.integers(0, len(clusters), len(clusters))])
            sample[b] = ols_slope(lengths[drawn].astype(float), reps[drawn, b])
        method = "two-level bootstrap (chains, then examples)"
    low, high = percentile_interval(sample)
    spread = None
    if len(clusters) > 1:
        per_chain = [ols_slope(lengths[c].astype(float), models.points[c]) for c in clusters if len(c) > 1]
        spread = float(np.std(per_chain, ddof=1)) if len(per_chain) > 1 else None
    return Interval(estimate, low, high, len(clusters), method, p_value(estimate, sample), spread)


def _has_child(models: ModelScores, index: int) -> bool:
    chain, seed = models.chains[index], models.seeds[index]
    return any(
        s == seed and len(c) == len(chain) + 1 and c[: len(chain)] == chain for c, s in zip(models.chains, models.seeds)
    )


def seed_spread(models: ModelScores) -> tuple[float, int] | None:
    """The standard deviation of a score between training seeds, pooled over every chain the study ran under
    several seeds, and its degrees of freedom; None without such chains. A comparison of two single runs (an
    A/A refit, a control) varies by this much more than its test sample alone says."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for chain, point in zip(models.chains, models.points):
        groups.setdefault(chain, []).append(float(point))
    squares = sum(((np.asarray(v) - np.mean(v)) ** 2).sum() for v in groups.values() if len(v) > 1)
    freedom = sum(len(v) - 1 for v in groups.values() if len(v) > 1)
    return (float(np.sqrt(squares / freedom)), freedom) if freedom else None


def with_seed_noise(replicates: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Replicates of a difference between two single training runs, widened by the between-seed variance of both
    runs (each contributes spread**2), drawn as normal noise around the example-level replicates."""
    return replicates + rng.normal(0.0, spread * np.sqrt(2.0), size=replicates.shape)


# --- verdicts -------------------------------------------------------------------------------------------


def verdict(name: str, slope: Interval | None, adjusted_p: float | None) -> str:
    """One line per target, in the style of the latency verdicts."""
    if slope is None:
        return f"{name}: one chain length only: no trend to estimate"
    text = f"{name}: {slope.estimate:+.1f} points per added task"
    if not slope.has_interval:
        return text + " (n = 1 and no per-example units: no interval, no verdict)"
    text += f" (95% CI {slope.lower:+.1f} to {slope.upper:+.1f})"
    if adjusted_p is None or adjusted_p >= ALPHA or not slope.excludes_zero():
        return text + ": no change detected"
    return text + (": grows" if slope.estimate > 0 else ": falls") + f" (Holm-adjusted p = {adjusted_p:.3g})"


# --- where the variance comes from ---------------------------------------------------------------------


def variance_shares(models: ModelScores) -> dict[str, float] | None:
    """Shares of the variance of the runs' scores from chain length, from the order (which chain, at one length)
    and from the seed (the rest): sums of squares of nested groups, k > order > seed."""
    values, lengths = models.points, models.lengths
    total = float(((values - values.mean()) ** 2).sum())
    repeated = any((lengths == k).sum() > 1 for k in set(lengths.tolist()))  # runs to compare within a length
    if len(values) < 3 or total == 0 or not repeated:
        return None
    between_lengths = sum(
        (lengths == k).sum() * (values[lengths == k].mean() - values.mean()) ** 2 for k in set(lengths.tolist())
    )
    chains = np.array(["+".join(c) for c in models.chains])
    between_orders = 0.0
    for k in set(lengths.tolist()):
        at_k = lengths == k
        for chain in set(chains[at_k].tolist()):
            members = at_k & (chains == chain)
            between_orders += members.sum() * (values[members].mean() - values[at_k].mean()) ** 2
    return {
        "chain length": float(between_lengths / total),
        "order": float(between_orders / total),
        "seed": float(max(0.0, total - between_lengths - between_orders) / total),
    }


def order_groups(models: ModelScores) -> list[list[int]]:
    """Models that hold the same set of tasks in different orders (same length and seed), two or more per group."""
    groups: dict[tuple, list[int]] = {}
    for i, (chain, seed) in enumerate(zip(models.chains, models.seeds)):
        if len(chain) > 1:
            groups.setdefault((seed, tuple(sorted(chain))), []).append(i)
    return [members for members in groups.values() if len({models.chains[i] for i in members}) > 1]


def order_permutation_test(
    units_by_language: Sequence[Sequence[Units]], resamples: int = 999, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """Does the order of the same tasks matter? (statistic, p-value): the variance across orders of the target
    score (mean over languages); under the null the order labels of each example's predictions are exchangeable,
    so they are permuted example by example (`scipy.stats.permutation_test`, permutation_type="samples")."""
    orders = len(units_by_language[0])
    statistic = units_by_language[0][0].statistic
    tables, offsets, total = [], [0], 0
    for units in units_by_language:
        tables.append(np.stack([u.values for u in units]))  # (orders, n, columns)
        total += len(units[0])
        offsets.append(total)
    table = np.concatenate(tables, axis=1)  # (orders, all units, columns)
    flat = table.reshape(-1, table.shape[-1])
    sizes = np.diff(offsets)

    def spread(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        scores = []
        for ids in samples:
            values = flat[ids]  # (..., all units, columns)
            sums = np.stack([values[..., a:b, :].sum(axis=-2) for a, b in zip(offsets[:-1], offsets[1:])], axis=-2)
            scores.append(score_sums(statistic, sums, sizes).mean(axis=-1))
        return np.var(np.stack(scores), axis=0)

    samples = [np.arange(total) + order * total for order in range(orders)]
    result = stats.permutation_test(
        samples,
        spread,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="greater",
        batch=max(1, BATCH_ELEMENTS // max(1, total * orders * table.shape[-1])),
        rng=rng if rng is not None else np.random.default_rng(0),
    )
    return float(result.statistic), float(result.pvalue)


# --- latency ----------------------------------------------------------------------------------------------


def ratio_of_medians(
    numerator: np.ndarray, denominator: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Ratio of medians with a percentile-bootstrap 95% interval (the samples are resampled independently)."""
    point = float(np.median(numerator) / np.median(denominator))
    result = stats.bootstrap(
        (np.asarray(numerator), np.asarray(denominator)),
        lambda a, b, axis=-1: np.median(a, axis=axis) / np.median(b, axis=axis),
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        confidence_level=CONFIDENCE,
        rng=rng,
    )
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def slope_of_median_ratios(
    lengths: Sequence[int],
    samples: Sequence[np.ndarray],
    baseline: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Least-squares slope of (median / median at k = 0) over k, with a percentile-bootstrap 95% interval."""
    x = np.asarray(lengths, dtype=np.float64)
    if len(set(lengths)) < 2:
        return 0.0, 0.0, 0.0

    def slope(base: np.ndarray, *timed: np.ndarray, axis: int = -1) -> np.ndarray:
        medians = np.stack([np.median(t, axis=axis) for t in timed]) / np.median(base, axis=axis)
        return ols_slope(x, medians)

    point = float(slope(np.asarray(baseline), *[np.asarray(s) for s in samples]))
    result = stats.bootstrap(
        (np.asarray(baseline), *[np.asarray(s) for s in samples]),
        slope,
        vectorized=True,
        n_resamples=resamples,
        method="percentile",
        confidence_level=CONFIDENCE,
        rng=rng,
    )
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)
