"""On-disk caches under one root: the demo encoder and tokenised features.

Features are stored with safetensors (no pickles): every field of a feature list becomes flat
arrays plus lengths, so variable-length sequences, QA offsets and multiple-choice groups round-trip
exactly. A cache entry's name is a hash of everything that determines the features, so a second
run, another stage or another chain with the same tokenizer never tokenises the same data again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from xstilts.files import writing

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


def cached(key_parts: dict[str, Any], build: Callable[[], list[Feature]], root: Path | None = None) -> list[Feature]:
    """The features for `key_parts` from the cache, or built now and stored (written aside, then renamed)."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    directory = (root or cache_root()) / "features"
    path = directory / f"{key}.safetensors"
    if path.is_file():
        try:
            return decode_features(load_file(str(path)))
        except Exception as error:  # a damaged cache entry (a killed writer, a full disk) is rebuilt, never trusted
            log.warning("feature cache entry %s is damaged (%s); tokenising again", path, error)
            path.unlink(missing_ok=True)
    features = build()
    directory.mkdir(parents=True, exist_ok=True)
    scratch = directory / f".{key}.{os.getpid()}.tmp"
    try:
        with writing(path):
            save_file(encode_features(features), str(scratch))
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    os.replace(scratch, path)
    return features
