"""The statistics behind every interval and verdict, on synthetic results whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from xstilts.metrics.units import Units, item_keys
from xstilts.results import statistics as st
from xstilts.results.resampling import item_replicates, paired_replicates
from xstilts.results.statistics import (
    TEST_SAMPLE_ONLY,
    WITH_TRAINING,
    Interval,
    ModelScores,
    Runs,
    difference,
    effects,
    format_p,
    holm,
    mean_of,
    order_tests,
    p_value,
    variance_shares,
    verdict,
)


def correlated_outcomes(rng, n, rates):
    """Per-example outcomes of several models on the same examples (a shared difficulty makes them correlated)."""
    difficulty = rng.random(n)
    return [(rng.random(n) < rate + 0.5 * difficulty).astype(float) for rate in rates]


def test_paired_resampling_draws_the_same_units_for_every_model():
    rng = np.random.default_rng(2)
    a, b = correlated_outcomes(rng, 50, [0.3, 0.5])
    both = paired_replicates([Units("mean", a), Units("mean", b)], 300, np.random.default_rng(7))
    difference_units = paired_replicates([Units("mean", b - a)], 300, np.random.default_rng(7))
    np.testing.assert_allclose(both[1] - both[0], difference_units[0], atol=1e-9)
    same = paired_replicates([Units("mean", a), Units("mean", a)], 300, np.random.default_rng(7))
    assert np.array_equal(same[0], same[1]), "one model twice: identical draws, a gain of exactly 0"
    counts = Units("f1", [[1, 2, 1], [0, 1, 2], [2, 2, 2]])
    assert paired_replicates([counts], 200, np.random.default_rng(0)).shape == (1, 200)
    with pytest.raises(ValueError, match="same units"):
        paired_replicates([Units("mean", a), Units("mean", a[:10])], 10, np.random.default_rng(0))


def test_a_drawn_parallel_item_brings_its_version_in_every_language():
    """Identical outcomes in 15 languages: the average over languages varies as much as one language does when
    items are drawn whole, and sqrt(15) times less when the languages are (wrongly) drawn apart."""
    outcomes = (np.random.default_rng(0).random(400) < 0.6).astype(float)
    keys = [f"item{i}" for i in range(400)]
    languages = [f"l{i}" for i in range(15)]
    parallel = item_replicates({lang: [Units("mean", outcomes, keys)] for lang in languages}, 4000)
    apart = item_replicates({lang: [Units("mean", outcomes)] for lang in languages}, 4000)
    one = np.std(parallel[languages[0]][0])
    assert np.std(np.mean([parallel[lang][0] for lang in languages], axis=0)) == pytest.approx(one, rel=1e-9)
    ratio = one / np.std(np.mean([apart[lang][0] for lang in languages], axis=0))
    assert ratio == pytest.approx(np.sqrt(15), rel=0.1)


def test_items_missing_in_some_languages_are_drawn_where_they_exist():
    """MLQA-like: each question exists in a subset of the languages; a language's score is over its own items."""
    outcomes = (np.random.default_rng(0).random(40) < 0.6).astype(float)
    en = Units("mean", outcomes, [f"q{i}" for i in range(40)])
    de = Units("mean", outcomes[::2], [f"q{i}" for i in range(0, 40, 2)])  # every other question, answered alike
    found = item_replicates({"en": [en], "de": [de]}, 3000, np.random.default_rng(1))
    assert found["en"].mean() == pytest.approx(en.score(), abs=1.0) and found["de"].mean() == pytest.approx(
        de.score(), abs=1.0
    )
    assert np.std(found["de"]) > np.std(found["en"]), "de's score is a mean over fewer items: it varies more"
    assert np.corrcoef(found["en"][0], found["de"][0])[0, 1] > 0.5, "a drawn question counts in both languages"
    with pytest.raises(ValueError, match="different items"):
        item_replicates({"en": [en, Units("mean", en.values, [f"x{i}" for i in range(40)])]}, 10)


def test_item_keys_by_line_or_id_and_refused_when_ids_repeat():
    examples = [{"id": "q1"}, {"id": "q2"}]
    assert item_keys("line", examples) == ["0", "1"] and item_keys("id", examples) == ["q1", "q2"]
    assert item_keys(None, examples) is None
    assert item_keys("id", [{"id": "q1"}, {"id": "q1"}]) is None, "TyDiQA-style repeated ids cannot match items"


