"""The intervals and verdicts the report prints, calibrated on simulated studies whose answer is known.

A smaller version of `benchmarks/calibration.py`: whole studies are simulated at the item level (parallel items,
seed noise for every model including k = 0, order and stage noise; `xstilts.results.simulate`) and analysed by
the report's own `analyse`. The bounds are chosen so that each broken method of the past fails them: drawing
parallel languages apart, leaving k = 0's training noise out, a percentile bootstrap over three runs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from xstilts.metrics.units import Units
from xstilts.results import statistics as st
from xstilts.results.effects import TargetDraws, analyse, target_languages, target_scores
from xstilts.results.simulate import (
    Design,
    SimulatedStudy,
    SimulatedTarget,
    a_a_alarm,
    false_calls,
    simulate_rows,
    summarize_coverage,
    truth,
)

SMALL = (SimulatedTarget("parallel", 6, 120, True), SimulatedTarget("independent", 3, 120, False))
LARGE = (SimulatedTarget("parallel", 6, 1000, True), SimulatedTarget("independent", 3, 1000, False))
STUDIES = 300
RESAMPLES = 300


def calibrate(design: Design, studies: int = STUDIES, seed: int = 0, transform=None):
    """Coverage per interval kind, and the null's family-wise call and A/A alarm rates."""
    rng = np.random.default_rng(seed)
    covered: dict[str, list[bool]] = defaultdict(list)
    calls, alarms = [], []
    for _ in range(studies):
        study = simulate_rows(design, rng)
        if transform is not None:
            study = transform(study)
        found = analyse(study.rows, study.load, splits=("test",), resamples=RESAMPLES)["full"]["test"]
        for kind, values in summarize_coverage(found, design, study).items():
            covered[kind] += values
        calls.append(false_calls(found))
        if (alarm := a_a_alarm(found)) is not None:
            alarms.append(alarm)
    return {kind: float(np.mean(v)) for kind, v in covered.items()}, float(np.mean(calls)), float(np.mean(alarms))


def pooled(coverage: dict[str, float], prefix: str = "") -> float:
    return float(np.mean([v for k, v in coverage.items() if prefix in k]))


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 2])
def test_null_studies_cover_the_truth_and_call_nothing_too_often(seeds):
    """3 orders x 1 or 2 seeds of chains up to K = 2 (k = 0 under three seeds), no true gain."""
    design = Design(f"3 x {seeds}", seeds=seeds, targets=SMALL)
    coverage, calls, alarms = calibrate(design, seed=seeds)
    assert min(coverage.values()) >= 0.9, coverage
    assert 0.93 <= pooled(coverage) <= 0.975, coverage
    assert calls <= 0.08, "the verdicts' family-wise false-positive rate"
    assert alarms <= 0.08, "the A/A controls' family-wise false-alarm rate"


@pytest.mark.slow
def test_drawing_parallel_languages_apart_fails_the_same_check():
    """The same studies with the item keys dropped: the languages of a parallel test set are resampled as if
    independent, and the scores' intervals (and the average's) are far too narrow."""
    design = Design(
        "3 x 2, test items dominate",
        seeds=2,
        targets=SMALL,
        seed_sd=0.3,
        stage_sd=0.1,
        order_sd=0.2,
        language_correlation=0.9,
    )

    def apart(study: SimulatedStudy) -> SimulatedStudy:
        units = {file: Units(u.statistic, u.values) for file, u in study.units.items()}
        rows = [{**row, "units": {k: v for k, v in row["units"].items() if k != "parallel"}} for row in study.rows]
        return replace(study, rows=rows, units=units)

    coverage, _, _ = calibrate(design, studies=150, seed=2, transform=apart)
    assert pooled(coverage, "parallel: score") < 0.88, coverage
    assert pooled(coverage, "independent: score") >= 0.9, "a target that is not parallel is not affected"
    right, _, _ = calibrate(design, studies=150, seed=2)
    assert pooled(right, "parallel: score") >= 0.92, right


