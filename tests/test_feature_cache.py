"""Tokenised features are cached (safetensors) and come back identical, without tokenising again."""

from __future__ import annotations

import numpy as np
import pytest

from xstilts.data.examples import build_features, load_examples
from xstilts.settings import TrainingSettings
from xstilts.tasks import KIND_IMPLEMENTATIONS


def same(a, b) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("task", ["demo_nli", "demo_swag", "demo_squad2", "demo_ner"])
def test_second_build_reads_the_cache(task, demo_registry, tiny_tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("XSTILTS_CACHE", str(tmp_path))
    spec = demo_registry.get(task)
    examples = load_examples(spec, "train", "en")
    settings = TrainingSettings(max_length=48, doc_stride=16)
    first = build_features(spec, examples, tiny_tokenizer, settings, training=True)
    kind = KIND_IMPLEMENTATIONS[spec.kind]
    monkeypatch.setattr(type(kind), "build_features", lambda *a, **k: pytest.fail("tokenised again"))
    second = build_features(spec, examples, tiny_tokenizer, settings, training=True)
    assert len(first) == len(second) and all(
        f.keys() == s.keys() and all(same(f[k], s[k]) for k in f) for f, s in zip(first, second)
    )
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 1


def test_cache_key_covers_settings_examples_and_switch(demo_registry, tiny_tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("XSTILTS_CACHE", str(tmp_path))
    spec = demo_registry.get("demo_nli")
    examples = load_examples(spec, "train", "en")
    build_features(spec, examples, tiny_tokenizer, TrainingSettings(max_length=48), training=True)
    build_features(spec, examples, tiny_tokenizer, TrainingSettings(max_length=32), training=True)
    build_features(spec, examples[:10], tiny_tokenizer, TrainingSettings(max_length=32), training=True)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 3
    monkeypatch.setenv("XSTILTS_FEATURE_CACHE", "0")
    build_features(spec, examples[:5], tiny_tokenizer, TrainingSettings(max_length=32), training=True)
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 3
