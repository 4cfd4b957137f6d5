"""The statistics behind every interval and verdict, on synthetic results whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from xstilts.evaluate.units import Units
from xstilts.results.statistics import (
    ModelScores,
    effects,
    holm,
    order_permutation_test,
    paired_replicates,
    two_level,
    variance_shares,
    verdict,
)


def correlated_outcomes(rng, n, rates):
    """Per-example outcomes of several models on the same examples (a shared difficulty makes them correlated)."""
    difficulty = rng.random(n)
    return [(rng.random(n) < rate + 0.5 * difficulty).astype(float) for rate in rates]


def gain_interval(rng, base, other, seed):
    replicates = paired_replicates([Units("mean", base), Units("mean", other)], 1000, np.random.default_rng(seed))
    point = 100 * (other.mean() - base.mean())
    return two_level(np.array([point]), (replicates[1] - replicates[0])[None], rng, "paired")


def test_intervals_cover_the_true_gain_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    replications, true_gain = 600, 5.0  # 0.40 vs 0.35 accuracy: +5 points
    covered = sum(
        (lambda iv: iv.lower <= true_gain <= iv.upper)(
            gain_interval(rng, *correlated_outcomes(rng, 400, [0.35, 0.40]), r)
        )
        for r in range(replications)
    )
    assert 0.93 <= covered / replications <= 0.97


def test_a_a_comparisons_are_rarely_significant_and_holm_makes_it_rarer():
    rng = np.random.default_rng(1)
    families, size = 120, 5
    p_values = [
        [gain_interval(rng, *correlated_outcomes(rng, 300, [0.35, 0.35]), f * size + i).p_value for i in range(size)]
        for f in range(families)
    ]
    raw = np.mean([p < 0.05 for family in p_values for p in family])
    adjusted = np.mean([p < 0.05 for family in p_values for p in holm(family)])
    family_wise = np.mean([min(holm(family)) < 0.05 for family in p_values])
    assert raw <= 0.07 and adjusted < raw and family_wise <= 0.07


def test_paired_resampling_draws_the_same_units_for_every_model():
    rng = np.random.default_rng(2)
    a, b = correlated_outcomes(rng, 50, [0.3, 0.5])
    both = paired_replicates([Units("mean", a), Units("mean", b)], 300, np.random.default_rng(7))
    difference = paired_replicates([Units("mean", b - a)], 300, np.random.default_rng(7))
    np.testing.assert_allclose(both[1] - both[0], difference[0], atol=1e-9)
    same = paired_replicates([Units("mean", a), Units("mean", a)], 300, np.random.default_rng(7))
    assert np.array_equal(same[0], same[1]), "one model twice: identical draws, a gain of exactly 0"
    counts = Units("f1", [[1, 2, 1], [0, 1, 2], [2, 2, 2]])
    assert paired_replicates([counts], 200, np.random.default_rng(0)).shape == (1, 200)
    with pytest.raises(ValueError, match="same units"):
        paired_replicates([Units("mean", a), Units("mean", a[:10])], 10, np.random.default_rng(0))


def test_holm_on_known_p_values():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == [] and holm([0.5]) == [0.5] and holm([0.9, 0.8]) == [1.0, 1.0]


def study(points, replicates=None):
    """Two seeds x two orders of (a, b): k = 0..2, labels as a study writes them."""
    chains, seeds = [], []
    for seed in (0, 1):
        chains += [(), ("a",), ("a", "b"), ("b",), ("b", "a")]
        seeds += [seed] * 5
    labels = [f"k{len(c)}-{'+'.join(c) or 'pretrained'}-seed{s}" for c, s in zip(chains, seeds)]
    return ModelScores(labels, chains, seeds, np.asarray(points, dtype=float), replicates)


def test_effects_pair_each_chain_with_its_own_seed_baseline_and_prefix():
    points = [50, 52, 55, 51, 53, 60, 62, 65, 61, 63]  # seed 1 is 10 points higher everywhere
    result = effects(study(points))
    assert result.gains[1].estimate == pytest.approx(1.5) and result.gains[2].estimate == pytest.approx(4.0)
    assert result.steps[2].estimate == pytest.approx(2.5)  # (55 - 52 + 53 - 51) / 2, both seeds alike
    assert result.gains[1].n == 4 and result.runs == {0: 2, 1: 4, 2: 4}
    assert result.gains[1].spread == pytest.approx(np.std([2, 1, 2, 1], ddof=1))
    assert "runs" in result.gains[1].method
    lengths = np.array([0, 1, 2, 0, 1, 2] * 2, dtype=float)
    values = np.array([50, 52, 55, 50, 51, 53, 60, 62, 65, 60, 61, 63], dtype=float)
    assert result.slope.estimate == pytest.approx(np.polyfit(lengths, values, 1)[0])


def test_one_run_and_no_units_gives_no_interval_and_says_so():
    models = ModelScores(["k0", "k1"], [(), ("a",)], [0, 0], np.array([50.0, 51.0]), None)
    result = effects(models)
    assert not result.gains[1].has_interval and result.gains[1].n == 1
    assert verdict("xnli", result.slope, None) == (
        "xnli: +1.0 points per added task (n = 1 and no per-example units: no interval, no verdict)"
    )


def test_verdicts():
    from xstilts.results.statistics import Interval

    grows = Interval(0.6, 0.2, 1.0, 6, "x", 0.001)
    assert (
        verdict("XNLI", grows, 0.004)
        == "XNLI: +0.6 points per added task (95% CI +0.2 to +1.0): grows (Holm-adjusted p = 0.004)"
    )
    assert verdict("XNLI", grows, 0.2).endswith(": no change detected"), "Holm decides, not the raw interval"
    falls = Interval(-0.6, -1.0, -0.2, 6, "x", 0.001)
    assert verdict("PAN-X", falls, 0.01).endswith(": falls (Holm-adjusted p = 0.01)")
    flat = Interval(0.6, -0.1, 1.3, 6, "x", 0.1)
    assert verdict("XNLI", flat, 0.3) == "XNLI: +0.6 points per added task (95% CI -0.1 to +1.3): no change detected"


def test_variance_shares_follow_the_design():
    by_length = study([50, 52, 54, 52, 54, 50, 52, 54, 52, 54])  # only k matters
    assert variance_shares(by_length) == pytest.approx({"chain length": 1.0, "order": 0.0, "seed": 0.0})
    by_seed = study([50] * 5 + [60] * 5)
    assert variance_shares(by_seed) == pytest.approx({"chain length": 0.0, "order": 0.0, "seed": 1.0})
    by_order = study([50, 50, 50, 60, 60] * 2)
    shares = variance_shares(by_order)
    assert shares["order"] == pytest.approx(1.0 - shares["chain length"]) and shares["seed"] == pytest.approx(0.0)


def test_order_permutation_test():
    rng = np.random.default_rng(3)
    same = correlated_outcomes(rng, 200, [0.4])[0]
    statistic, p = order_permutation_test([[Units("mean", same), Units("mean", same)]], 199, np.random.default_rng(0))
    assert statistic == 0.0 and p == 1.0
    low, high = correlated_outcomes(rng, 200, [0.2, 0.7])
    languages = [[Units("mean", low), Units("mean", high)], [Units("mean", low[::-1]), Units("mean", high[::-1])]]
    _, p = order_permutation_test(languages, 199, np.random.default_rng(0))
    assert p <= 0.01
    sentences = [[Units("f1", [[1, 1, 1]] * 50), Units("f1", [[0, 1, 1]] * 50)]]  # chunk counts permute as wholes
    statistic, p = order_permutation_test(sentences, 199, np.random.default_rng(0))
    assert statistic == pytest.approx(np.var([100.0, 0.0])) and p <= 0.01


def test_between_seed_spread_is_pooled_over_chains_run_under_several_seeds():
    from xstilts.results.statistics import seed_spread, with_seed_noise

    points = [50, 52, 55, 51, 53, 60, 62, 65, 61, 63]  # every chain is 10 points higher under seed 1
    spread, freedom = seed_spread(study(points))
    assert freedom == 5 and spread == pytest.approx(np.sqrt(50.0))  # each pair: (10 / 2)^2 * 2 = 50
    assert seed_spread(ModelScores(["a"], [()], [0], np.array([1.0]), None)) is None
    widened = with_seed_noise(np.zeros(20000), 2.0, np.random.default_rng(0))
    assert np.std(widened) == pytest.approx(2.0 * np.sqrt(2.0), rel=0.03)
