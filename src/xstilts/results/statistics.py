"""Intervals that hold: every score and gain with the training noise and the test-sample noise behind it.

A study's number varies for two reasons, and its interval must carry both:

- **Training noise.** A model trained again under another seed, or a chain of the same length in another order,
  scores differently. It is measured from the study's own replicates: the runs of one chain length (orders x
  seeds), the baseline's own seeds (k = 0 is fine-tuned several times; every gain is measured against it).
- **Test-sample noise.** The test items are a sample. It is measured by a paired bootstrap over items
  (`xstilts.results.resampling`): every model on the same draw, parallel items drawn in every language at once.

Each estimate is a mean over *runs* (a run: one chain and seed; k = 0: one seed). Runs whose chains share their
first task may share trained stages, so they form one cluster; clusters are independent. The run-level variance
of a mean is estimated from the spread of the cluster means (one cluster: of the seed means), which holds orders
as a random sample of the orders the study could have drawn (a single chain: that chain, over seeds). That
spread holds the training noise and the part of the test-sample noise in which the runs differ; what it cannot
see is the test-sample noise all runs share (the same items under every model), measured by the bootstrap (its
whole variance less the part in the spread) and added. An interval is then estimate +- t x standard error, with
Satterthwaite's degrees of freedom (each mean square at a 70% upper bound, see `satterthwaite`). A gain over
k = 0 is the difference of two such means (k and the baseline's seeds), its variance the sum of both arms'
spreads plus the shared test-sample variance of the paired difference (Welch). Simulated studies with a known
answer check the coverage (`benchmarks/calibration.py`, `tests/test_calibration.py`).

Where a design has one run (one order, one seed) or one baseline run, its training noise cannot be estimated:
the interval says so ("test sample only", or what it leaves out), and no verdict rests on it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from xstilts.results.resampling import RESAMPLES, paired_replicates, seeded

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80  # the minimum detectable effect is the gain found with this probability
DF_BOUND = 0.3  # mean squares enter the degrees of freedom at their 70% upper bound (`satterthwaite`)
P_FLOOR = 1e-300  # p-values are stored at least this large and printed as "< 1e-N", never as 0
NO_INTERVAL = "n = 1"
TEST_SAMPLE_ONLY = "test sample only"
WITH_TRAINING = "training and test sample"

__all__ = ["RESAMPLES", "paired_replicates", "seeded"]  # re-exported for the callers of the item bootstrap


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval, what the interval includes, and (for effects) a p-value."""

    estimate: float
    lower: float | None = None
    upper: float | None = None
    n: int = 1  # runs behind the estimate (for a difference: runs of both arms)
    method: str = NO_INTERVAL
    p_value: float | None = None  # two-sided, against zero
    spread: float | None = None  # standard deviation between runs (n >= 2)
    se: float | None = None
    df: float | None = None  # degrees of freedom of the t quantile (None: normal)
    includes: str = TEST_SAMPLE_ONLY  # WITH_TRAINING, TEST_SAMPLE_ONLY, or WITH_TRAINING with `leaves_out`
    leaves_out: str | None = None  # training noise the design could not estimate (None: nothing left out)

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None

    @property
    def judged(self) -> bool:
        """A verdict may rest on it: its interval holds the training noise, all of it."""
        return self.has_interval and self.includes == WITH_TRAINING and self.leaves_out is None

    def excludes_zero(self) -> bool:
        return self.has_interval and (self.lower > 0 or self.upper < 0)

    def minimum_detectable(self, alpha: float = ALPHA, power: float = POWER) -> float | None:
        """The smallest true effect a two-sided test at `alpha` finds with probability `power`, at this standard
        error and these degrees of freedom."""
        if self.se is None or not self.has_interval:
            return None
        df = np.inf if self.df is None else self.df
        return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * self.se)

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "n": self.n,
            "method": self.method,
            "p_value": self.p_value,
            "between_runs_sd": self.spread,
            "se": self.se,
            "df": self.df,
            "includes": self.includes,
            "leaves_out": self.leaves_out,
        }


