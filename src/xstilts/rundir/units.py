"""Per-unit statistics on disk: `<split>-<lang>.units.npy` beside each evaluation record, and
`<split>-<lang>.items.npy` for the item keys of a parallel test set; written atomically, loaded without pickles.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from xstilts.errors import DataError
from xstilts.files import read_npy
from xstilts.metrics.units import Units


def write_units(path: Path, units: Units) -> None:
    """Write atomically (a killed run leaves the old file or none, never half of one); the item keys first, so
    values on disk always have their keys beside them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if units.keys is not None:
        _save_atomic(keys_file(path), units.keys)
    _save_atomic(path, units.values)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, array, allow_pickle=False)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def read_units(path: Path, statistic: str, n: int, parallel: bool = False) -> Units | None:
    """The stored units, or None when a file is missing or does not match its evaluation record (`parallel`: the
    record says the units carry item keys)."""
    try:
        values = read_npy(path)
        keys = read_npy(keys_file(Path(path))) if parallel else None
        units = Units(statistic, values, keys)
    except (OSError, ValueError, DataError):
        return None
    return units if len(units) == n else None


def keys_file(units_path: Path) -> Path:
    """`<split>-<lang>.items.npy` beside `<split>-<lang>.units.npy`."""
    path = Path(units_path)
    return path.with_name(path.name.replace(".units.npy", ".items.npy"))


def units_file(evaluation_path: Path) -> Path:
    """`<split>-<lang>.units.npy` beside the evaluation `<split>-<lang>.json`."""
    path = Path(evaluation_path)
    return path.with_name(path.stem + ".units.npy")
