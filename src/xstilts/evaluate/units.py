"""Per-unit scores: what a resample of the evaluation set draws, and how a resample is scored.

An interval for a score must resample what was sampled: the examples of the evaluation set. Each metric
is a function of per-unit sufficient statistics that add up over units, so a resample is scored from
the sums over the units it drew:

- `mean`: one value per unit, the score is 100 x their mean (accuracy: 1 or 0 per example; QA:
  (EM + F1) / 2 per question, so the mean is XTREME's (EM + F1) / 2; Tatoeba: 1 or 0 per query).
- `f1`: three counts per unit, (correct, predicted, gold), the score is 100 x 2 correct / (predicted +
  gold), the micro F1 (tagging: chunks per sentence, so a resample keeps whole sentences; BUCC: pairs
  per source sentence).

Units are computed where the predictions are made and stored beside each evaluation
(`<split>-<lang>.units.npy`, loaded without pickles), so reports never need the data or the model.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATISTICS = {"mean": 1, "f1": 3}  # statistic -> columns per unit


@dataclass(frozen=True)
class Units:
    """The per-unit statistics of one evaluation (one target, split and language)."""

    statistic: str
    values: np.ndarray  # (units, columns)

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown unit statistic {self.statistic!r}; expected one of {sorted(STATISTICS)}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != STATISTICS[self.statistic]:
            raise ValueError(f"{self.statistic} units need {STATISTICS[self.statistic]} columns, got {values.shape}")
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.values)

    def score(self) -> float:
        """The metric of the whole evaluation set (equal to the evaluation's headline value)."""
        return float(score_sums(self.statistic, self.values.sum(axis=0), len(self)))

    def describe(self) -> dict[str, object]:
        return {"statistic": self.statistic, "n": len(self)}


def score_sums(statistic: str, sums: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Scores from column sums over the units drawn (`sums`: (..., columns)); vectorised over leading axes."""
    sums = np.asarray(sums, dtype=np.float64)
    if statistic == "mean":
        return 100.0 * sums[..., 0] / n
    correct, predicted, gold = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = predicted + gold
    return np.divide(200.0 * correct, denominator, out=np.zeros_like(correct), where=denominator > 0)


def write_units(path: Path, units: Units) -> None:
    """Write atomically (a killed run leaves the old file or none, never half of one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, units.values, allow_pickle=False)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def read_units(path: Path, statistic: str, n: int) -> Units | None:
    """The stored units, or None when the file is missing or does not match its evaluation record."""
    try:
        values = np.load(Path(path), allow_pickle=False)
        units = Units(statistic, values)
    except (OSError, ValueError):
        return None
    return units if len(units) == n else None


def units_file(evaluation_path: Path) -> Path:
    """`<split>-<lang>.units.npy` beside the evaluation `<split>-<lang>.json`."""
    path = Path(evaluation_path)
    return path.with_name(path.stem + ".units.npy")