def format_p(p: float | None) -> str:
    """ "0.032", or "< 1e-12" for tiny values; never 0, never a rounded 1 for a tiny value."""
    if p is None:
        return "-"
    if p >= 1e-3:
        return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"
    exponent = min(300, int(np.ceil(-np.log10(max(p, P_FLOOR)))) - 1)
    return f"< 1e-{exponent}"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


# --- runs and their variance ------------------------------------------------------------------------------


@dataclass
class Runs:
    """One value per run (a score, or a contrast within one run), with its bootstrap replicates over test items
    (the same draws for every run), the cluster it belongs to and its seed."""

    values: np.ndarray  # (runs,)
    replicates: np.ndarray | None  # (runs, resamples); None without per-item units
    clusters: list[Hashable]
    seeds: list[int]
    description: str = "runs"  # what a missing estimate of training noise is called ("k = 0's seeds")

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)

    def __len__(self) -> int:
        return len(self.values)

    def groups(self) -> list[np.ndarray]:
        """Indices of the independent units: clusters, or within a single cluster, seeds."""
        keys = self.clusters if len(set(self.clusters)) > 1 else self.seeds
        order = list(dict.fromkeys(keys))
        return [np.flatnonzero([k == key for k in keys]) for key in order]

    def estimate(self) -> float:
        return float(np.mean([self.values[g].mean() for g in self.groups()]))

    def replicate_means(self) -> np.ndarray | None:
        if self.replicates is None:
            return None
        return np.mean([self.replicates[g].mean(axis=0) for g in self.groups()], axis=0)

    def variance(self) -> RunVariance:
        """The run-level variance of `estimate()`: the spread of the group means / their number."""
        groups = self.groups()
        if len(groups) < 2:
            return RunVariance(None, 0.0, 0.0, f"{self.description}: one run")
        means = np.array([self.values[g].mean() for g in groups])
        coefficient = 1.0 / len(groups)
        square = float(means.var(ddof=1))
        correction = 0.0
        if self.replicates is not None:  # the test-sample noise inside that spread
            replicate_means = np.stack([self.replicates[g].mean(axis=0) for g in groups])  # (groups, resamples)
            deviations = replicate_means - replicate_means.mean(axis=1, keepdims=True)
            correction = coefficient * float(np.mean(deviations.var(axis=0, ddof=1)))
        return RunVariance(len(groups) - 1, coefficient * square, correction, None)

    def spread(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self) > 1 else None


@dataclass(frozen=True)
class RunVariance:
    """coefficient x mean square of the group means (the variance of their mean), its degrees of freedom, and the
    expected test-sample part of it (`correction`); `missing` says why there is none (one run)."""

    df: int | None
    value: float
    correction: float
    missing: str | None


def interval(
    estimate: float,
    variances: Sequence[RunVariance],
    test_replicates: np.ndarray | None,
    n: int,
    spread: float | None = None,
) -> Interval:
    """estimate +- t x se, se^2 = the arms' training variances + the estimate's test-sample variance."""
    test = float(np.var(test_replicates, ddof=1)) if test_replicates is not None and len(test_replicates) > 1 else None
    known = [v for v in variances if v.missing is None]
    missing = [v.missing for v in variances if v.missing is not None]
    if test is None and not known:
        return Interval(estimate, n=n, spread=spread)
    # the spread of the group means already holds the test-sample noise in which the runs differ; the test-sample
    # noise they share (the same items under every model) is what the spread cannot see, and is added
    shared = shared_test_variance(test, known)
    total = sum(v.value for v in known) + shared
    df = satterthwaite(known, shared)
    se = float(np.sqrt(total))
    quantile = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, np.inf if df is None else df)
    includes = WITH_TRAINING if known else TEST_SAMPLE_ONLY
    method = "t interval, runs and test items" if known else "bootstrap over test items"
    if test is None:  # runs of an older version: no per-item units, so the test sample's noise is not in it
        method = "t interval over runs (no per-item units stored)"
        missing.append("the test sample's noise (no per-item units stored)")
    return Interval(
        estimate,
        estimate - quantile * se,
        estimate + quantile * se,
        n,
        method,
        p_value(estimate, se, df),
        spread,
        se,
        df,
        includes,
        "; ".join(missing) if known and missing else None,
    )


