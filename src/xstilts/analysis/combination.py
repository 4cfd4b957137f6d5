"""The report's combination section: sequential chains against merges and a mixture of the same tasks.

One table per chain mode with the combination study (`xstilts.results.combination`): per target and for the
average, per task set, each arm's score, its gain over k = 0 and its differences to the best order (chosen on
dev) and to the mean over orders, each with its 95% interval; the order spread; the training cost of the model
(optimizer steps and measured seconds of every stage it is built from: a merge's are its single-task stages',
which the study trains anyway as its k = 1 prefixes, plus the merge); and the latency ratio to k = 0, measured.
The figure puts the gain of the average against the training cost, one marker per method and k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xstilts.analysis.headline import Block, interval_cell
from xstilts.results.combination import BEST_ORDER, MEAN_ORDER, SEQUENTIAL
from xstilts.terms import TEST

COLUMNS = [
    "target",
    "tasks (k)",
    "method",
    "setting (dev)",
    "runs",
    "score",
    "gain over k = 0",
    "vs best order",
    "vs mean over orders",
    "stage-steps",
    "seconds",
    "latency / k = 0",
]

Cost = tuple[int, float]  # (optimizer steps, seconds) of every stage a model is built from


def training_costs(stages: Sequence[Mapping[str, Any]], prefixes: Mapping[str, str]) -> dict[str, Cost]:
    """chain label -> the cost of its prefix's encoder: a stage's own steps and seconds plus its parent's, a merge's
    members' plus its own seconds (k = 0 costs nothing). `prefixes` maps chain labels to prefix identities."""
    records = {record["identity"]: record for record in stages}
    found: dict[str, Cost] = {}

    def cost(identity: str) -> Cost:
        record = records.get(identity)
        if record is None:
            return 0, 0.0
        if identity not in found:
            if record.get("merge"):
                members = [cost(m["identity"]) for m in record["merge"]["members"]]
                own: Cost = (0, float(record.get("wall_seconds", 0.0)))
                parents = (sum(m[0] for m in members), sum(m[1] for m in members))
            else:
                own = (int(record.get("steps", 0)), float(record.get("train_seconds", 0.0)))
                parents = cost(record.get("parent_identity", ""))
            found[identity] = (own[0] + parents[0], own[1] + parents[1])
        return found[identity]

    return {label: cost(identity) for label, identity in prefixes.items()}


def combination_blocks(
    effects: Mapping[str, Any], costs: Mapping[str, Cost], latency: Mapping[str, Any] | None
) -> list[Block]:
    blocks = []
    for mode, splits in sorted(effects.items()):
        found = splits.get(TEST, {}).get("combination")
        if not found:
            continue
        timed = _latency_index(latency, mode)
        table = [COLUMNS]
        for name, sets in found.items():
            for entry in sets:
                for arm in entry["arms"]:
                    table.append(_row(name, entry, arm, costs, timed))
        lines = _notes(found)
        blocks.append(Block(f"Other ways to combine the same tasks (test, {mode} chains)", table, plots=("cost",)))
        blocks.append(Block(f"How the combinations were chosen and what they cost ({mode} chains)", lines))
    return blocks


def cost_points(
    effects: Mapping[str, Any], costs: Mapping[str, Cost], lengths: Mapping[tuple[str, str], int]
) -> list[dict[str, Any]]:
    """The figure's points: per method and k, the gain of the average (or the only target) and the mean cost of
    its models; the sequential study's own k = 1..K (every order) as the `sequential` points. `lengths` maps
    (mode, chain label) of the study's own runs to their chain length."""
    points = []
    for mode, splits in sorted(effects.items()):
        found = splits.get(TEST, {})
        if not found.get("combination"):
            continue
        name = found.get("average") or sorted(found["targets"])[0]
        by_k: dict[int, list[Cost]] = {}
        for (row_mode, label), k in lengths.items():
            if row_mode == mode and label in costs:
                by_k.setdefault(k, []).append(costs[label])
        for k, gain in sorted((int(k), v) for k, v in found["targets"][name]["gains"].items()):
            if k in by_k:
                points.append({"method": SEQUENTIAL, "k": k, "steps": _mean_steps(by_k[k]), "gain": gain})
        for entry in found["combination"].get(name, []):
            for arm in entry["arms"]:
                if arm["method"] in (BEST_ORDER, MEAN_ORDER):
                    continue
                steps = _mean_steps([costs[label] for label in arm["labels"] if label in costs])
                points.append({"method": arm["method"], "k": entry["k"], "steps": steps, "gain": arm["gain"]})
    return points


