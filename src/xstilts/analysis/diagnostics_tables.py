"""The report's diagnostics tables: what each added task does to the encoder, and how well the transfer
estimates ranked the prefixes (from `results.diagnostics.summarise`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Table = list[list[str]]

EXPLANATION = (
    "Measured on each prefix's encoder with no fine-tuning (`diagnostics:` in the config). Drift: linear CKA "
    "between the encoder's mean-pooled sentence representations of a fixed multilingual probe set (the targets' "
    "dev text) and those of the pretrained encoder or of its parent (1 = the same up to rotation and scale). "
    "Alignment: how often a sentence's nearest English sentence by cosine is its translation, per layer. Each "
    "cell is the mean over the study's prefixes of that length with a 95% bootstrap interval over them "
    "(controls left out)."
)
ESTIMATES_EXPLANATION = (
    "LogME and leave-one-out k-NN accuracy of each prefix encoder's frozen features on the target's English "
    "training sample, against the target's measured test score after that prefix (mean over languages). "
    "Kendall tau over the prefixes; regret@m: how far the best measured score among the estimator's top m "
    "prefixes falls below the best of all (0 = it found the best). Intervals resample the prefixes."
)


def _cell(entry: Mapping[str, Any] | None, digits: int) -> str:
    if not entry:
        return "-"
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
    estimates = summary.get("estimates", {})
    if estimates:
        table = [["target", "estimator", "prefixes", "Kendall tau", "regret@1", "regret@3"]]
        for target, by_estimator in sorted(estimates.items()):
            for estimator, judged in by_estimator.items():
                table.append(
                    [
                        target,
                        {"logme": "LogME", "knn": "k-NN accuracy"}.get(estimator, estimator),
                        str(judged["prefixes"]),
                        _cell(judged["kendall_tau"], 2),
                        _cell(judged["regret_at_1"], 1),
                        _cell(judged["regret_at_3"], 1),
                    ]
                )
        sections.append(("Transfer estimates against measured results (test)", table, [ESTIMATES_EXPLANATION]))
    return sections
