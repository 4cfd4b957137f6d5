"""Metrics as pure functions, exact to the official definitions (docs/protocol.md, "Metrics"), the per-unit
statistics each evaluation stores, and the representation measures the diagnostics use.

A leaf package: it imports no other part of xstilts (the metrics need numpy only; the representation measures
and transfer estimators use torch for pooling and neighbour search), so tasks, evaluation and results all
build on it.
"""

from __future__ import annotations

import numpy as np


def finite_matrix(name: str, value: object) -> np.ndarray:
    """`value` as a float64 (n, d) array; ValueError naming `name` when it is not one or holds NaN or infinity
    (a measure of non-finite numbers is not a measurement: it must not come out as a plausible 0)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected an (n, d) matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name}: {bad} of {array.size} values are NaN or infinite")
    return array