def shared_test_variance(test: float | None, terms: Sequence[RunVariance]) -> float:
    """The test-sample variance of the estimate that the runs share: the bootstrap's whole test-sample variance less
    the part the runs' spread already holds (each arm's correction). At least zero."""
    return max(0.0, (test or 0.0) - sum(v.correction for v in terms))


def satterthwaite(terms: Sequence[RunVariance], known: float) -> float | None:
    """Satterthwaite's degrees of freedom of (run-level mean squares + a known variance), each mean square taken,
    for this purpose only, at a 70% upper confidence bound (value x d / the 30% quantile of chi-square with d
    degrees of freedom). The plain plug-in understates the uncertainty exactly when a mean square came out small
    by chance (its degrees of freedom then come out large): with the two degrees of freedom of three orders a
    score's interval covered 92% where training noise dominates. On a grid of variance shares with one arm or two
    of 2 or 4 degrees of freedom each, this form covered 94.6-96.6% at nominal 95% (the plug-in 92.1-96.5%, the
    median 93.1-96.5%); `tests/test_statistics.py` checks the grid's hardest points through `interval`, and
    `benchmarks/calibration.py` whole studies."""
    if not terms:
        return None
    upper = [v.value * v.df / stats.chi2.ppf(DF_BOUND, v.df) for v in terms]
    total = sum(upper) + known
    uncertainty = sum(u**2 / v.df for u, v in zip(upper, terms))
    return total**2 / uncertainty if uncertainty > 0 and total > 0 else None


def p_value(estimate: float, se: float, df: float | None) -> float:
    """Two-sided, against zero, from the t distribution (normal without df); at least P_FLOOR."""
    if se <= 0:
        return 1.0 if estimate == 0 else P_FLOOR
    p = 2 * stats.t.sf(abs(estimate) / se, np.inf if df is None else df)
    return float(max(p, P_FLOOR))


def mean_of(runs: Runs) -> Interval:
    """The mean of the runs (a score at k, a step, a trend): their run-level variance and the test sample."""
    return interval(runs.estimate(), [runs.variance()], runs.replicate_means(), len(runs), runs.spread())


def difference(runs: Runs, baseline: Runs) -> Interval:
    """mean(runs) - mean(baseline), arms independent in training, paired over test items (Welch)."""
    estimate = runs.estimate() - baseline.estimate()
    a, b = runs.replicate_means(), baseline.replicate_means()
    test = a - b if a is not None and b is not None else None
    spread = runs.spread()
    return interval(estimate, [runs.variance(), baseline.variance()], test, len(runs) + len(baseline), spread)


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of independent values with a t interval (diagnostics over prefixes)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return Interval(float(values.mean()) if len(values) else float("nan"), n=len(values))
    runs = Runs(values, None, list(range(len(values))), [0] * len(values))
    found = mean_of(runs)
    return Interval(**{**found.__dict__, "method": "t interval over prefixes"})