def test_parallel_average_gain_interval_matches_its_true_spread():
    """Issue 22's first defect, reproduced: 15 parallel languages, an item-level gain shared by an item's
    translations. The sd of the average gain over many test samples is the truth; the bootstrap with item keys
    reproduces it, the independent-language bootstrap is about three times too narrow."""
    rng = np.random.default_rng(3)
    languages, items = 15, 300
    true_gains, parallel_sd, independent_sd = [], [], []
    for _ in range(60):
        gain = rng.normal(0.0, 0.3, size=items)  # item-level gain, the same in every language
        base = rng.uniform(0.3, 0.7, size=items)
        latent = rng.random((languages, items))  # one uniform per translation: base and gain share the draw
        shared = rng.random(items)
        draw = 0.8 * shared[None] + 0.2 * latent  # strongly correlated across languages
        before = (draw < base[None]).astype(float)
        after = (draw < np.clip(base + gain, 0, 1)[None]).astype(float)
        true_gains.append(100 * (after.mean() - before.mean()))
        keys = [str(i) for i in range(items)]
        for store, with_keys in ((parallel_sd, True), (independent_sd, False)):
            units = {
                f"l{lang}": [
                    Units("mean", before[lang], keys if with_keys else None),
                    Units("mean", after[lang], keys if with_keys else None),
                ]
                for lang in range(languages)
            }
            found = item_replicates(units, 400, np.random.default_rng(len(store)))
            average = np.mean([found[lang][1] - found[lang][0] for lang in units], axis=0)
            store.append(np.std(average))
    truth = np.std(true_gains)
    assert np.mean(parallel_sd) == pytest.approx(truth, rel=0.3)
    assert np.mean(independent_sd) < truth / 2, "drawing the languages apart understates the spread"


def test_holm_on_known_p_values():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == [] and holm([0.5]) == [0.5] and holm([0.9, 0.8]) == [1.0, 1.0]


def test_tiny_p_values_never_print_as_zero_or_one():
    assert p_value(60.0, 1.0, None) > 0, "z = 60 underflows to 0 in double precision; it is floored"
    assert p_value(0.0, 0.0, None) == 1.0
    assert format_p(0.0) == "< 1e-299" and format_p(3e-7) == "< 1e-6" and format_p(1e-40) == "< 1e-39"
    assert format_p(0.0123) == "0.012" and format_p(0.5) == "0.50"


def study(points, replicates=None, seeds=(0, 1)):
    """Seeds x two orders of (a, b): k = 0..2, labels as a study writes them."""
    chains, seed_list = [], []
    for seed in seeds:
        chains += [(), ("a",), ("a", "b"), ("b",), ("b", "a")]
        seed_list += [seed] * 5
    labels = [f"k{len(c)}-{'+'.join(c) or 'pretrained'}-seed{s}" for c, s in zip(chains, seed_list)]
    return ModelScores(labels, chains, seed_list, np.asarray(points, dtype=float), replicates)


def test_gains_are_the_mean_at_k_against_k0s_seeds_and_steps_pair_each_chain_with_its_prefix():
    points = [50, 52, 55, 51, 53, 60, 62, 65, 61, 63]  # seed 1 is 10 points higher everywhere
    result = effects(study(points))
    assert result.gains[1].estimate == pytest.approx(1.5) and result.gains[2].estimate == pytest.approx(4.0)
    assert result.steps[2].estimate == pytest.approx(2.5)  # (55 - 52 + 53 - 51) / 2, both seeds alike
    assert result.runs == {0: 2, 1: 4, 2: 4} and result.gains[1].n == 6
    assert result.further.estimate == pytest.approx(2.5), "with K = 2 each further task is the step k = 2 vs 1"
    assert result.gains[1].includes == WITH_TRAINING and "no per-item units" in result.gains[1].leaves_out, (
        "without units the test sample's noise is unknown: no verdict"
    )
    assert result.gains[1].spread == pytest.approx(np.std([52, 51, 62, 61], ddof=1))
    # The training variance of a mean over runs comes from the spread of its clusters (here: first tasks).
    runs = Runs(np.array([52.0, 51, 62, 61]), None, ["a", "b", "a", "b"], [0, 0, 1, 1])
    found = mean_of(runs)
    assert found.estimate == pytest.approx(56.5) and found.df == pytest.approx(1)
    assert found.se == pytest.approx(np.std([57.0, 56.0], ddof=1) / np.sqrt(2))


