"""The curve of the gain against k: exact on a noiseless study, the form chosen on dev, and the scale's interval
checked by simulation against a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from xstilts.results import statistics as st
from xstilts.results.curve import FORMS, choose_form, flat_after, gain_curve, scale
from xstilts.results.effects import TargetDraws, analyse, target_languages, target_scores
from xstilts.results.simulate import Design, SimulatedTarget, simulate_rows, truth

LOG = next(form for form in FORMS if form.name == "logarithmic")
LINEAR = next(form for form in FORMS if form.name == "linear")


def noiseless(curve, orders=(("a", "b", "c", "d"), ("b", "c", "d", "a")), seeds=(0, 1), level=50.0):
    """Models whose score is level + curve(k) exactly (k = 0 under three seeds)."""
    labels, chains, seed_list, points = [], [], [], []
    for seed in (0, 1, 2):
        labels.append(f"k0-s{seed}"), chains.append(()), seed_list.append(seed), points.append(level)
    for seed in seeds:
        for order in orders:
            for k in range(1, len(order) + 1):
                labels.append(f"{'+'.join(order[:k])}-s{seed}")
                chains.append(tuple(order[:k]))
                seed_list.append(seed)
                points.append(level + curve(k))
    return st.ModelScores(labels, chains, seed_list, np.array(points), None)


def test_a_noiseless_logarithmic_study_is_recovered_exactly():
    models = noiseless(lambda k: 3 * np.log1p(k))
    form, errors = choose_form(models)
    assert form.name == "logarithmic" and errors["logarithmic"] == pytest.approx(0, abs=1e-12)
    assert all(error > 1e-6 for name, error in errors.items() if name != "logarithmic")
    assert len(st.lineages_of(models)) == 4, "two orders x two seeds, each with its prefixes"
    assert scale(models, LOG).estimate == pytest.approx(3.0)
    curve = gain_curve(models, models, detectable=1.0)
    assert curve["form"] == "logarithmic" and curve["formula"] == "a log(1 + k)"
    assert curve["predictions"][5]["estimate"] == pytest.approx(3 * np.log(6))
    assert curve["predictions"][7]["estimate"] == pytest.approx(3 * np.log(8))
    # 3 (log(k + 2) - log(k + 1)) < 1 from k = 2 on
    assert curve["flat_after"] == 2 and flat_after(3.0, LOG, None) is None


def test_the_form_is_chosen_on_dev_not_on_test():
    dev = noiseless(lambda k: 2.0 * k)
    test = noiseless(lambda k: 3 * np.log1p(k))
    curve = gain_curve(dev, test, detectable=None)
    assert curve["form"] == "linear", "dev says linear; test's own shape must not choose"
    assert curve["scale"]["estimate"] == pytest.approx(
        float(np.sum(np.arange(1, 5) * 3 * np.log1p(np.arange(1, 5))) / 30)
    )
    assert gain_curve(None, test, None)["why_not"].startswith("no dev scores")
    one_length = noiseless(lambda k: k, orders=(("a",), ("b",)))
    refused = gain_curve(one_length, test, None)
    assert "fewer than three chain lengths" in refused["why_not"] and "predictions" not in refused


def test_the_baseline_level_cancels_and_each_k0_seed_counts():
    """Shifting every score by a constant changes nothing; k = 0's own spread widens the scale's interval."""
    first = scale(noiseless(lambda k: 2.0 * k, level=50.0), LINEAR)
    shifted = scale(noiseless(lambda k: 2.0 * k, level=70.0), LINEAR)
    assert first.estimate == pytest.approx(shifted.estimate) == pytest.approx(2.0)
    noisy = noiseless(lambda k: 2.0 * k)
    noisy.points[:3] = [48.0, 50.0, 52.0]
    found = scale(noisy, LINEAR)
    assert found.estimate == pytest.approx(2.0) and found.upper - found.lower > 0, "k = 0's seeds enter the interval"


@pytest.mark.slow
def test_the_scale_interval_covers_the_true_slope_in_simulated_studies():
    """A linear truth (+1 point per task, K = 4, 3 orders x 2 seeds, seed, stage and order noise, parallel test
    items): the report's interval for a covers 1 in about 95% of studies."""
    design = Design(
        "curve",
        seeds=2,
        orders=3,
        max_length=4,
        pool=4,
        gains=(0.0, 1.0, 2.0, 3.0, 4.0),
        targets=(SimulatedTarget("parallel", 4, 400, True),),
        a_a=False,
    )
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(120):
        study = simulate_rows(design, rng)
        draws = TargetDraws(study.rows, study.load, 200, key=("curve",))
        models = target_scores(study.rows, target_languages("parallel", study.rows), draws)
        found = scale(models, LINEAR)
        covered.append(found.lower <= 1.0 <= found.upper)
    assert np.mean(covered) >= 0.88, np.mean(covered)


