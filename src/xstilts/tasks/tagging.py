"""Token tagging: one label per word (UD-POS, PAN-X, CCG supertags).

Schema: {"tokens": [str, ...], "tags": [str, ...]}. The first sub-token of each word carries the
word's label; the other sub-tokens are ignored in the loss and the prediction (protocol.md 4.3).
Words cut off by `max_length`, or that the tokenizer maps to no token at all, get the fallback
label "O" (the first label if the task has no "O") so that predictions always line up with words.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xstilts.metrics.tagging import seqeval_scores
from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, TaskKind, TokenHead, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec

IGNORE_INDEX = -100


class TaggingKind(TaskKind):
    name = "tagging"
    primary_metric = "f1"

    def validate_example(self, record: dict[str, Any], spec: TaskSpec) -> str | None:
        tokens, tags = record.get("tokens"), record.get("tags")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            return "expected 'tokens': a list of strings"
        if not isinstance(tags, list) or len(tags) != len(tokens):
            return f"expected 'tags': one tag per token ({len(tokens)} tokens)"
        unknown = sorted({t for t in tags if t not in spec.labels})
        if unknown:
            return f"unknown tags {unknown}; expected tags from {list(spec.labels)}"
        return None

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        label_ids = {label: i for i, label in enumerate(spec.labels)}
        encoding = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, truncation=True, max_length=settings.max_length)
        with_types = model_takes_token_types(tokenizer)
        features = []
        for i, example in enumerate(examples):
            labels = np.full(len(encoding["input_ids"][i]), IGNORE_INDEX, dtype=np.int32)
            word_token = np.full(len(example["tokens"]), -1, dtype=np.int32)
            previous = None
            for position, word in enumerate(encoding.word_ids(i)):
                if word is not None and word != previous:
                    labels[position] = label_ids[example["tags"][word]]
                    word_token[word] = position
                previous = word
            feature: Feature = {"input_ids": token_ids(encoding, i), "labels": labels, "word_token": word_token, "example_index": i}
            if with_types:
                feature["token_type_ids"] = token_ids(encoding, i, "token_type_ids")
            features.append(feature)
        return features

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        return TokenHead(hidden_size, len(spec.labels), dropout)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)

    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[Any]:
        lengths = batch["attention_mask"].sum(dim=-1).tolist()
        best = logits.argmax(dim=-1).cpu().numpy()
        return [best[i, :length] for i, length in enumerate(lengths)]

    def decode(
        self, outputs: Sequence[Any], features: Sequence[Feature], examples: Sequence[Example], spec: TaskSpec, settings: TrainingSettings
    ) -> list[Any]:
        fallback = "O" if "O" in spec.labels else spec.labels[0]
        predictions: list[Any] = [None] * len(examples)
        for output, feature in zip(outputs, features):
            predictions[feature["example_index"]] = [spec.labels[output[t]] if t >= 0 else fallback for t in feature["word_token"]]
        return predictions

    def score(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> dict[str, float]:
        return seqeval_scores(predictions, [e["tags"] for e in examples])
