"""The report's first section: the answer to the study's question, with its uncertainty.

One table per chain mode (test split): a row per target and for the average, the score at k = 0, the gain at
each k over k = 0 with its 95% interval, each further task (the trend over k >= 1), the smallest gain the
design detects, and the verdict on both parts of the question (does the first task help; does each further
task add?). Then the verdict lines, each chain against its prefix one task shorter, the best chain length
where one beats k = 0, the controls, the latency verdict, the sample sizes, and where the variance comes from
and whether order matters (or why the design cannot tell). The numbers come from `xstilts.results.effects`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xstilts.chain_modes import FULL
from xstilts.results.curve import HORIZON
from xstilts.results.effects import AVERAGE
from xstilts.results.statistics import ALPHA, CONFIDENCE, POWER, TEST_SAMPLE_ONLY, WITH_TRAINING, format_p, holm
from xstilts.results.statistics import signed as plus_sign
from xstilts.terms import TEST

Table = list[list[str]]


@dataclass(frozen=True)
class Block:
    """A heading with a table or bullet lines; `answer`: printed in the terminal summary too."""

    title: str
    content: Table | list[str]
    answer: bool = False
    plots: tuple[str, ...] = ()  # the report's plots drawn under it, by name


@dataclass
class Headline:
    """What the report prints first, in order: per mode the answer table, then blocks of lines or tables."""

    tables: list[tuple[str, Table]] = field(default_factory=list)  # the answer, one table per chain mode
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # paragraphs under the first table


def interval_cell(entry: Mapping[str, Any] | None, signed: bool = False) -> str:
    """ "+1.2 [+0.3, +2.0]"; "(test sample only)" or "(without ...)" where the interval leaves training noise
    out; "+1.2 (n = 1)" where there is no interval to give."""
    if not entry:
        return "-"
    form = plus_sign if signed else "{:.1f}".format
    text = form(entry["estimate"])
    if entry.get("lower") is None or entry.get("upper") is None:
        return f"{text} (n = {entry.get('n', 1)})"
    text = f"{text} [{form(entry['lower'])}, {form(entry['upper'])}]"
    if entry.get("includes") == TEST_SAMPLE_ONLY:
        return text + " (test sample only)"
    if entry.get("leaves_out"):
        return text + " (without k = 0's training noise)" if "k = 0" in entry["leaves_out"] else text + " (partial)"
    return text


def build_headline(
    effects: Mapping[str, Any],
    best_lengths: Mapping[str, Mapping[str, Any]] | None = None,
    latency_verdicts: Mapping[str, list[str]] | None = None,
    run_hint: str = "RUN_DIR",
) -> Headline:
    """The headline over every chain mode's test effects."""
    headline = Headline()
    modes = sorted(m for m in effects if TEST in effects[m])
    later: list[Block] = []
    for mode in modes:
        found = effects[mode][TEST]
        suffix = f" ({mode} chains)" if len(modes) > 1 else ""
        title = "Transfer against chain length (test" + (f", {mode} chains)" if len(modes) > 1 else ")")
        headline.tables.append((title, _table(found)))
        headline.blocks.append(Block(f"Verdicts{suffix}", _verdict_lines(found), answer=True))
        steps = _steps_table(found)
        if steps:
            headline.blocks.append(Block(f"Gain of each added task: k against k - 1 (test){suffix}", steps))
        curves = _curve_lines(found)
        if curves:
            headline.blocks.append(
                Block(f"The curve of the gain against k (form chosen on dev, fitted on test){suffix}", curves)
            )
        if best_lengths is not None:
            best = _best_lines(found, best_lengths.get(mode, {}))
            headline.blocks.append(
                Block(f"Best chain length (chosen on dev, reported on test){suffix}", best, answer=True)
            )
        if found.get("controls"):
            headline.blocks.append(
                Block(f"Controls (known answers){suffix}", _control_lines(found["controls"]), answer=True)
            )
        later.append(Block(f"Where the variance between runs comes from (test){suffix}", _variance_block(found)))
        later.append(Block(f"Does the order of the same tasks matter?{suffix}", _order_lines(found)))
    latency = []
    for mode in modes or [FULL]:
        lines = (latency_verdicts or {}).get(mode)
        latency += (
            lines
            if lines
            else [
                f"{mode}: latency was not measured; `xstilts latency {run_hint}` measures it (RUN_DIR: this run's directory)"
            ]
        )
    headline.blocks.append(Block("Latency", latency, answer=True))
    headline.blocks.append(Block("Sample sizes", _sample_lines(effects, modes)))
    headline.blocks += later
    headline.notes += _notes(effects, modes)
    return headline


