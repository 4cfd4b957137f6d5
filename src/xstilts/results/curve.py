"""The curve of the gain against k: which simple form the gains follow, what it predicts beyond the study, and the
chain length after which the next task adds less than the study could detect.

Every candidate form is `gain(k) = a x(k)` with a known shape x (x(0) = 0, so the gain at k = 0 is zero):

- linear: x(k) = k;
- logarithmic: x(k) = log(1 + k);
- saturating: x(k) = 1 - exp(-b k), for b on a small grid (the shape is chosen, the scale a estimated).

The shape is chosen on dev, never on test: for each form, leave each chain length k >= 1 out in turn, fit a on
the others (least squares on the mean gain at each k, weighted by its runs) and predict the one left out; the
form with the smallest mean squared error wins. The scale a is then estimated on test as the runs' own
least-squares fits through the origin (each lineage, a chain and its prefixes under one seed, fitted over its
k >= 1 scores), minus the baseline's share: a difference of two means over runs, so its interval is the one every
gain in the report has (training noise of the runs and of k = 0's seeds, and the test sample's, as in
`xstilts.results.statistics`). A prediction a x(k) at a chain length beyond the study scales that interval: it
holds if the chosen form holds beyond the lengths seen, which no data can check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xstilts.results import statistics as st

SATURATION_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
HORIZON = 50  # the longest chain a "flat after" search looks at


@dataclass(frozen=True)
class Form:
    name: str
    formula: str
    shape: Callable[[np.ndarray], np.ndarray]


def _saturating(rate: float) -> Form:
    return Form(f"saturating (b = {rate:g})", f"a (1 - exp(-{rate:g} k))", lambda k: 1 - np.exp(-rate * k))


FORMS: tuple[Form, ...] = (
    Form("linear", "a k", lambda k: np.asarray(k, dtype=float)),
    Form("logarithmic", "a log(1 + k)", lambda k: np.log1p(k)),
    *(_saturating(rate) for rate in SATURATION_RATES),
)


def mean_gains(models: st.ModelScores) -> dict[int, tuple[float, int]]:
    """k -> (the gain over k = 0, as the report computes it, and the runs at k), for k >= 1."""
    found = st.effects(models)
    return {k: (gain.estimate, found.runs[k]) for k, gain in found.gains.items()}


def leave_one_length_out(form: Form, gains: dict[int, tuple[float, int]]) -> float | None:
    """Mean squared error of predicting each chain length's mean gain from the others (None: under two lengths)."""
    if len(gains) < 2:
        return None
    errors = []
    for held_out in gains:
        rest = [(k, g, n) for k, (g, n) in gains.items() if k != held_out]
        x = form.shape(np.array([k for k, _, _ in rest], dtype=float))
        g = np.array([g for _, g, _ in rest])
        n = np.array([n for _, _, n in rest], dtype=float)
        scale = float((n * x * g).sum() / (n * x * x).sum())
        errors.append((scale * float(form.shape(np.array([held_out], dtype=float))[0]) - gains[held_out][0]) ** 2)
    return float(np.mean(errors))


def choose_form(dev: st.ModelScores) -> tuple[Form | None, dict[str, float]]:
    """The form with the smallest leave-one-length-out error on dev, and every form's error."""
    gains = mean_gains(dev)
    errors = {form.name: error for form in FORMS if (error := leave_one_length_out(form, gains)) is not None}
    if not errors:
        return None, {}
    best = min(errors, key=errors.get)
    return next(form for form in FORMS if form.name == best), errors


def scale(models: st.ModelScores, form: Form) -> st.Interval | None:
    """The scale a of `form` on these models with its interval: per lineage the least-squares fit through the origin
    of its scores over x(k), minus the baseline's share (x's sum over its sum of squares, times the k = 0 mean)."""
    chains, lengths = [members for _, _, members in st.lineages_of(models)], models.lengths
    baseline_members = np.flatnonzero(lengths == 0)
    if not chains or len(baseline_members) == 0:
        return None
    fits, replicates, shares = [], [], []
    for members in chains:
        x = form.shape(lengths[members].astype(float))
        weights = x / float((x * x).sum())
        fits.append(float(weights @ models.points[members]))
        if models.replicates is not None:
            replicates.append(weights @ models.replicates[members])
        shares.append(float(x.sum() / (x * x).sum()))
    runs = st.Runs(
        np.array(fits),
        np.stack(replicates) if replicates else None,
        [models.chains[m[0]][0] for m in chains],
        [models.seeds[m[0]] for m in chains],
        "lineages",
    )
    share = float(np.mean(shares))
    baseline = models.runs(baseline_members, "k = 0's seeds")
    baseline = st.Runs(
        share * baseline.values,
        None if baseline.replicates is None else share * baseline.replicates,
        baseline.clusters,
        baseline.seeds,
        baseline.description,
    )
    return st.difference(runs, baseline)


def flat_after(estimate: float, form: Form, detectable: float | None) -> int | None:
    """The smallest k >= 0 from which the next task adds less than `detectable` on the fitted curve."""
    if detectable is None:
        return None
    x = form.shape(np.arange(HORIZON + 2, dtype=float))
    increments = estimate * np.diff(x)
    below = np.flatnonzero(increments < detectable)
    return int(below[0]) if len(below) else None


def gain_curve(dev: st.ModelScores | None, test: st.ModelScores, detectable: float | None) -> dict[str, Any]:
    """The curve of one target (or average): its form chosen on dev, its scale and predictions on test."""
    longest = int(test.lengths.max()) if len(test.lengths) else 0
    if dev is None:
        return {"form": None, "why_not": "no dev scores to choose the form by (choices are never made on test)"}
    form, errors = choose_form(dev)
    if form is None:
        return {
            "form": None,
            "why_not": "fewer than three chain lengths (k = 0 and two k >= 1) on dev: no form is chosen and nothing is "
            "extrapolated",
        }
    fitted = scale(test, form)
    if fitted is None:
        return {"form": None, "why_not": "no chain and k = 0 runs on test to fit"}
    predictions = {}
    for k in (longest + 1, longest + 3):
        x = float(form.shape(np.array([k], dtype=float))[0])
        predictions[k] = _scaled(fitted, x)
    return {
        "form": form.name,
        "formula": form.formula,
        "dev_errors": errors,
        "scale": fitted.to_json(),
        "predictions": predictions,
        "detectable": detectable,
        "flat_after": flat_after(fitted.estimate, form, detectable),
    }


def _scaled(found: st.Interval, factor: float) -> dict[str, Any]:
    """The interval of factor x a (factor > 0)."""
    entry = found.to_json()
    for key in ("estimate", "lower", "upper", "se", "between_runs_sd"):
        if entry.get(key) is not None:
            entry[key] = entry[key] * factor
    return entry