def _gain_at_one(study: SimulatedStudy, method: str) -> tuple[float, float] | None:
    """The parallel target's gain at k = 1 by one of the past methods: each run against the k = 0 run of its own
    seed (k = 0's seed noise then never enters), with a t interval over the runs ("paired") or the percentile
    bootstrap over runs then items ("percentile")."""
    rows = [r for r in study.rows if r["target"] == "parallel" and not r.get("control")]
    draws = TargetDraws(rows, study.load, RESAMPLES, key=("broken",))
    models = target_scores(rows, target_languages("parallel", rows), draws)
    at_one = [i for i, c in enumerate(models.chains) if len(c) == 1]
    pairs = [(i, models.index((), models.seeds[i])) for i in at_one]
    runs = models.contrasts(pairs, "runs")
    if method == "paired":
        found = st.mean_of(runs)
        return found.lower, found.upper
    rng = np.random.default_rng(0)
    draws_ = rng.integers(0, len(runs), size=(RESAMPLES, len(runs)))
    sample = runs.replicates[draws_, np.arange(RESAMPLES)[:, None]].mean(axis=1)
    return st.percentile_interval(sample)


@pytest.mark.slow
def test_leaving_k0s_training_noise_out_fails_where_training_noise_matters():
    """3 orders x 1 seed, training noise larger than the test sample's: the gains of the past (each run against
    its own seed's single k = 0 run; a t interval or a percentile bootstrap over the 3 runs) cover far less than
    95%, while the report's gain at k = 1 holds."""
    design = Design("3 x 1", seeds=1, targets=LARGE, seed_sd=2.0, gains=(0.0, 1.0, 1.5))
    rng = np.random.default_rng(7)
    covered = defaultdict(list)
    for _ in range(200):
        study = simulate_rows(design, rng)
        for method in ("paired", "percentile"):
            low, high = _gain_at_one(study, method)
            covered[method].append(low <= truth(design)[1] <= high)
        found = analyse(study.rows, study.load, splits=("test",), resamples=RESAMPLES)["full"]["test"]
        gain = found["targets"]["parallel"]["gains"][1]
        covered["report"].append(gain["lower"] <= truth(design)[1] <= gain["upper"])
    rates = {method: float(np.mean(v)) for method, v in covered.items()}
    assert rates["paired"] < 0.88 and rates["percentile"] < 0.85, rates
    assert rates["report"] >= 0.92, rates


@pytest.mark.slow
def test_the_a_a_control_fails_when_the_machinery_leaves_training_noise_out(monkeypatch):
    """The A/A runs go through the study's machinery: a machinery that counts no training noise (every run's
    spread taken as zero, the intervals the test sample's only, as before this design) raises A/A false alarms
    far more often than 5%; the honest one does not."""
    design = Design("3 x 3", seeds=3, targets=LARGE, seed_sd=2.0)

    def no_training_noise(runs):
        return st.RunVariance(1000, 0.0, 0.0, None)

    _, _, honest = calibrate(design, studies=100, seed=11)
    monkeypatch.setattr(st.Runs, "variance", no_training_noise)
    _, _, alarms = calibrate(design, studies=100, seed=11)
    assert honest <= 0.08 and alarms >= 0.5, (honest, alarms)


@pytest.mark.slow
def test_power_grows_with_the_gain_and_the_detectable_effect_says_where():
    """Under 3 orders x 3 seeds, +0 at k = 1 is (almost) never called, +5 points usually is; every target states
    the smallest gain its design detects with 80% power, and a gain well above it is found most of the time."""
    rates, detectable = [], []
    for first in (0.0, 5.0):
        design = Design("3 x 3", seeds=3, targets=LARGE, seed_sd=0.5, order_sd=0.3, gains=(0.0, first, first))
        rng = np.random.default_rng(3)
        hits = []
        for _ in range(60):
            study = simulate_rows(design, rng)
            found = analyse(study.rows, study.load, splits=("test",), resamples=RESAMPLES)["full"]["test"]
            target = found["targets"]["parallel"]
            hits.append(target["calls"]["first"] == "helps")
            detectable.append(target["detectable"]["first"])
        rates.append(np.mean(hits))
    assert all(d is not None and d > 0 for d in detectable)
    assert rates[0] <= 0.05 and rates[1] >= 0.6, rates
    assert np.median(detectable) < 5.0, "+5 is above what this design detects with 80% power"