def paired_statistic(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    rng: np.random.Generator,
    clusters: Sequence[Hashable] | None = None,
) -> Interval:
    """`statistic(x, y)` of paired observations with a percentile interval from resampling them; draws where the
    statistic is undefined (a resample with one distinct value) are left out.

    With `clusters`, whole clusters are drawn (every pair of a drawn cluster comes along), as pairs that share
    a cluster are not independent: the prefixes of one chain are nested in each other.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    estimate = float(statistic(x, y))
    groups = _cluster_indices(len(x), clusters)
    if len(groups) < 3:
        return Interval(estimate, n=len(x))
    picks = rng.integers(0, len(groups), size=(RESAMPLES, len(groups)))
    sample = []
    for pick in picks:
        drawn = np.concatenate([groups[i] for i in pick])
        sample.append(statistic(x[drawn], y[drawn]))
    sample = np.array(sample, dtype=float)
    sample = sample[np.isfinite(sample)]
    if len(sample) < RESAMPLES // 2:
        return Interval(estimate, n=len(x))
    low, high = percentile_interval(sample)
    method = "bootstrap over pairs" if clusters is None else f"bootstrap over {len(groups)} chains (clusters)"
    return Interval(estimate, low, high, len(x), method)


def _cluster_indices(n: int, clusters: Sequence[Hashable] | None) -> list[np.ndarray]:
    if clusters is None:
        return [np.array([i]) for i in range(n)]
    if len(clusters) != n:
        raise ValueError(f"paired_statistic: {len(clusters)} cluster labels for {n} pairs")
    members: dict[Hashable, list[int]] = {}
    for index, label in enumerate(clusters):
        members.setdefault(label, []).append(index)
    return [np.array(indices) for indices in members.values()]


def ols_slope(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope over the first axis (values: (points, ...))."""
    lengths = np.asarray(lengths, dtype=float)
    centred = lengths - lengths.mean()
    return np.tensordot(centred, values - values.mean(axis=0), axes=(0, 0)) / float((centred**2).sum())


# --- a target's (or an average's) models ----------------------------------------------------------------------


@dataclass
class ModelScores:
    """The models of one (mode, split) and their scores on one target or on an average of targets."""

    labels: list[str]
    chains: list[tuple[str, ...]]
    seeds: list[int]
    points: np.ndarray  # (models,)
    replicates: np.ndarray | None  # (models, resamples); None when some evaluation has no units
    languages: list[str] = field(default_factory=list)
    examples: dict[str, int] = field(default_factory=dict)  # language -> units
    parallel: bool = False  # the languages' test items are the same items (drawn together)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(c) for c in self.chains])

    def index(self, chain: tuple[str, ...], seed: int) -> int | None:
        for i, (c, s) in enumerate(zip(self.chains, self.seeds)):
            if c == chain and s == seed:
                return i
        return None

    def runs(self, members: Sequence[int], description: str) -> Runs:
        members = list(members)
        return Runs(
            self.points[members],
            None if self.replicates is None else self.replicates[members],
            [self.chains[i][0] if self.chains[i] else () for i in members],
            [self.seeds[i] for i in members],
            description,
        )

    def contrasts(self, pairs: Sequence[tuple[int, int]], description: str) -> Runs:
        """Runs of within-run differences model - reference (a chain against its own prefix)."""
        mine, theirs = [i for i, _ in pairs], [j for _, j in pairs]
        reps = None if self.replicates is None else self.replicates[mine] - self.replicates[theirs]
        return Runs(
            self.points[mine] - self.points[theirs],
            reps,
            [self.chains[i][0] for i in mine],
            [self.seeds[i] for i in mine],
            description,
        )


def average_of(targets: Sequence[ModelScores]) -> ModelScores | None:
    """The mean over targets (the XTREME way: each target's score, then their mean), on the models all share; the
    targets' test items are independent samples, so their replicates are averaged draw by draw."""
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
    """What the report says about one target: the score at each k, the gain over k = 0 at each k, each chain
    against its own prefix one task shorter (k >= 2), and the two parts of the question: the first task
    (the gain at k = 1) and each further task (the trend over k >= 1)."""

    baseline: Interval | None
    scores: dict[int, Interval]
    gains: dict[int, Interval]  # mean at k - mean at k = 0 (the baseline's seeds)
    steps: dict[int, Interval]  # k >= 2: each chain against its own prefix of length k - 1, same seed
    further: Interval | None  # slope over k = 1..K of each chain's scores, averaged over chains and seeds
    runs: dict[int, int]  # runs (chains x seeds) per k

    @property
    def first(self) -> Interval | None:
        return self.gains.get(1)