def test_one_run_or_one_baseline_run_leaves_training_noise_out_and_says_so():
    rng = np.random.default_rng(0)
    outcomes = correlated_outcomes(rng, 200, [0.3, 0.4])
    replicates = paired_replicates([Units("mean", o) for o in outcomes], 500, rng)
    models = ModelScores(["k0", "k1"], [(), ("a",)], [0, 0], np.array([30.0, 40.0]), replicates)
    gain = effects(models).gains[1]
    assert gain.has_interval and gain.includes == TEST_SAMPLE_ONLY and not gain.judged
    assert "no verdict (test sample only)" in verdict("t", gain, 0.001, None, None)
    no_units = effects(ModelScores(["k0", "k1"], [(), ("a",)], [0, 0], np.array([50.0, 51.0]), None))
    assert not no_units.gains[1].has_interval and no_units.gains[1].n == 2
    # Three chains, one k = 0 run: the chains' spread is measured, k = 0's seed noise is not.
    three = Runs(np.array([40.0, 42, 41]), None, ["a", "b", "c"], [0, 0, 0])
    baseline = Runs(np.array([39.0]), None, [()], [0], "k = 0's seeds")
    partial = difference(three, baseline)
    assert partial.includes == WITH_TRAINING and "k = 0's seeds" in partial.leaves_out and not partial.judged


def test_runs_that_agree_exactly_give_a_test_sample_interval_with_normal_quantiles():
    """Tiny models often predict one class under every seed: the arms' run-level spread is then exactly zero, the
    Satterthwaite degrees of freedom go to infinity (df None: the normal quantile), and the interval is the
    paired test sample's, still judged (the training noise was estimated, at zero)."""
    rng = np.random.default_rng(1)
    outcomes = correlated_outcomes(rng, 60, [0.2, 0.5])
    replicates = paired_replicates([Units("mean", o) for o in outcomes], 400, rng)
    same = 100 * outcomes[1].mean()
    runs = Runs(np.full(4, same), np.repeat(replicates[1:2], 4, axis=0), ["a", "b", "a", "b"], [0, 0, 1, 1])
    base = 100 * outcomes[0].mean()
    baseline = Runs(np.full(3, base), np.repeat(replicates[0:1], 3, axis=0), [(), (), ()], [0, 1, 2])
    gain = difference(runs, baseline)
    assert gain.df is None and gain.judged and gain.n == 7
    assert gain.se == pytest.approx(np.std(replicates[1] - replicates[0], ddof=1))
    assert gain.upper - gain.estimate == pytest.approx(1.959964 * gain.se, rel=1e-5)
    # Nothing differs at all (every model predicts the same): a zero gain with p = 1, never a call.
    flat = Runs(np.full(3, base), np.repeat(replicates[0:1], 3, axis=0), [(), (), ()], [0, 1, 2])
    none = difference(flat, baseline)
    assert none.estimate == 0 and none.se == 0 and none.p_value == 1.0 and not none.excludes_zero()


def _grid_coverage(arms: list[tuple[float, int]], shared: float, draws: int, rng) -> float:
    """How often `interval` covers the truth when the estimate's variance is known to be sum(arms) + shared: each
    arm's mean square is drawn as its true value x chi-square(df) / df, the shared test-sample variance is known
    (a bootstrap measures it precisely) and the estimate's error is normal."""
    covered = 0
    for _ in range(draws):
        terms = [st.RunVariance(df, value * rng.chisquare(df) / df, 0.0, None) for value, df in arms]
        error = rng.normal(0.0, np.sqrt(sum(value for value, _ in arms) + shared))
        half = np.sqrt(shared / 2)  # two replicates whose variance (ddof 1) is `shared`
        found = st.interval(error, terms, np.array([-half, half]), 2)
        covered += found.lower <= 0.0 <= found.upper
    return covered / draws


def test_degrees_of_freedom_hold_coverage_where_few_orders_measure_the_training_noise(monkeypatch):
    """A score with three orders (one mean square, 2 degrees of freedom) plus the test sample's known variance,
    and a gain (two such arms): the plug-in Satterthwaite degrees of freedom come out large exactly when the mean
    square came out small, and cover about 92% where the training noise is 80-90% of the variance; at each mean
    square's 70% upper bound the interval holds at every share (and a gain's two arms stay near nominal)."""
    rng = np.random.default_rng(3)
    draws = 3000
    one_arm = {w: _grid_coverage([(w, 2)], 1 - w, draws, rng) for w in (0.8, 0.9)}
    two_arms = {w: _grid_coverage([(w / 2, 2), (w / 2, 2)], 1 - w, draws, rng) for w in (0.95,)}
    assert all(0.935 <= c <= 0.97 for c in one_arm.values()), one_arm
    assert all(0.935 <= c <= 0.975 for c in two_arms.values()), two_arms
    monkeypatch.setattr(st, "DF_BOUND", float(chi2.cdf(2, 2)))  # each mean square at its own value: the plug-in
    plug_in = [_grid_coverage([(w, 2)], 1 - w, draws, rng) for w in (0.8, 0.9)]
    assert np.mean(plug_in) < 0.935, plug_in