def test_curves_reach_the_report_analysis_with_dev_and_test():
    design = Design(
        "both",
        seeds=2,
        orders=2,
        max_length=3,
        pool=3,
        gains=(0.0, 2.0, 3.0, 3.5),
        a_a=False,
        targets=(SimulatedTarget("parallel", 2, 200, True),),
    )
    rng = np.random.default_rng(3)
    test, dev = simulate_rows(design, rng, "test"), simulate_rows(design, rng, "dev")
    units = {**test.units, **dev.units}
    found = analyse(test.rows + dev.rows, lambda row: units.get(row["units"]["file"]), resamples=100)["full"]
    curve = found["test"]["curves"]["parallel"]
    assert curve["form"] in {form.name for form in FORMS} and set(curve["predictions"]) == {4, 6}
    assert curve["scale"]["includes"] == st.WITH_TRAINING and curve["scale"]["lower"] <= curve["scale"]["upper"]


def held_out_errors(design: Design, studies: int, fitted_up_to: int, seed: int) -> dict[int, dict[str, float]]:
    """Fit the curve on the chains up to `fitted_up_to` of simulated studies (form chosen on their dev, scale on
    their test) and compare what it predicts at each longer k of the design with the true gain there: the mean
    error, the mean absolute error, and how often the scaled interval covers the truth."""
    rng = np.random.default_rng(seed)
    true = truth(design)
    found: dict[int, dict[str, list[float]]] = {k: {"error": [], "covered": []} for k in true if k > fitted_up_to}
    for _ in range(studies):
        splits = {}
        for split in ("dev", "test"):
            study = simulate_rows(design, rng, split)
            rows = [row for row in study.rows if row["chain_length"] <= fitted_up_to]
            draws = TargetDraws(rows, study.load, 200, key=(split,))
            splits[split] = target_scores(rows, target_languages("parallel", rows), draws)
        form, _ = choose_form(splits["dev"])
        fitted = scale(splits["test"], form)
        for k, entry in found.items():
            x = float(form.shape(np.array([k], dtype=float))[0])
            entry["error"].append(fitted.estimate * x - true[k])
            entry["covered"].append(fitted.lower * x <= true[k] <= fitted.upper * x)
    return {
        k: {
            "mean_error": float(np.mean(e["error"])),
            "mean_absolute_error": float(np.mean(np.abs(e["error"]))),
            "coverage": float(np.mean(e["covered"])),
        }
        for k, e in found.items()
    }


HELD_OUT = dict(
    seeds=2, orders=3, max_length=4, pool=4, a_a=False, targets=(SimulatedTarget("parallel", 4, 400, True),)
)


@pytest.mark.slow
def test_a_curve_fitted_on_k_up_to_2_is_checked_against_the_truth_at_k_3_and_4():
    """Fitted on k <= 2 of a K = 4 study (3 orders x 2 seeds), what it predicts at k = 3 and 4 against the truth.
    With two chain lengths on dev, a saturating form often fits a linear truth as well, so a linear truth is
    underpredicted (by 0.8 points at k = 3 and 1.5 at k = 4 over 200 studies) and the scaled interval covers it
    less often the further out it reaches (94.5%, then 89%); a saturating truth is predicted with little bias and
    covered 96% of the time. README, "The curve of the gain against k", gives the 200-study numbers."""
    linear = held_out_errors(Design("linear", gains=(0.0, 1.0, 2.0, 3.0, 4.0), **HELD_OUT), 60, 2, seed=5)
    assert -2.5 < linear[4]["mean_error"] < linear[3]["mean_error"] < 0, linear
    assert linear[3]["coverage"] >= 0.85 and linear[4]["coverage"] >= 0.8, linear
    saturating = held_out_errors(Design("saturating", gains=(0.0, 2.0, 3.0, 3.5, 3.75), **HELD_OUT), 60, 2, seed=6)
    assert all(abs(entry["mean_error"]) < 1.2 and entry["coverage"] >= 0.88 for entry in saturating.values())
    assert all(entry["mean_absolute_error"] < 3.0 for entry in (*linear.values(), *saturating.values()))