def effects(models: ModelScores) -> Effects:
    """Scores, gains, steps and the further-task trend, each with its interval (see the module docstring)."""
    lengths = models.lengths
    arms = {
        k: models.runs(np.flatnonzero(lengths == k), "k = 0's seeds" if k == 0 else f"runs at k = {k}")
        for k in sorted(set(lengths.tolist()))
    }
    scores = {k: mean_of(runs) for k, runs in arms.items()}
    gains = {k: difference(runs, arms[0]) for k, runs in arms.items() if k > 0 and 0 in arms}
    steps = {}
    for k in arms:
        pairs = [(i, j) for i in np.flatnonzero(lengths == k) if k >= 2 and (j := _prefix(models, i)) is not None]
        if pairs:
            steps[k] = mean_of(models.contrasts(pairs, f"chains at k = {k}"))
    return Effects(scores.get(0), scores, gains, steps, _further(models), {k: len(r) for k, r in arms.items()})


def _prefix(models: ModelScores, index: int) -> int | None:
    chain, seed = models.chains[index], models.seeds[index]
    return models.index(chain[:-1], seed)


def _further(models: ModelScores) -> Interval | None:
    """Each further task: per chain and seed, the least-squares slope of its scores over k = 1..len; the mean over
    them (clustered like any runs). None when no chain has two lengths >= 1."""
    lineages = [(c, s, m) for c, s, m in lineages_of(models) if len(m) >= 2]
    if not lineages:
        return None
    values = [ols_slope(models.lengths[m], models.points[m]) for _, _, m in lineages]
    replicates = None
    if models.replicates is not None:
        replicates = np.stack([ols_slope(models.lengths[m], models.replicates[m]) for _, _, m in lineages])
    runs = Runs(np.array(values, dtype=float), replicates, [c[0] for c, _, _ in lineages], [s for _, s, _ in lineages])
    runs.description = "chains"
    return mean_of(runs)


def lineages_of(models: ModelScores) -> list[tuple[tuple[str, ...], int, list[int]]]:
    """(chain, seed, members) for each chain the study extended no further, under its seed: the model indices of its
    prefixes of length >= 1 that were evaluated, shortest first."""
    found = []
    for leaf, (chain, seed) in enumerate(zip(models.chains, models.seeds)):
        if chain and not _has_child(models, leaf):
            members = [models.index(chain[:k], seed) for k in range(1, len(chain) + 1)]
            found.append((chain, seed, [m for m in members if m is not None]))
    return found


def _has_child(models: ModelScores, index: int) -> bool:
    chain, seed = models.chains[index], models.seeds[index]
    return any(
        s == seed and len(c) == len(chain) + 1 and c[: len(chain)] == chain for c, s in zip(models.chains, models.seeds)
    )


# --- verdicts -------------------------------------------------------------------------------------------


def call(found: Interval | None, adjusted_p: float | None, up: str, down: str) -> str:
    """One word for one part of the question: `up`/`down` when the interval holds the training noise and the
    Holm-adjusted p is below ALPHA, else why not."""
    if found is None:
        return "-"
    if not found.has_interval:
        return "no interval"
    if not found.judged:
        return "no verdict (test sample only)" if found.includes == TEST_SAMPLE_ONLY else "no verdict"
    if adjusted_p is None or adjusted_p >= ALPHA or not found.excludes_zero():
        return "no change detected"
    return up if found.estimate > 0 else down


def verdict(name: str, first: Interval | None, first_p: float | None, further: Interval | None, further_p) -> str:
    """One line per target answering both parts: does the first task help, does each further task add?"""
    parts = []
    if first is not None:
        parts.append(f"first task {_cell(first)}: {call(first, first_p, 'helps', 'hurts')}{_p_text(first, first_p)}")
    if further is not None:
        parts.append(
            f"each further task {_cell(further)} per task: {call(further, further_p, 'adds', 'takes away')}"
            f"{_p_text(further, further_p)}"
        )
    return f"{name}: " + ("; ".join(parts) if parts else "one chain length only: no gain to estimate")