def test_first_task_and_each_further_task_are_answered_apart():
    """A +3 jump from k = 0 to 1 and nothing after: the old slope over k = 0..3 read about +0.9 per task,
    "grows"; the verdict now says the first task helps and further tasks add nothing detectable."""
    rng = np.random.default_rng(4)
    chains, seeds, points = [], [], []
    for seed in range(3):
        chains.append(())
        seeds.append(seed)
        points.append(50 + rng.normal(0, 0.2))
        for order in (("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")):
            for k in range(1, 4):
                chains.append(order[:k])
                seeds.append(seed)
                points.append(53 + rng.normal(0, 0.2))
    labels = [f"{'+'.join(c)}-{s}" for c, s in zip(chains, seeds)]
    replicates = np.array(points)[:, None] + rng.normal(0, 0.05, (len(points), 200))  # a large test set
    result = effects(ModelScores(labels, chains, seeds, np.array(points), replicates))
    first, further = result.first, result.further
    assert first.estimate == pytest.approx(3.0, abs=0.3) and first.judged and first.lower > 0
    assert abs(further.estimate) < 0.3 and further.lower < 0 < further.upper
    line = verdict("xnli", first, 1e-4, further, 0.7)
    assert "first task +3." in line and ": helps" in line and "no change detected" in line
    assert "Holm-adjusted p < 1e-3" in line


def test_verdict_words():
    grows = Interval(0.6, 0.2, 1.0, 6, "t", 0.001, se=0.2, df=5, includes=WITH_TRAINING)
    assert verdict("XNLI", None, None, grows, 0.004).endswith("per task: adds (Holm-adjusted p = 0.004)")
    assert "no change detected" in verdict("XNLI", None, None, grows, 0.2), "Holm decides, not the raw interval"
    falls = Interval(-0.6, -1.0, -0.2, 6, "t", 0.001, se=0.2, df=5, includes=WITH_TRAINING)
    assert ": hurts (Holm-adjusted p = 0.01)" in verdict("PAN-X", falls, 0.01, None, None)


def test_variance_shares_and_order_tests_only_where_the_design_identifies_them():
    by_length = study([50, 52, 54, 52, 54, 50, 52, 54, 52, 54])  # only k matters
    assert variance_shares(by_length) == pytest.approx({"chain length": 1.0, "order": 0.0, "seed": 0.0})
    by_order = study([50, 50, 50, 60, 60] * 2)
    shares = variance_shares(by_order)
    assert shares["order"] == pytest.approx(1.0 - shares["chain length"]) and shares["seed"] == pytest.approx(0.0)
    one_seed = study([50, 52, 54, 51, 55], seeds=(0,))
    assert "one seed per chain" in variance_shares(one_seed), "pure noise must not read as '87% order'"
    assert order_tests(one_seed) == (
        [],
        "not identified: one seed per order, so an order difference cannot be told from seed noise",
    )
    # Two orders of the same tasks, three seeds each: an F test between orders against the seeds' spread.
    rng = np.random.default_rng(5)
    chains = [("a", "b")] * 3 + [("b", "a")] * 3
    same = ModelScores([str(i) for i in range(6)], chains, [0, 1, 2] * 2, 60 + rng.normal(0, 1, 6), None)
    (test,), reason = order_tests(same)
    assert reason is None and test["runs"] == [3, 3] and test["p_value"] > 0.01
    apart = ModelScores([str(i) for i in range(6)], chains, [0, 1, 2] * 2, np.array([60, 61, 60.5, 70, 71, 70.5]), None)
    assert order_tests(apart)[0][0]["p_value"] < 0.001
    rotations = study([50, 52, 54, 51, 55] * 2)
    assert order_tests(
        ModelScores(rotations.labels[:3], rotations.chains[:3], rotations.seeds[:3], rotations.points[:3], None)
    )[1].startswith("not identified: no two chains")