def _curve_lines(found: Mapping[str, Any]) -> list[str]:
    """Per target: the form dev chose, its scale on test, the gains it predicts beyond the study, and the chain
    length from which the next task adds less than the study could detect."""
    lines = []
    for name, curve in (found.get("curves") or {}).items():
        if curve.get("form") is None:
            lines.append(f"{name}: no curve ({curve['why_not']})")
            continue
        predicted = "; ".join(
            f"at k = {k}: {interval_cell(entry, signed=True)}" for k, entry in curve["predictions"].items()
        )
        flat = curve.get("flat_after")
        detectable = curve.get("detectable")
        if detectable is None:
            after = "no detectable gain is known for this design"
        elif flat is None:
            after = f"each task up to k = {HORIZON} adds at least the {detectable:.1f} points a further task needs to be detected"
        else:
            after = f"from k = {flat}, the next task adds less than the {detectable:.1f} points a further task needs to be detected"
        errors = ", ".join(
            f"{form} {error:.2g}" for form, error in sorted(curve["dev_errors"].items(), key=lambda e: e[1])[:3]
        )
        lines.append(
            f"{name}: gain = {curve['formula']}, a = {interval_cell(curve['scale'], signed=True)}; predicted gain "
            f"{predicted}; {after} (dev leave-one-length-out error: {errors})"
        )
    if lines:
        lines.append(
            "A prediction beyond the longest chain holds only if the chosen form holds there too, which no data of "
            "this study can check; the form is chosen on dev (each chain length predicted from the others), never on test."
        )
    return lines


def _notes(effects: Mapping[str, Any], modes: Sequence[str]) -> list[str]:
    comparisons = sum(effects[m][TEST]["comparisons"] for m in modes)
    notes = [
        f"Each cell: the mean over the runs of that length (orders x seeds; k = 0: its seeds) and its {CONFIDENCE:.0%} "
        "interval, which holds both the training noise (measured from the spread between runs: orders as a sample "
        "of the orders the study could have drawn, seeds, and k = 0's own seeds for every gain) and the test-sample "
        "noise (a paired bootstrap over test items, an item of a parallel test set drawn in every language at "
        'once). "(test sample only)": the design has one run there, so its training noise is unknown and no verdict rests '
        "on it. A verdict is called when its interval excludes zero and its Holm-adjusted p < "
        f"{ALPHA} over the {comparisons} comparisons the verdicts make (per target and for the average: the first "
        f'task and each further task). "Detectable": the smallest true gain this design finds with {POWER:.0%} power at Holm\'s strictest '
        "level, from the variance it measured.",
    ]
    for mode in modes:
        found = effects[mode][TEST]
        blind = [
            name
            for name, t in found["targets"].items()
            if (t["detectable"].get("first") or 0) > 1.0 or (t["gains"] and t["detectable"].get("first") is None)
        ]
        if blind:
            prefix = f"{mode} chains: " if len(modes) > 1 else ""
            notes.append(
                f"{prefix}This design cannot see a 1-point gain of the first task on {', '.join(sorted(blind))}: "
                "add seeds (study.seeds), orders or k = 0 runs (study.baseline_runs) to narrow it."
            )
    return notes


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
        further = interval_cell(target["further"], signed=True) if target.get("further") else "-"
        detectable = target["detectable"].get("first")
        rows.append(
            [
                name,
                *cells,
                further,
                "-" if detectable is None else f"{detectable:.1f}",
                _short_verdict(target),
            ]
        )
    return [["target", *columns, "each further task", "detectable gain", "verdict"], *rows]


def _short_verdict(target: Mapping[str, Any]) -> str:
    calls = target.get("calls", {})
    parts = [f"first: {calls['first']}" if calls.get("first") else None]
    parts.append(f"further: {calls['further']}" if calls.get("further") else None)
    return "; ".join(p for p in parts if p) or "-"


def _verdict_lines(found: Mapping[str, Any]) -> list[str]:
    lines = [found["targets"][name]["verdict"] for name in _ordered(found)]
    average = found.get("average")
    if average and average != "XTREME":
        names = [n for n in _ordered(found) if n != average]
        lines.append(f"{average}: the unweighted mean over {', '.join(names)} (not the full XTREME set)")
    return lines


def _steps_table(found: Mapping[str, Any]) -> Table:
    """Diminishing returns: each chain against its own prefix one task shorter (k >= 2), paired, over runs; the
    first column is the gain at k = 1 (against k = 0's seeds)."""
    lengths = sorted({int(k) for t in found["targets"].values() for k in t["steps"]})
    if not lengths:
        return []
    rows = []
    for name in _ordered(found):
        target = found["targets"][name]
        steps = {int(k): v for k, v in target["steps"].items()}
        first = {int(k): v for k, v in target["gains"].items()}.get(1)
        rows.append(
            [name, interval_cell(first, signed=True), *(interval_cell(steps.get(k), signed=True) for k in lengths)]
        )
    return [["target", "k = 1 vs 0", *(f"k = {k} vs {k - 1}" for k in lengths)], *rows]