def _cell(found: Interval) -> str:
    if not found.has_interval:
        return f"{signed(found.estimate)} (n = {found.n})"
    return f"{signed(found.estimate)} [{signed(found.lower)}, {signed(found.upper)}]"


def signed(value: float, digits: int = 1) -> str:
    """ "+1.2", "-0.3", and "+0.0" for what rounds to zero (never "-0.0")."""
    rounded = round(float(value), digits) + 0.0
    return f"{rounded:+.{digits}f}"


def _p_text(found: Interval, adjusted_p: float | None) -> str:
    return f" (Holm-adjusted p {_p_relation(adjusted_p)})" if found.judged and adjusted_p is not None else ""


def _p_relation(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


# --- where the variance comes from ---------------------------------------------------------------------


def variance_shares(models: ModelScores) -> dict[str, float] | str:
    """Shares of the variance of the runs' scores from chain length, from the order (which chain, at one length)
    and from the seed (within one chain; test-sample noise included): nested sums of squares, k > order > seed.
    Identified only when every chain at k >= 1 ran under at least two seeds and some length has two chains;
    otherwise a string says why not."""
    values, lengths = models.points, models.lengths
    chains = ["+".join(c) for c in models.chains]
    studied = [i for i in range(len(values)) if lengths[i] > 0]
    per_chain: dict[str, list[int]] = {}
    for i in studied:
        per_chain.setdefault(chains[i], []).append(i)
    if not per_chain or min(len(v) for v in per_chain.values()) < 2:
        return "not identified: one seed per chain, so order and seed noise cannot be told apart"
    if all(sum(1 for c in per_chain if len(c.split("+")) == k) < 2 for k in set(lengths[studied].tolist())):
        return "not identified: one chain per length, so there is no order to compare"
    total = float(((values - values.mean()) ** 2).sum())
    if total == 0:
        return "not identified: every run scores the same"
    between_lengths = sum(
        (lengths == k).sum() * (values[lengths == k].mean() - values.mean()) ** 2 for k in set(lengths.tolist())
    )
    between_orders = 0.0
    for k in set(lengths[studied].tolist()):
        at_k = values[lengths == k].mean()
        for members in (m for c, m in per_chain.items() if len(c.split("+")) == k):
            between_orders += len(members) * (values[members].mean() - at_k) ** 2
    return {
        "chain length": float(between_lengths / total),
        "order": float(between_orders / total),
        "seed": float(max(0.0, total - between_lengths - between_orders) / total),
    }


def order_tests(models: ModelScores) -> tuple[list[dict[str, Any]], str | None]:
    """Does the order of the same tasks matter? For each group of chains holding the same tasks in different
    orders, each run under at least two seeds: a one-way ANOVA F test of the runs' scores between orders (the
    seeds measure the noise an order difference must exceed). ([tests], why there are none)."""
    groups: dict[tuple, dict[tuple[str, ...], list[int]]] = {}
    for i, chain in enumerate(models.chains):
        if len(chain) > 1:
            groups.setdefault(tuple(sorted(chain)), {}).setdefault(chain, []).append(i)
    candidates = {tasks: orders for tasks, orders in groups.items() if len(orders) > 1}
    if not candidates:
        return [], "not identified: no two chains hold the same tasks in different orders"
    tests = []
    for orders in candidates.values():
        if min(len(members) for members in orders.values()) < 2:
            continue
        samples = [models.points[members] for members in orders.values()]
        if all(np.ptp(s) == 0 for s in samples) and len({float(s[0]) for s in samples}) == 1:
            statistic, p = 0.0, 1.0
        else:
            result = stats.f_oneway(*samples)
            statistic, p = float(result.statistic), float(result.pvalue)
        tests.append(
            {
                "chains": ["+".join(chain) for chain in orders],
                "runs": [len(m) for m in orders.values()],
                "f": statistic,
                "p_value": max(p, P_FLOOR) if np.isfinite(p) else 1.0,
            }
        )
    if not tests:
        return [], "not identified: one seed per order, so an order difference cannot be told from seed noise"
    return tests, None


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
