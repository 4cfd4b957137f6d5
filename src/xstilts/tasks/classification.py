"""Sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, QQP).

Schema: {"text_a": str, "text_b": str (optional), "label": one of the task's labels}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, PooledHead, SingleLabelKind, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec


class ClassificationKind(SingleLabelKind):
    name = "classification"

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        label_ids = {label: i for i, label in enumerate(spec.labels)}
        firsts = [e["text_a"] for e in examples]
        seconds = [e.get("text_b") for e in examples]
        pairs = any(s is not None for s in seconds)
        encoding = tokenizer(
            firsts, [s or "" for s in seconds] if pairs else None, truncation=True, max_length=settings.max_length
        )
        with_types = model_takes_token_types(tokenizer)
        features = []
        for i, example in enumerate(examples):
            feature: Feature = {
                "input_ids": token_ids(encoding, i),
                "label": label_ids[example["label"]],
                "example_index": i,
            }
            if with_types:
                feature["token_type_ids"] = token_ids(encoding, i, "token_type_ids")
            features.append(feature)
        return features

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        return PooledHead(hidden_size, len(spec.labels), dropout)

    def label_of(self, index: int, spec: TaskSpec) -> Any:
        return spec.labels[index]
