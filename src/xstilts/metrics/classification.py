"""Accuracy for classification and multiple choice (XNLI, PAWS-X)."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(predictions: Sequence[object], golds: Sequence[object]) -> dict[str, float]:
    """Share of exact label matches, x100, as XTREME reports it."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels")
    if not golds:
        raise ValueError("accuracy of an empty evaluation set is undefined")
    correct = sum(p == g for p, g in zip(predictions, golds))
    return {"accuracy": 100.0 * correct / len(golds)}


def correct_per_example(predictions: Sequence[object], golds: Sequence[object]) -> list[float]:
    """1.0 where the prediction matches its gold label, else 0.0: the units of `accuracy`."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels")
    return [float(p == g) for p, g in zip(predictions, golds)]
