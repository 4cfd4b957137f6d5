"""On-disk caches under one root: the demo encoder and tokenised features.

Features are stored with safetensors (no pickles): every field of a feature list becomes flat
arrays plus lengths, so variable-length sequences, QA offsets and multiple-choice groups round-trip
exactly. A cache entry's name is a hash of everything that determines the features, so a second
run, another stage or another chain with the same tokenizer never tokenises the same data again.

An entry is used only as a regular file whose arrays agree with each other (`check_feature_arrays`); a link, a
damaged or planted file, or a header that claims more than the file holds (safetensors refuses it before
allocating) is removed with a warning naming it, and the features are built again. The cache root itself may be
a link (a larger disk).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from xstilts.files import scratch_beside, writing

Feature = dict[str, Any]
log = logging.getLogger(__name__)


def cache_root() -> Path:
    """`$XSTILTS_CACHE`, else ~/.cache/xstilts."""
    return Path(os.environ.get("XSTILTS_CACHE", Path.home() / ".cache" / "xstilts"))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What determines a tokenizer's output: its serialised Rust tokenizer, class and input names."""
    cached = getattr(tokenizer, "_xstilts_fingerprint", None)
    if cached is None:
        digest = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode())
        digest.update(f"{type(tokenizer).__name__}|{list(tokenizer.model_input_names)}".encode())
        cached = digest.hexdigest()
        tokenizer._xstilts_fingerprint = cached
    return cached


def encode_features(features: list[Feature]) -> dict[str, np.ndarray]:
    """Flatten a feature list into named arrays (the inverse of `decode_features`)."""
    arrays: dict[str, np.ndarray] = {"__count__": np.array([len(features)], dtype=np.int64)}
    for key in features[0] if features else ():
        values = [f[key] for f in features]
        if isinstance(values[0], list):  # groups of sequences (multiple choice)
            arrays[f"{key}.groups"] = np.array([len(v) for v in values], dtype=np.int64)
            values = [np.asarray(x) for v in values for x in v]
        if np.isscalar(values[0]) or np.ndim(values[0]) == 0:
            arrays[f"{key}.scalar"] = np.asarray(values, dtype=np.int64)
            continue
        values = [np.asarray(v) for v in values]
        arrays[f"{key}.lengths"] = np.array([len(v) for v in values], dtype=np.int64)
        arrays[f"{key}.values"] = np.concatenate(values) if values else np.zeros((0,), dtype=np.int32)
    return arrays


def decode_features(arrays: dict[str, np.ndarray]) -> list[Feature]:
    """The feature list of `encode_features`, after checking that the arrays agree with each other (a damaged
    or planted entry must not claim a billion features, or lengths its values do not have)."""
    check_feature_arrays(arrays)
    count = int(arrays["__count__"][0])
    features: list[Feature] = [{} for _ in range(count)]
    keys = sorted({name.rsplit(".", 1)[0] for name in arrays if name != "__count__"})
    for key in keys:
        if f"{key}.scalar" in arrays:
            items: list[Any] = [int(v) for v in arrays[f"{key}.scalar"]]
        else:
            lengths = arrays[f"{key}.lengths"]
            items = np.split(arrays[f"{key}.values"], np.cumsum(lengths)[:-1]) if len(lengths) else []
        if f"{key}.groups" in arrays:
            groups, grouped, start = arrays[f"{key}.groups"], [], 0
            for size in groups:
                grouped.append(list(items[start : start + size]))
                start += size
            items = grouped
        for feature, item in zip(features, items):
            feature[key] = item
    return features


def check_feature_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Raise ValueError unless the arrays are one consistent feature list: a count, and per field either one
    scalar per item or lengths (non-negative) that add up to the values held, items grouped consistently."""
    count_array = arrays.get("__count__")
    if count_array is None or count_array.shape != (1,) or count_array.dtype.kind not in "iu" or count_array[0] < 0:
        raise ValueError("no valid __count__")
    count = int(count_array[0])
    for key in {name.rsplit(".", 1)[0] for name in arrays if name != "__count__"}:
        groups = arrays.get(f"{key}.groups")
        items = count
        if groups is not None:
            if groups.ndim != 1 or len(groups) != count or (groups < 0).any():
                raise ValueError(f"{key}.groups does not give one group size per feature")
            items = int(groups.sum())
        if f"{key}.scalar" in arrays:
            if arrays[f"{key}.scalar"].shape != (items,):
                raise ValueError(f"{key}: {arrays[f'{key}.scalar'].shape} scalars for {items} items")
            continue
        lengths, values = arrays.get(f"{key}.lengths"), arrays.get(f"{key}.values")
        if lengths is None or values is None or lengths.shape != (items,) or (lengths < 0).any():
            raise ValueError(f"{key}: no lengths and values for {items} items")
        if int(lengths.sum()) != len(values):
            raise ValueError(f"{key}: lengths add up to {int(lengths.sum())}, the values hold {len(values)}")


def _untrusted(path: Path) -> str | None:
    """Why a cache entry is not used as it is (a link, or not a regular file), or None."""
    if path.is_symlink():
        return "is a symbolic link (cache entries are files xstilts wrote)"
    if path.exists() and not path.is_file():
        return "is not a regular file"
    return None


def cached(key_parts: dict[str, Any], build: Callable[[], list[Feature]], root: Path | None = None) -> list[Feature]:
    """The features for `key_parts` from the cache, or built now and stored (written aside, then renamed)."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    directory = (root or cache_root()) / "features"
    path = directory / f"{key}.safetensors"
    untrusted = _untrusted(path)
    if untrusted:
        log.warning("feature cache entry %s %s; tokenising again", path, untrusted)
        _discard(path)
    elif path.is_file():
        try:
            return decode_features(load_file(str(path)))
        except Exception as error:  # a damaged entry (a killed writer, a full disk, a planted file) is rebuilt
            log.warning("feature cache entry %s is damaged (%s); tokenising again", path, error)
            path.unlink(missing_ok=True)
    features = build()
    directory.mkdir(parents=True, exist_ok=True)
    scratch = scratch_beside(path)  # a name of its own: two processes or threads building one entry never share it
    try:
        with writing(path):
            save_file(encode_features(features), str(scratch))
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    os.replace(scratch, path)
    return features


def _discard(path: Path) -> None:
    """Remove the entry itself: a link, not what it points to; a directory in its place, with its contents (it
    lies in the cache, under a name only xstilts gives)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
