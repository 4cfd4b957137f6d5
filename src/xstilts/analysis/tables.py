"""The report's tables beyond the answer: scores and gains against chain length per split, the best chain
length and the paper's tables (chosen on dev, reported on test), missing results, and latency."""

from __future__ import annotations

from collections.abc import Mapping
from statistics import fmean
from typing import Any

from xstilts.metrics.xtreme import XTREME_TASK_ORDER, xtreme_score
from xstilts.results import selection as choice_scores
from xstilts.results.aggregate import Stats, by_chain_length, split_chains, summarize
from xstilts.results.selection import choose
from xstilts.rundir.records import ResultRow
from xstilts.terms import DEV, SELECTION_RULES, TEST

PRETRAINED = "pretrained"

MISSING = "missing"
NO_RESULT = "-"  # a cell the run has no result for by design (no dev split, not chosen)


def _cell(stats: Stats | None, empty: str = MISSING) -> str:
    if stats is None:
        return empty
    mean, std, n = stats
    return f"{mean:.1f}" if n == 1 else f"{mean:.1f} ± {std:.1f} (n={n})"


def _number(value: float | None, sign: bool = False) -> str:
    return NO_RESULT if value is None else (f"{value:+.1f}" if sign else f"{value:.1f}")


def aggregate(name: str, rows: list[ResultRow], missing: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-chain summary (as summary.json holds it) and its aggregation by chain length, per split."""
    summary = summarize(name, rows)
    return {
        "summary": summary,
        TEST: by_chain_length(summary, missing, TEST),
        DEV: by_chain_length(summary, missing, DEV),
        "chains": {**split_chains(summary, DEV), **summary["chains"]},
    }


def _table(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    return [header, *rows]


def _columns(by_length: Mapping[int, Mapping[str, Any]]) -> list[str]:
    return sorted(
        {c for targets in by_length.values() for c in targets},
        key=lambda c: (c.startswith("group"), c.startswith("XTREME"), c),
    )


def _length_tables(aggregated: dict[str, Any], split: str) -> list[tuple[str, list[list[str]]]]:
    by_length = aggregated[split]["scores"]
    if not by_length:
        return []
    lengths, columns = sorted(by_length), _columns(by_length)
    several = any(stats[2] > 1 for columns in by_length.values() for stats in columns.values())
    spread = "mean ± standard deviation over orders and seeds (n)" if several else "one run per length: n = 1"
    title = f"Score against chain length ({split}; {spread})"
    tables = [
        (title, _table(["k", *columns], [[str(k), *(_cell(by_length[k].get(c)) for c in columns)] for k in lengths]))
    ]
    if split == TEST and 0 in by_length and len(lengths) > 1:
        gains = [
            [
                str(k),
                *(
                    f"{by_length[k][c][0] - by_length[0][c][0]:+.1f}"
                    if c in by_length[k] and c in by_length[0]
                    else MISSING
                    for c in columns
                ),
            ]
            for k in lengths
            if k
        ]
        tables.append((f"Gain over k = 0 ({split})", _table(["k", *columns], gains)))
    return tables


def _best_length_table(aggregated: dict[str, Any], selection: str) -> list[tuple[str, list[list[str]]]]:
    """The best chain length per target, chosen on dev and reported on test, with what test would have chosen."""
    dev, test = choice_scores.by_length(aggregated[DEV], aggregated[TEST], selection)
    if len(set(dev) | set(test)) < 2 or 0 not in test:
        return []
    targets = sorted({t for scores in test.values() for t in scores})
    title = f"Best chain length per target (chosen on dev by {SELECTION_RULES[selection]}; reported on test)"
    if not dev:
        return [
            (title, [["target", "best k"], ["all", "none chosen: the run has no dev results (never chosen on test)"]])
        ]
    choices = choose(targets, dev, test)
    rows = []
    for target in targets:
        choice = choices.get(target)
        if choice is None:
            continue
        baseline = test[0].get(target)
        gain = None if choice.test is None or baseline is None else choice.test - baseline
        rows.append(
            [
                target,
                str(choice.chosen),
                _number(choice.dev) if not choice.by_other_targets else "by the other targets",
                _number(choice.test),
                _number(gain, sign=True),
                str(choice.test_choice),
                _number(choice.test_choice_score),
                _number(choice.optimism, sign=True),
            ]
        )
    header = [
        "target",
        "best k",
        "dev score",
        "test score",
        "test gain over k = 0",
        "k chosen on test",
        "its test score",
        "optimism of choosing on test",
    ]
    return [(title, _table(header, rows))]


def _paper_rows(chains: Mapping[str, Any], score: Any) -> dict[str, dict[str, float]]:
    """Rows of the paper's layout from chains of length 0 and 1: "pretrained" and each intermediate task (or
    mixture), with each target's score (`score(entry)`) averaged over seeds."""
    rows: dict[str, dict[str, list[float]]] = {}
    for chain in chains.values():
        if chain["chain_length"] > 1:
            continue
        name = chain["chain"][0] if chain["chain"] else PRETRAINED
        for target, entry in chain["targets"].items():
            value = score(entry)
            if value is not None:
                rows.setdefault(name, {}).setdefault(target, []).append(value)
    return {name: {t: fmean(v) for t, v in targets.items()} for name, targets in rows.items()}


