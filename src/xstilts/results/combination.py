"""The combination study: is training k tasks one after another the best way to combine them?

For each task set of the study, on the same targets and test items, the arms are:

- sequential, best order: the order of the set with the best dev score (chosen on dev, reported on test);
- sequential, mean over orders: every order the study ran of the set (the expected chain when the order is not
  tuned), and the spread between the orders' means (order sensitivity; it holds seed noise too);
- each merge method (`xstilts.train.merging`) at the grid point with the best dev score;
- the multi-task mixture of the set (one stage).

Each arm's runs are its seeds (and orders); its score, its gain over k = 0 and its differences to the two
sequential arms are differences of means over independent runs, paired over test items: the intervals every
gain of the report has (`xstilts.results.statistics`, training noise of both arms and the test sample's). The
choices (order, merge setting) use the target's own dev scores, or for a target without dev (TyDiQA-GoldP) the
mean over the targets that have one: never test. A merge's grid point is chosen per target, as the report
chooses a model per target.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xstilts.results import statistics as st
from xstilts.terms import MIXTURE

BEST_ORDER = "sequential (best order on dev)"
MEAN_ORDER = "sequential (mean over orders)"
SEQUENTIAL = "sequential"


def combination_key(combination: Mapping[str, Any]) -> tuple[str, float | None, float | None]:
    return combination["method"], combination.get("weight"), combination.get("density")


def describe_setting(combination: Mapping[str, Any]) -> str:
    """ "lambda 0.5, density 0.2": a merge's grid point; a mixture's sampling."""
    if combination["method"] == MIXTURE:
        return "one stage, proportional sampling"
    parts = []
    if combination.get("weight") is not None:
        parts.append(f"lambda {combination['weight']:g}")
    if combination.get("density") is not None:
        parts.append(f"density {combination['density']:g}")
    return ", ".join(parts)


def analyse_target(
    test: st.ModelScores,
    combined_test: st.ModelScores,
    chooser: st.ModelScores | None,
    combined_chooser: st.ModelScores | None,
    combinations: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every task set's comparison for one target (or the average). `chooser` and `combined_chooser` are the dev
    scores the choices are made on (None: no dev, nothing is chosen); `combinations` maps a combined model's
    label to its {"method", "weight", "density"}."""
    found = []
    for tasks in sorted({tuple(sorted(c)) for c in combined_test.chains}, key=lambda t: (len(t), t)):
        found.append(_analyse_set(tasks, test, combined_test, chooser, combined_chooser, combinations))
    return found


def _analyse_set(
    tasks: tuple[str, ...],
    test: st.ModelScores,
    combined_test: st.ModelScores,
    chooser: st.ModelScores | None,
    combined_chooser: st.ModelScores | None,
    combinations: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    k = len(tasks)
    baseline = test.runs(np.flatnonzero(test.lengths == 0), "k = 0's seeds")
    orders: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, chain in enumerate(test.chains):
        if len(chain) == k and tuple(sorted(chain)) == tasks:
            orders[chain].append(index)
    arms: list[tuple[dict[str, Any], st.Runs]] = []
    best_runs = mean_runs = None
    choice_note = None
    if orders:
        every = [i for members in orders.values() for i in members]
        mean_runs = test.runs(every, f"orders of {'+'.join(tasks)}")
        best, choice_note = _choose(chooser, {order: [test.labels[i] for i in m] for order, m in orders.items()})
        if best is not None:
            best_runs = test.runs(orders[best], "the best order's seeds")
            arms.append(
                (_arm(BEST_ORDER, " → ".join(best), best_runs, [test.labels[i] for i in orders[best]]), best_runs)
            )
        arms.append(
            (
                _arm(
                    MEAN_ORDER,
                    f"{len(orders)} order{'s' * (len(orders) != 1)}",
                    mean_runs,
                    [test.labels[i] for i in every],
                ),
                mean_runs,
            )
        )
    grid: dict[tuple, list[int]] = defaultdict(list)
    for index, (label, chain) in enumerate(zip(combined_test.labels, combined_test.chains)):
        if tuple(sorted(chain)) == tasks:
            grid[combination_key(combinations[label])].append(index)
    by_method: dict[str, dict[tuple, list[int]]] = defaultdict(dict)
    for key, members in grid.items():
        by_method[key[0]][key] = members
    choices = {}
    for method, points in by_method.items():
        labelled = {key: [combined_test.labels[i] for i in members] for key, members in points.items()}
        chosen, note = _choose(combined_chooser, labelled)
        choices[method] = {
            "grid": [describe_setting(combinations[labels[0]]) for labels in labelled.values()],
            "dev": _dev_means(combined_chooser, labelled),
            "chosen": None if chosen is None else describe_setting(combinations[labelled[chosen][0]]),
            "why_not": note,
        }
        if chosen is not None:
            runs = combined_test.runs(points[chosen], f"{method} seeds")
            arms.append(
                (_arm(method, describe_setting(combinations[labelled[chosen][0]]), runs, labelled[chosen]), runs)
            )
    for arm, runs in arms:
        arm["gain"] = st.difference(runs, baseline).to_json() if len(baseline) else None
        arm["vs_best_order"] = st.difference(runs, best_runs).to_json() if best_runs is not None else None
        arm["vs_mean_order"] = st.difference(runs, mean_runs).to_json() if mean_runs is not None else None
    return {
        "tasks": list(tasks),
        "k": k,
        "orders": len(orders),
        "order_spread": _order_spread(test, orders),
        "arms": [arm for arm, _ in arms],
        "choices": choices,
        "order_choice": choice_note,
    }


def _arm(method: str, setting: str, runs: st.Runs, labels: Sequence[str]) -> dict[str, Any]:
    return {
        "method": method,
        "setting": setting,
        "runs": len(runs),
        "labels": list(labels),
        "score": st.mean_of(runs).to_json(),
    }


def _choose(chooser: st.ModelScores | None, candidates: Mapping[Any, Sequence[str]]) -> tuple[Any, str | None]:
    """The candidate (a key of `candidates`: its models' labels) with the best mean dev score; (None, why) when no
    dev scores cover it. A single candidate needs no choice."""
    if len(candidates) == 1:
        return next(iter(candidates)), None
    means = _dev_means(chooser, candidates)
    if means is None:
        return None, "no dev scores to choose by (choices are never made on test)"
    keys = list(candidates)
    return keys[int(np.argmax(means))], None


def _dev_means(chooser: st.ModelScores | None, candidates: Mapping[Any, Sequence[str]]) -> list[float] | None:
    if chooser is None:
        return None
    means = []
    for labels in candidates.values():
        points = [chooser.points[chooser.labels.index(label)] for label in labels if label in chooser.labels]
        if not points:
            return None
        means.append(float(np.mean(points)))
    return means


def _order_spread(test: st.ModelScores, orders: Mapping[tuple[str, ...], list[int]]) -> float | None:
    """The standard deviation between the orders' mean scores (None with fewer than two orders)."""
    if len(orders) < 2:
        return None
    return float(np.std([test.points[members].mean() for members in orders.values()], ddof=1))
