"""The report's diagnostics tables: what each added task does to the encoder, and how well the transfer
estimates ranked the prefixes (from `results.diagnostics.summarise`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Table = list[list[str]]

EXPLANATION = (
    "Measured on each prefix's encoder with no fine-tuning (`diagnostics:` in the config). Drift: linear CKA "
    "between the encoder's mean-pooled sentence representations of a fixed multilingual probe set (the targets' "
    "dev text) and those of the pretrained encoder or of its parent, debiased (1 = the same up to rotation and "
    "scale, about 0 = unrelated, whatever the number of probe sentences against the width). "
    "Alignment: how often a sentence's nearest English sentence by cosine is its translation, per layer. Each "
    "cell is the mean over the study's prefixes of that length with a 95% bootstrap interval over them "
    "(controls left out)."
)
FORGETTING_EXPLANATION = (
    "English dev score (each task's primary metric) of the chain's earlier intermediate tasks on the current "
    "encoder, by how many tasks were trained after them: with the head the task's own stage trained, and with "
    "a fresh head of the same kind trained on the frozen encoder (a probe). Change: against the same chain "
    "right after the task's own stage. A falling own-head score with a steady probe means the head no longer "
    "fits; a falling probe means the information itself is gone."
)
ESTIMATES_EXPLANATION = (
    "LogME and leave-one-out k-NN accuracy of each prefix encoder's frozen features on the target's English "
    "training sample, against the target's measured test score after that prefix (mean over languages). "
    "Kendall tau over the prefixes; regret@m: how far the best measured score among the estimator's top m "
    "prefixes falls below the best of all, in points and in % of the best (the published form, Poth et al. 2021; "
    "0 = it found the best). Intervals resample whole chains (the prefixes of a chain share their stages)."
)


def _cell(entry: Mapping[str, Any] | None, digits: int) -> str:
    if not entry:
        return "-"
    if entry.get("undefined"):
        return f"undefined: {entry['undefined']}"
    if entry.get("estimate") is None or not np.isfinite(entry["estimate"]):
        return "undefined"
    text = f"{entry['estimate']:.{digits}f}"
    if entry.get("lower") is None:
        return f"{text} (n = {entry.get('n', 1)})"
    return f"{text} [{entry['lower']:.{digits}f}, {entry['upper']:.{digits}f}]"


def diagnostics_tables(summary: Mapping[str, Any]) -> list[tuple[str, Table, list[str]]]:
    """(title, table, paragraphs) for each diagnostics table of the report."""
    sections: list[tuple[str, Table, list[str]]] = []
    modes = summary.get("by_length", {})
    for mode, by_k in modes.items():
        suffix = f" ({mode} chains)" if len(modes) > 1 else ""
        header = ["k", "prefixes", "CKA to pretrained (last layer)", "CKA to parent (last layer)"]
        header += ["alignment, best layer (%)", "alignment, last layer (%)"]
        rows = [
            [
                str(k),
                str(m["prefixes"]),
                _cell(m["cka_pretrained_last"], 3),
                _cell(m["cka_parent_last"], 3) if int(k) > 0 else "-",
                _cell(m["alignment_best"], 1),
                _cell(m["alignment_last"], 1),
            ]
            for k, m in sorted(by_k.items(), key=lambda item: int(item[0]))
        ]
        sections.append((f"What each added task does to the encoder{suffix}", [header, *rows], [EXPLANATION]))
        curves = summary.get("alignment_layers", {}).get(mode, {})
        if curves:
            lengths = sorted(curves, key=int)
            depth = max(len(curves[k]) for k in lengths)
            table = [["layer", *(f"k = {k}" for k in lengths)]]
            for layer in range(depth):
                values = [curves[k][layer] if layer < len(curves[k]) else None for k in lengths]
                table.append([str(layer), *("-" if v is None else f"{v:.1f}" for v in values)])
            note = "Translation retrieval accuracy (%) per layer (0 = embeddings), mean over prefixes and languages."
            sections.append((f"Cross-lingual alignment by layer{suffix}", table, [note]))
    for mode, by_distance in summary.get("forgetting", {}).items():
        suffix = f" ({mode} chains)" if len(summary.get("forgetting", {})) > 1 else ""
        table = [["tasks trained since", "pairs", "own head", "change", "fresh probe", "change"]]
        for distance, m in sorted(by_distance.items(), key=lambda item: int(item[0])):
            table.append(
                [
                    str(distance),
                    str(m["pairs"]),
                    _cell(m["own_head"], 1),
                    _cell(m.get("own_head_change"), 1) if int(distance) else "-",
                    _cell(m["probe"], 1),
                    _cell(m.get("probe_change"), 1) if int(distance) else "-",
                ]
            )
        sections.append((f"Forgetting of earlier tasks{suffix}", table, [FORGETTING_EXPLANATION]))
    estimates = summary.get("estimates", {})
    if estimates:
        table = [
            [
                "target",
                "estimator",
                "prefixes",
                "Kendall tau",
                "regret@1 (points)",
                "regret@1 (% of best)",
                "regret@3 (points)",
                "regret@3 (% of best)",
            ]
        ]
        for target, by_estimator in sorted(estimates.items()):
            for estimator, judged in by_estimator.items():
                table.append(
                    [
                        target,
                        {"logme": "LogME", "knn": "k-NN accuracy"}.get(estimator, estimator),
                        str(judged["prefixes"]),
                        _cell(judged["kendall_tau"], 2),
                        _cell(judged["regret_at_1"], 1),
                        _cell(judged.get("relative_regret_at_1"), 1),
                        _cell(judged["regret_at_3"], 1),
                        _cell(judged.get("relative_regret_at_3"), 1),
                    ]
                )
        sections.append(("Transfer estimates against measured results (test)", table, [ESTIMATES_EXPLANATION]))
    return sections


def search_section(record: Mapping[str, Any], regret: Mapping[str, Any] | None) -> tuple[list[str], Table]:
    """(bullets, rounds table) of a searching study's report section."""

    def name(chain: list[str]) -> str:
        return "+".join(chain) or "pretrained (k = 0)"

    share = record["stages_trained"] / record["exhaustive_stages"] if record["exhaustive_stages"] else 0.0
    strategy = "greedy" if record["strategy"] == "greedy" else f"beam of width {record['width']}"
    bullets = [
        f"{strategy} search on "
        + ("dev scores" if record["guide"] == "dev" else f"transfer estimates ({record.get('estimator')})")
        + f" over the pool {', '.join(record['pool'])} up to "
        f"K = {record['max_chain_length']}" + (f", budget {record['budget']} stages" if record.get("budget") else ""),
        f"chain found: {name(record['found'])} (dev score {record['found_dev_score']:.1f})"
        if record.get("found_dev_score") is not None
        else f"chain found: {name(record['found'])}",
        f"cost: {record['stages_trained']} intermediate stages and {record['target_fine_tunes']} target fine-tunes, "
        f"against {record['exhaustive_stages']} and {record['exhaustive_target_fine_tunes']} for the exhaustive study "
        f"of the same pool ({100 * share:.0f}% of its stages; `xstilts plan` counts the exhaustive study too)",
    ]
    if regret is not None:
        interval = regret.get("found_minus_best_test")
        same = regret["exhaustive_best"] == record["found"]
        within = (
            "the search found it"
            if same
            else "within its interval"
            if interval and interval["lower"] <= 0 <= interval["upper"]
            else "below it beyond its interval"
            if interval and interval["upper"] < 0
            else "above it"
            if interval
            else "no interval (no per-example units)"
        )
        bullets.append(
            f"exhaustive study present ({regret['chains']} chains): its best chain chosen on dev is "
            f"{name(regret['exhaustive_best'])}; the search's chain scores {regret['regret_test']:+.1f} points less on "
            f"test"
            + (
                f" [95% interval of the difference, test sample only {-interval['upper']:+.1f}, {-interval['lower']:+.1f}]"
                if interval
                else ""
            )
            + f": {within}"
        )
    return bullets, _rounds_table(record, name)


def _rounds_table(record: Mapping[str, Any], name: Any) -> Table:
    """One row per candidate of each round: what ranked it, and whether it was kept."""
    by_estimate = record["guide"] == "estimate"
    if by_estimate:
        columns = [f"{record.get('estimator', 'estimate')} rank (0-1, mean over targets)"]
    else:
        columns = ["dev score", "against the best so far (95%)"]
    table = [["round", "candidate", *columns, "kept"]]
    for number, round_ in enumerate(record["rounds"], start=1):
        for candidate in round_["candidates"]:
            if by_estimate:
                score = candidate.get("estimate_score")
                cells = ["-" if score is None else f"{score:.2f}"]
            else:
                against = candidate.get("against_best")
                cells = [
                    "-" if candidate["dev_score"] is None else f"{candidate['dev_score']:.1f}",
                    "best so far" if against is None else f"[{against['lower']:+.1f}, {against['upper']:+.1f}]",
                ]
            table.append([str(number), name(candidate["chain"]), *cells, "yes" if candidate["kept"] else ""])
    return table