def _overall(cells: Mapping[str, float]) -> tuple[str, float | None]:
    """("XTREME" or "average", value) of one row: the XTREME score over its XTREME targets, else the mean."""
    xtreme = {t: v for t, v in cells.items() if t in XTREME_TASK_ORDER}
    if xtreme:
        result = xtreme_score(xtreme)
        return ("XTREME" + (" (partial)" if result["partial"] else "")), result["score"]
    return "average", (fmean(cells.values()) if cells else None)


def _paper_tables(aggregated: dict[str, Any], selection: str) -> list[tuple[str, list[list[str]]]]:
    """The paper's tables: the pretrained encoder and each intermediate task (and mixture) against every target,
    dev and test, each cell with its change against the pretrained encoder; on test, the best intermediate model
    per target chosen on dev and its XTREME score (the paper's +5.4 claim)."""
    summary = aggregated["summary"]
    tables: list[tuple[str, list[list[str]]]] = []
    by_split = {
        split: _paper_rows(split_chains(summary, split), lambda e: e["average"]["score"]) for split in (DEV, TEST)
    }
    if len([name for name in by_split[TEST] if name != PRETRAINED]) < 2:
        return []
    english = selection == "dev-en"
    selecting = _paper_rows(
        split_chains(summary, DEV), (lambda e: e["scores"].get("en")) if english else (lambda e: e["average"]["score"])
    )
    for split in (DEV, TEST):
        rows = by_split[split]
        if not rows:
            continue
        targets = sorted(
            {t for cells in rows.values() for t in cells},
            key=lambda t: (t not in XTREME_TASK_ORDER, XTREME_TASK_ORDER.index(t) if t in XTREME_TASK_ORDER else 0, t),
        )
        base = rows.get(PRETRAINED, {})
        overall_name, base_overall = _overall(base)
        names = (
            [PRETRAINED, *sorted(name for name in rows if name != PRETRAINED)] if PRETRAINED in rows else sorted(rows)
        )
        lines = []
        for name in names:
            cells = rows[name]
            label, value = _overall(cells)
            overall_name = label if name != PRETRAINED else overall_name
            lines.append(
                [
                    name,
                    *(_with_gain(cells.get(t), base.get(t), name) for t in targets),
                    _with_gain(value, base_overall, name),
                ]
            )
        if split == TEST:
            intermediate = [name for name in names if name != PRETRAINED]
            choices = choose(
                targets, {n: selecting.get(n, {}) for n in intermediate}, {n: rows[n] for n in intermediate}
            )
            chosen = {t: rows[c.chosen][t] for t, c in choices.items() if t in rows.get(c.chosen, {})}
            _, best_overall = _overall(chosen)
            lines.append(
                [
                    f"best intermediate model per target (chosen on dev by {SELECTION_RULES[selection]})",
                    *(
                        _with_gain(chosen.get(t), base.get(t), "") + (f" [{choices[t].chosen}]" if t in choices else "")
                        for t in targets
                    ),
                    _with_gain(best_overall, base_overall, ""),
                ]
            )
        tables.append(
            (
                f"Intermediate tasks ({split}; the paper's layout, change against the pretrained encoder)",
                _table(["model", *targets, overall_name], lines),
            )
        )
    for target in sorted({t for cells in by_split[TEST].values() for t in cells}):
        for split in (DEV, TEST):
            languages = _paper_languages(split_chains(summary, split), target)
            if not languages:
                continue
            rows = [[name, *(_number(value) for value in values)] for name, values in languages.items()]
            header = sorted(
                {
                    lang
                    for chain in split_chains(summary, split).values()
                    if target in chain["targets"]
                    for lang in chain["targets"][target]["scores"]
                },
                key=lambda lang: (lang != "en", lang),
            )
            tables.append((f"{target} per intermediate task, by language ({split})", _table(["model", *header], rows)))
    return tables


def _paper_languages(chains: Mapping[str, Any], target: str) -> dict[str, list[float | None]]:
    """Model -> the target's score in each language (sorted, English first), averaged over seeds."""
    languages = sorted(
        {
            lang
            for chain in chains.values()
            if target in chain["targets"]
            for lang in chain["targets"][target]["scores"]
        },
        key=lambda lang: (lang != "en", lang),
    )
    per_model: dict[str, dict[str, list[float]]] = {}
    for chain in chains.values():
        if chain["chain_length"] > 1 or target not in chain["targets"]:
            continue
        name = chain["chain"][0] if chain["chain"] else PRETRAINED
        for lang, value in chain["targets"][target]["scores"].items():
            per_model.setdefault(name, {}).setdefault(lang, []).append(value)
    order = (
        [PRETRAINED, *sorted(n for n in per_model if n != PRETRAINED)] if PRETRAINED in per_model else sorted(per_model)
    )
    return {
        name: [fmean(per_model[name][lang]) if lang in per_model[name] else None for lang in languages]
        for name in order
    }


