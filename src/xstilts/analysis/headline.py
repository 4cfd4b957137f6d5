"""The report's first section: the answer to the study's question, with its uncertainty.

One table per chain mode (test split): a row per target and for the average, the score at k = 0, the gain at
each k over k = 0 with its 95% interval, the change per added task and the verdict. Then the verdict lines,
the best chain length where one beats k = 0 beyond its interval, the controls, the latency verdict (or how
to measure it), where the variance comes from, order tests, and the sample sizes. The numbers come from
`xstilts.results.effects`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xstilts.results.statistics import ALPHA, CONFIDENCE
from xstilts.tasks.registry import TEST

Table = list[list[str]]


@dataclass
class Headline:
    """What the report prints first, in order: per mode the answer table, then blocks of lines or tables."""

    tables: list[tuple[str, Table]] = field(default_factory=list)  # the answer, one table per chain mode
    blocks: list[tuple[str, Table | list[str]]] = field(default_factory=list)  # (heading, table or bullet lines)
    notes: list[str] = field(default_factory=list)  # paragraphs under the first table


def interval_cell(entry: Mapping[str, Any] | None, signed: bool = False) -> str:
    """ "+1.2 [+0.3, +2.0]", or "+1.2 (n = 1)" where there is no interval to give."""
    if not entry:
        return "-"
    form = "{:+.1f}" if signed else "{:.1f}"
    text = form.format(entry["estimate"])
    if entry.get("lower") is None or entry.get("upper") is None:
        return f"{text} (n = {entry.get('n', 1)})"
    return f"{text} [{form.format(entry['lower'])}, {form.format(entry['upper'])}]"


def _short_verdict(target: Mapping[str, Any]) -> str:
    line = target.get("verdict", "")
    for word in ("grows", "falls", "no change detected"):
        if f": {word}" in line:
            return word
    return "-"


def build_headline(
    effects: Mapping[str, Any],
    best_lengths: Mapping[str, Mapping[str, Any]] | None = None,
    latency_verdicts: Mapping[str, list[str]] | None = None,
    run_hint: str = "RUN_DIR",
) -> Headline:
    """The headline over every chain mode's test effects."""
    headline = Headline()
    modes = sorted(m for m in effects if TEST in effects[m])
    comparisons = sum(effects[m][TEST]["comparisons"] for m in modes)
    later: list[tuple[str, Table | list[str]]] = []
    for mode in modes:
        found = effects[mode][TEST]
        suffix = f" ({mode} chains)" if len(modes) > 1 else ""
        title = "Transfer against chain length (test" + (f", {mode} chains)" if len(modes) > 1 else ")")
        headline.tables.append((title, _table(found)))
        headline.blocks.append((f"Verdicts{suffix}", [found["targets"][name]["verdict"] for name in _ordered(found)]))
        steps = _steps_table(found)
        if steps:
            headline.blocks.append((f"Gain of each added task: k against k - 1 (test){suffix}", steps))
        if best_lengths is not None:
            best = _best_lines(found, best_lengths.get(mode, {}))
            headline.blocks.append((f"Best chain length (chosen on dev, reported on test){suffix}", best))
        if found.get("controls"):
            headline.blocks.append((f"Controls (known answers){suffix}", _control_lines(found["controls"])))
        shares = _variance_table(found)
        if shares:
            later.append((f"Where the variance between runs comes from (test){suffix}", shares))
        if found.get("order_tests"):
            later.append((f"Does the order of the same tasks matter? (permutation tests){suffix}", _order_lines(found)))
    latency = []
    for mode in modes or ["full"]:
        lines = (latency_verdicts or {}).get(mode)
        latency += (
            lines
            if lines
            else [
                f"{mode}: latency was not measured; `xstilts latency {run_hint}` measures it (RUN_DIR: this run's directory)"
            ]
        )
    headline.blocks.append(("Latency", latency))
    headline.blocks.append(("Sample sizes", _sample_lines(effects, modes)))
    headline.blocks += later
    headline.notes.append(
        f"Each cell: the mean over the runs (orders x seeds) of that length, and its {CONFIDENCE:.0%} interval from a "
        "paired bootstrap over the evaluation examples (each gain resamples the same examples for both models; with "
        'several runs, runs first, then examples). "(n = 1)": one run and no per-example units, so no interval. '
        f"A change is called only when its Holm-adjusted p < {ALPHA} over the {comparisons} comparisons this report "
        "makes (every slope and every gain over k = 0)."
    )
    single = [m for m in modes for t in effects[m][TEST]["targets"].values() if any(n == 1 for n in t["runs"].values())]
    if single:
        headline.notes.append(
            "With one run per chain length (one order, one seed) an interval covers the test sample only, not the "
            "randomness of training; run several seeds (study.seeds) and an A/A control (controls.a_a) to see how large "
            "that is."
        )
    return headline


def _ordered(found: Mapping[str, Any]) -> list[str]:
    average = found.get("average")
    return sorted(name for name in found["targets"] if name != average) + ([average] if average else [])