def _mean_steps(costs: Sequence[Cost]) -> float | None:
    return float(np.mean([c[0] for c in costs])) if costs else None


def _row(
    name: str, entry: Mapping[str, Any], arm: Mapping[str, Any], costs: Mapping[str, Cost], timed: LatencyIndex
) -> list[str]:
    known = [costs[label] for label in arm["labels"] if label in costs]
    steps = f"{np.mean([c[0] for c in known]):.0f}" if known else "-"
    seconds = f"{np.mean([c[1] for c in known]):.1f}" if known else "-"
    return [
        name,
        f"{'+'.join(entry['tasks'])} ({entry['k']})",
        arm["method"],
        arm["setting"] or "-",
        str(arm["runs"]),
        interval_cell(arm["score"]),
        interval_cell(arm["gain"], signed=True),
        interval_cell(arm["vs_best_order"], signed=True) if arm["method"] != BEST_ORDER else "0",
        interval_cell(arm["vs_mean_order"], signed=True) if arm["method"] != MEAN_ORDER else "0",
        steps,
        seconds,
        _latency_cell(name, arm, timed),
    ]


LatencyIndex = dict[str, dict[str, tuple[float, float, float]]]  # target -> chain label or method -> ratio, CI


def _latency_index(latency: Mapping[str, Any] | None, mode: str) -> LatencyIndex:
    """Per target, the ratio to k = 0 (and its interval) of each timed model, by chain label and, for the
    combination study's models (one timed per method), by method; of the first input shape measured."""
    index: LatencyIndex = {}
    for group in (latency or {}).get("groups", []):
        if group["mode"] != mode:
            continue
        found = index.setdefault(group["target"], {})
        for model in group["models"]:
            if not model["name"].endswith("(twin)"):
                value = (model["ratio_to_k0"], *model["ratio_ci95"])
                found.setdefault(model["chain_label"], value)
                if model.get("combination"):
                    found.setdefault(model["combination"], value)
    return index


def _latency_cell(name: str, arm: Mapping[str, Any], timed: LatencyIndex) -> str:
    """The arm's latency ratio: its own timed models (a sequential arm), its method's timed model (every merge of a
    method has one architecture); for an average, the mean over the targets timed."""
    keys = arm["labels"] if arm["method"] in (BEST_ORDER, MEAN_ORDER) else [arm["method"]]
    targets = [timed[name]] if name in timed else list(timed.values())
    values = [found[key] for found in targets for key in keys if key in found]
    if not values:
        return "-"
    ratio, low, high = (float(np.mean(column)) for column in zip(*values))
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def _notes(found: Mapping[str, Any]) -> list[str]:
    """What the table rests on: each merge's grid and the setting dev chose, the order spread, what a row means."""
    lines = [
        f"'{BEST_ORDER}' is the order of the set with the best dev score; '{MEAN_ORDER}' averages every order the "
        "study ran. A merge's setting is the grid point with the best dev score of the target (a target without dev: "
        "the dev average). Every difference pairs the arms on the same test items and holds both arms' training "
        "noise (their seeds).",
        "Training cost counts every stage a model is built from: a merge's single-task stages are the study's own "
        "k = 1 prefixes, so a merge adds only its own seconds (no optimizer steps) to a study that runs them.",
    ]
    for name, sets in found.items():
        for entry in sets:
            label = f"{name}, {'+'.join(entry['tasks'])}"
            for method, choice in entry["choices"].items():
                if choice["why_not"]:
                    lines.append(f"{label}: {method} not chosen: {choice['why_not']}")
                elif len(choice["grid"]) > 1:
                    dev = ", ".join(f"{g}: {d:.1f}" for g, d in zip(choice["grid"], choice["dev"] or []))
                    lines.append(f"{label}: {method} chose {choice['chosen']} on dev ({dev})")
            spread = entry.get("order_spread")
            if spread is not None:
                lines.append(f"{label}: the {entry['orders']} orders' mean scores differ by sd {spread:.1f} points")
            elif entry["orders"] == 1:
                lines.append(f"{label}: one order ran, so order sensitivity is not measured")
    return lines