def _with_gain(value: float | None, base: float | None, name: str) -> str:
    if value is None:
        return NO_RESULT
    if name == PRETRAINED or base is None:
        return f"{value:.1f}"
    return f"{value:.1f} ({value - base:+.1f})"


def language_notes(summary: Mapping[str, Any]) -> list[str]:
    """Which languages a target's average leaves out (those outside XTREME's set: shown in its by-language table)."""
    extra: dict[str, set[str]] = {}
    for chains in (split_chains(summary, TEST), split_chains(summary, DEV)):
        for chain in chains.values():
            for target, entry in chain["targets"].items():
                extra.setdefault(target, set()).update(entry.get("extra_languages", []))
    return [
        f"{target}: the average leaves out {', '.join(sorted(langs))} (not part of XTREME; shown in the by-language tables)"
        for target, langs in sorted(extra.items())
        if langs
    ]


def build_tables(
    aggregated: dict[str, Any], missing: list[dict[str, Any]], selection: str = "dev"
) -> list[tuple[str, list[list[str]]]]:
    tables = _length_tables(aggregated, TEST)
    tables += _best_length_table(aggregated, selection)
    tables += _length_tables(aggregated, DEV)
    dev = aggregated[TEST]["english_dev"]
    if dev:
        dev_targets = sorted({t for targets in dev.values() for t in targets})
        tables.append(
            (
                "English dev score of the fine-tuned targets (model selection)",
                _table(
                    ["k", *dev_targets], [[str(k), *(_cell(dev[k].get(t)) for t in dev_targets)] for k in sorted(dev)]
                ),
            )
        )
    tables += _paper_tables(aggregated, selection)
    for split in (TEST, DEV):
        by_language = aggregated[split]["languages"]
        lengths = sorted(aggregated[split]["scores"]) or sorted({k for (k, _, _) in by_language})
        for target in sorted({t for (_, t, _) in by_language}):
            languages = sorted(
                {lang for (_, t, lang) in by_language if t == target}
                | {m["language"] for m in missing if m["target"] == target and m["split"] == split},
                key=lambda lang: (lang != "en", lang),
            )
            rows = [[str(k), *(_cell(by_language.get((k, target, lang))) for lang in languages)] for k in lengths]
            tables.append((f"{target} by language ({split})", _table(["k", *languages], rows)))
    stages = aggregated.get("intermediate_stages", [])
    if stages:
        rows = [
            [
                " → ".join(st["chain"] + [st["task"]]),
                st["kind"],
                ", ".join(f"{m} {v:.1f}" for m, v in st["dev_metrics"].items()),
                f"{st['steps']} ({st['best_step']})",
                f"{st['train_seconds']:.0f}",
                str(st["seed"]),
            ]
            for st in stages
        ]
        tables.append(
            (
                "Intermediate stages (English dev of the task itself)",
                _table(["stage", "kind", "English dev", "steps (best)", "seconds", "seed"], rows),
            )
        )
    chains = sorted(aggregated["chains"].items(), key=lambda item: (item[1]["chain_length"], item[0]))
    tables.append(
        (
            "Chains evaluated",
            _table(
                ["chain", "k", "tasks", "seed"],
                [
                    [label, str(c["chain_length"]), " → ".join(c["chain"]) or "(pretrained)", str(c["seed"])]
                    for label, c in chains
                ],
            ),
        )
    )
    if missing:
        rows = [[m["chain_label"], m["target"], m["language"], m["split"]] for m in missing]
        tables.append((f"Missing results ({len(missing)})", _table(["chain", "target", "language", "split"], rows)))
    return tables


def latency_tables(latency: dict[str, Any]) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    """One table per (mode, target, batch, length) and the verdict lines."""
    tables, verdicts = [], []
    header = [
        "k",
        "median ms",
        "p90 ms",
        "p99 ms",
        "tokens/s",
        "ratio to k = 0 [95% CI]",
        "parameters",
        "GFLOPs/token",
        "MB on disk (stage / chain)",
    ]
    for group in latency["groups"]:
        rows = []
        for m in group["models"]:
            low, high = m["ratio_ci95"]
            size = (
                f"{m['bytes_on_disk'] / 2**20:.1f} / {m['chain_bytes_on_disk'] / 2**20:.1f}"
                if "bytes_on_disk" in m
                else "(same model)"
            )
            rows.append(
                [
                    m["name"] if m["name"].endswith("(twin)") else str(m["chain_length"]),
                    f"{m['median_ms']:.2f}",
                    f"{m['p90_ms']:.2f}",
                    f"{m['p99_ms']:.2f}",
                    f"{m['tokens_per_second']:.0f}",
                    f"{m['ratio_to_k0']:.3f} [{low:.3f}, {high:.3f}]",
                    f"{m.get('parameters', 0):,}",
                    f"{m['flops_per_token'] / 1e9:.4f}",
                    size,
                ]
            )
        title = f"Latency: {group['mode']}, {group['target']}, batch {group['batch_size']} x {group['length']} tokens"
        tables.append((title, _table(header, rows)))
        verdicts.append(f"{group['target']}, batch {group['batch_size']} x {group['length']}: {group['verdict']}")
    return tables, verdicts
