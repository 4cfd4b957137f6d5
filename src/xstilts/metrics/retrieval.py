"""Retrieval metrics from predictions: Tatoeba accuracy and BUCC precision/recall/F1 over id pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tatoeba_accuracy(predictions: Sequence[int], gold: Sequence[int]) -> float:
    """Share of English sentences whose nearest neighbour is their translation, x100."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold indices")
    return 100.0 * float(np.mean(np.asarray(predictions) == np.asarray(gold)))


def bucc_scores_from_pairs(predicted: set[tuple[str, str]], gold: set[tuple[str, str]]) -> dict[str, float]:
    """P/R/F1 (x100) of predicted id pairs, as XTREME scores its `src_id<TAB>trg_id` prediction files."""
    correct = len(predicted & gold)
    precision = correct / len(predicted) if predicted else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return {"f1": 100 * f1, "precision": 100 * precision, "recall": 100 * recall}


def bucc_counts_per_source(
    source_ids: Sequence[str], predicted: set[tuple[str, str]], gold: set[tuple[str, str]]
) -> list[tuple[int, int, int]]:
    """(correct, predicted, gold) pairs of each source sentence, in `source_ids` order: the units of BUCC F1.
    Every pair's source must be one of `source_ids`."""
    index = {source: i for i, source in enumerate(source_ids)}
    counts = np.zeros((len(source_ids), 3), dtype=np.int64)
    for column, pairs in ((0, predicted & gold), (1, predicted), (2, gold)):
        for source, _ in pairs:
            if source not in index:
                raise ValueError(f"pair source {source!r} is not one of the source sentences")
            counts[index[source], column] += 1
    return [tuple(int(v) for v in row) for row in counts]
