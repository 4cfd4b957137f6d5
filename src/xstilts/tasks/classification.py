"""Sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, QQP).

Schema: {"text_a": str, "text_b": str (optional), "label": one of the task's labels}.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from xstilts.metrics.classification import accuracy
from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, PooledHead, TaskKind, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec


class ClassificationKind(TaskKind):
    name = "classification"
    primary_metric = "accuracy"
    scalar_keys = ("label",)

    def validate_example(self, record: dict[str, Any], spec: TaskSpec) -> str | None:
        if not isinstance(record.get("text_a"), str):
            return "expected a string field 'text_a'"
        if record.get("text_b") is not None and not isinstance(record["text_b"], str):
            return "field 'text_b' must be a string when present"
        if record.get("label") not in spec.labels:
            return f"field 'label' must be one of {list(spec.labels)}, got {record.get('label')!r}"
        return None

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
            feature: Feature = {"input_ids": token_ids(encoding, i), "label": label_ids[example["label"]], "example_index": i}
            if with_types:
                feature["token_type_ids"] = token_ids(encoding, i, "token_type_ids")
            features.append(feature)
        return features

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        return PooledHead(hidden_size, len(spec.labels), dropout)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["label"])

    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[Any]:
        return logits.argmax(dim=-1).cpu().tolist()

    def decode(
        self, outputs: Sequence[Any], features: Sequence[Feature], examples: Sequence[Example], spec: TaskSpec, settings: TrainingSettings
    ) -> list[Any]:
        predictions: list[Any] = [None] * len(examples)
        for output, feature in zip(outputs, features):
            predictions[feature["example_index"]] = spec.labels[output]
        return predictions

    def score(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> dict[str, float]:
        return accuracy(predictions, [e["label"] for e in examples])