def _table(found: Mapping[str, Any]) -> Table:
    """Score at k = 0 and the gain at each k; a study without k = 0 shows the score at each k instead."""
    targets = found["targets"]
    with_baseline = any(t["baseline"] for t in targets.values())
    lengths = sorted({int(k) for t in targets.values() for k in (t["gains"] if with_baseline else t["scores"])})
    columns = ["k = 0", *(f"gain at k = {k}" for k in lengths)] if with_baseline else [f"k = {k}" for k in lengths]
    rows = []
    for name in _ordered(found):
        target = targets[name]
        if with_baseline:
            gains = {int(k): v for k, v in target["gains"].items()}
            cells = [interval_cell(target["baseline"]), *(interval_cell(gains.get(k), signed=True) for k in lengths)]
        else:
            scores = {int(k): v for k, v in target["scores"].items()}
            cells = [interval_cell(scores.get(k)) for k in lengths]
        slope = interval_cell(target["slope"], signed=True) if target["slope"] else "-"
        rows.append([name, *cells, slope, _short_verdict(target)])
    return [["target", *columns, "per added task", "verdict"], *rows]


def _steps_table(found: Mapping[str, Any]) -> Table:
    """Diminishing returns: each chain against its own prefix one task shorter, paired, averaged over runs."""
    lengths = sorted({int(k) for t in found["targets"].values() for k in t["steps"]})
    if len(lengths) < 2:  # at k = 1 the step is the gain over k = 0, already shown
        return []
    rows = []
    for name in _ordered(found):
        steps = {int(k): v for k, v in found["targets"][name]["steps"].items()}
        rows.append([name, *(interval_cell(steps.get(k), signed=True) for k in lengths)])
    return [["target", *(f"k = {k} vs {k - 1}" for k in lengths)], *rows]


def _best_lines(found: Mapping[str, Any], chosen: Mapping[str, Any]) -> list[str]:
    """The dev-chosen k per target, named only when its test gain beats k = 0 beyond its interval (Holm)."""
    lines = []
    for name in _ordered(found):
        k = chosen.get(name)
        gains = {int(key): v for key, v in found["targets"][name]["gains"].items()}
        if k is None or int(k) == 0 or int(k) not in gains:
            lines.append(f"{name}: none: dev chooses k = 0" if k == 0 else f"{name}: no dev choice")
            continue
        gain = gains[int(k)]
        above_zero = gain.get("lower") is not None and gain["lower"] > 0
        holm_p = gain.get("holm_p") or 1
        cell = interval_cell(gain, signed=True)
        if above_zero and holm_p < ALPHA:
            lines.append(f"{name}: k = {k} (test gain {cell})")
        elif above_zero:  # the unadjusted interval excludes zero, the report's multiple-comparison rule does not
            lines.append(
                f"{name}: none beats k = 0 after Holm's correction over the report's comparisons "
                f"(dev chooses k = {k}; test gain {cell}, Holm-adjusted p = {holm_p:.2f})"
            )
        else:
            lines.append(f"{name}: none beats k = 0 beyond its interval (dev chooses k = {k}; test gain {cell})")
    return lines


def _control_lines(controls: Mapping[str, Any]) -> list[str]:
    lines = []
    for _, control in sorted(controls.items(), key=lambda item: (item[1]["kind"] != "aa", item[0])):
        what = (
            "A/A: k = 0 refitted under another seed"
            if control["kind"] == "aa"
            else f"positive: {' → '.join(control['chain'])}"
        )
        status = {True: "as expected", False: "NOT as expected", None: "no interval (n = 1)"}[control["passed"]]
        seed = f" (with the between-seed sd {control['seed_sd']:.1f})" if control.get("seed_sd") is not None else ""
        lines.append(
            f"{control['target']} ({what}): gain {interval_cell(control['gain'], signed=True)}{seed}; "
            f"expected {control['expected']}: {status}"
        )
    return lines


def _variance_table(found: Mapping[str, Any]) -> Table:
    rows = [
        [name, *(f"{100 * shares[part]:.0f}%" for part in ("chain length", "order", "seed"))]
        for name in _ordered(found)
        if (shares := found["targets"][name].get("variance"))
    ]
    return [["target", "chain length", "order", "seed (the rest)"], *rows] if rows else []


def _order_lines(found: Mapping[str, Any]) -> list[str]:
    return [
        f"{test['target']}: {' / '.join(test['chains'])}: variance between orders {test['variance_between_orders']:.2f}, "
        f"p = {test['p_value']:.3g} (Holm {test['holm_p']:.3g})"
        for test in found["order_tests"]
    ]


def _sample_lines(effects: Mapping[str, Any], modes: Sequence[str]) -> list[str]:
    lines = []
    for mode in modes:
        found = effects[mode][TEST]
        targets = {name: t for name, t in found["targets"].items() if name != found.get("average")}
        runs = next(iter(targets.values()))["runs"] if targets else {}
        prefix = f"{mode}: " if len(modes) > 1 else ""
        lines.append(
            prefix
            + "runs per chain length (orders x seeds): "
            + ", ".join(f"k = {k}: {n}" for k, n in sorted(runs.items(), key=lambda kv: int(kv[0])))
        )
        for name, target in sorted(targets.items()):
            sizes = sorted(set(target["examples"].values()))
            size = (
                "no per-example units"
                if not sizes
                else (str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}")
            )
            lines.append(f"{prefix}{name}: {len(target['languages'])} languages, examples per language {size}")
    return lines
