"""Per-unit scores: what a resample of the evaluation set draws, and how a resample is scored.

An interval for a score must resample what was sampled: the examples of the evaluation set. Each metric
is a function of per-unit sufficient statistics that add up over units, so a resample is scored from
the sums over the units it drew:

- `mean`: one value per unit, the score is 100 x their mean (accuracy: 1 or 0 per example; QA:
  (EM + F1) / 2 per question, so the mean is XTREME's (EM + F1) / 2; Tatoeba: 1 or 0 per query).
- `f1`: three counts per unit, (correct, predicted, gold), the score is 100 x 2 correct / (predicted +
  gold), the micro F1 (tagging: chunks per sentence, so a resample keeps whole sentences; BUCC: pairs
  per source sentence).

Where a test set holds the same items in every language (`TaskSpec.parallel`), each unit also carries its
item's key (the example's line number or id), so that a resample can draw an item in every language at once
(`xstilts.results.resampling`).

Units are computed where the predictions are made and stored beside each evaluation (`xstilts.rundir.units`),
so reports never need the data or the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

STATISTICS = {"mean": 1, "f1": 3}  # statistic -> columns per unit


@dataclass(frozen=True)
class Units:
    """The per-unit statistics of one evaluation (one target, split and language)."""

    statistic: str
    values: np.ndarray  # (units, columns)
    keys: np.ndarray | None = None  # (units,) item keys, unique, where the items are parallel across languages

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown unit statistic {self.statistic!r}; expected one of {sorted(STATISTICS)}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != STATISTICS[self.statistic]:
            raise ValueError(f"{self.statistic} units need {STATISTICS[self.statistic]} columns, got {values.shape}")
        object.__setattr__(self, "values", values)
        if self.keys is not None:
            keys = np.asarray(self.keys, dtype=str)
            if keys.shape != (len(values),):
                raise ValueError(f"{len(values)} units need {len(values)} item keys, got {keys.shape}")
            if len(set(keys.tolist())) != len(keys):
                raise ValueError("item keys must be unique")
            object.__setattr__(self, "keys", keys)

    def __len__(self) -> int:
        return len(self.values)

    def score(self) -> float:
        """The metric of the whole evaluation set (equal to the evaluation's headline value)."""
        return float(score_sums(self.statistic, self.values.sum(axis=0), len(self)))

    def describe(self) -> dict[str, object]:
        return {"statistic": self.statistic, "n": len(self), **({"parallel": True} if self.keys is not None else {})}


PARALLEL_KINDS = ("line", "id")  # how a parallel test set's items are matched across languages


def item_keys(parallel: str | None, examples: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The item key of each example of a parallel test set: its line number (`line`: line i of every language
    holds the same item, as in XNLI and PAWS-X) or its `id` (`id`: XQuAD, MLQA). None for a test set that is not
    parallel, or whose ids repeat (they cannot match items then)."""
    if not parallel:
        return None
    if parallel not in PARALLEL_KINDS:
        raise ValueError(f"unknown parallel item matching {parallel!r}; expected one of {', '.join(PARALLEL_KINDS)}")
    keys = [str(i) for i in range(len(examples))] if parallel == "line" else [str(e.get("id")) for e in examples]
    return keys if len(set(keys)) == len(keys) else None


def score_sums(statistic: str, sums: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Scores from column sums over the units drawn (`sums`: (..., columns)); vectorised over leading axes."""
    sums = np.asarray(sums, dtype=np.float64)
    if statistic == "mean":
        return 100.0 * sums[..., 0] / n
    correct, predicted, gold = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = predicted + gold
    return np.divide(200.0 * correct, denominator, out=np.zeros_like(correct), where=denominator > 0)