def _best_lines(found: Mapping[str, Any], chosen: Mapping[str, Any]) -> list[str]:
    """The dev-chosen k per target, named only when its test gain is called: its interval excludes zero and its
    p-value passes Holm's correction over the chosen gains of all targets."""
    picks: dict[str, tuple[int | None, Mapping[str, Any] | None]] = {}
    for name in _ordered(found):
        k = chosen.get(AVERAGE if name == found.get("average") else name)
        gains = {int(key): v for key, v in found["targets"][name]["gains"].items()}
        picks[name] = (None if k is None else int(k), gains.get(int(k)) if k is not None else None)
    tested = [name for name, (k, gain) in picks.items() if k and gain and _judged(gain)]
    adjusted = dict(zip(tested, holm([picks[name][1]["p_value"] for name in tested])))
    lines = []
    for name, (k, gain) in picks.items():
        if k is None or k == 0 or gain is None:
            lines.append(f"{name}: none: dev chooses k = 0" if k == 0 else f"{name}: no dev choice")
            continue
        cell = interval_cell(gain, signed=True)
        if name not in adjusted:  # the interval leaves training noise out: no verdict
            lines.append(f"{name}: no verdict (dev chooses k = {k}; test gain {cell})")
        elif gain["lower"] > 0 and adjusted[name] < ALPHA:
            lines.append(f"{name}: k = {k} (test gain {cell})")
        elif gain["lower"] > 0:  # the unadjusted interval excludes zero, the multiple-comparison rule does not
            lines.append(
                f"{name}: none beats k = 0 after Holm's correction over the {len(tested)} chosen gains "
                f"(dev chooses k = {k}; test gain {cell}, Holm-adjusted p {_relation(adjusted[name])})"
            )
        else:
            lines.append(f"{name}: none beats k = 0 beyond its interval (dev chooses k = {k}; test gain {cell})")
    return lines


def _judged(entry: Mapping[str, Any]) -> bool:
    return (
        entry.get("lower") is not None
        and entry.get("includes") == WITH_TRAINING
        and not entry.get("leaves_out")
        and entry.get("p_value") is not None
    )


def _relation(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _control_lines(controls: Mapping[str, Any]) -> list[str]:
    lines = []
    for _, control in sorted(controls.items(), key=lambda item: (item[1]["kind"] != "aa", item[0])):
        what = (
            "A/A: k = 0 refitted under other seeds"
            if control["kind"] == "aa"
            else f"positive: {' → '.join(control['chain'])}"
        )
        status = {True: "as expected", False: "NOT as expected", None: "no verdict (its training noise is unknown)"}[
            control["passed"]
        ]
        family = ""
        if control["kind"] == "aa" and control.get("holm_p") is not None:
            family = f", Holm-adjusted p {_relation(control['holm_p'])} over {control['family']} A/A targets"
        runs = len(control.get("labels", []))
        lines.append(
            f"{control['target']} ({what}, {runs} runs): gain {interval_cell(control['gain'], signed=True)}{family}; "
            f"expected {control['expected']}: {status}"
        )
    if any(c["kind"] == "aa" for c in controls.values()):
        lines.append(
            f"The A/A runs go through the same analysis as the study's gains; with Holm over its targets, all of "
            f"them pass in {1 - ALPHA:.0%} of studies when the intervals hold."
        )
    return lines


def _variance_block(found: Mapping[str, Any]) -> Table | list[str]:
    rows = [
        [name, *(f"{100 * shares[part]:.0f}%" for part in ("chain length", "order", "seed"))]
        for name in _ordered(found)
        if (shares := found["targets"][name].get("variance"))
    ]
    if rows:
        return [["target", "chain length", "order", "seed (and test sample)"], *rows]
    reasons = {t.get("variance_not_identified") for t in found["targets"].values()} - {None}
    return sorted(reasons) or ["not identified"]


def _order_lines(found: Mapping[str, Any]) -> list[str]:
    tests = found.get("order_tests", {})
    lines = [
        f"{test['target']}: {' / '.join(test['chains'])} ({'/'.join(map(str, test['runs']))} runs): F = {test['f']:.2f}, "
        f"p {_relation(test['p_value'])} (Holm {format_p(test['holm_p'])})"
        for test in tests.get("tests", [])
    ]
    reasons = sorted(set(tests.get("not_identified", {}).values()))
    return lines + reasons if lines or reasons else ["no chains to compare"]


def _sample_lines(effects: Mapping[str, Any], modes: Sequence[str]) -> list[str]:
    lines = []
    for mode in modes:
        found = effects[mode][TEST]
        targets = {name: t for name, t in found["targets"].items() if name != found.get("average")}
        runs = next(iter(targets.values()))["runs"] if targets else {}
        prefix = f"{mode}: " if len(modes) > 1 else ""
        lines.append(
            prefix
            + "runs per chain length (orders x seeds; k = 0: its seeds): "
            + ", ".join(f"k = {k}: {n}" for k, n in sorted(runs.items(), key=lambda kv: int(kv[0])))
        )
        for name, target in sorted(targets.items()):
            sizes = sorted(set(target["examples"].values()))
            size = (
                "no per-example units"
                if not sizes
                else (str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}")
            )
            kind = (
                "parallel (the same items in every language)" if target.get("parallel") else "independent per language"
            )
            missing = target.get("missing_languages") or []
            absent = f"; not evaluated: {', '.join(missing)}" if missing else ""
            lines.append(
                f"{prefix}{name}: {len(target['languages'])} languages ({', '.join(target['languages'])}), "
                f"examples per language {size}, test sets {kind}{absent}"
            )
    return lines
