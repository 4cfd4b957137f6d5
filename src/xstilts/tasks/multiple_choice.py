"""Multiple choice: N candidates per example, each scored by the same one-output head.

HellaSwag, Cosmos QA, CommonsenseQA. Schema: {"context": str, "question": str (optional),
"choices": [str, ...], "label": int}. Each candidate is encoded as the pair (context + question, choice),
as jiant (which ran X-STILTs) builds them: the question belongs to the prompt, the answer stands alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, PooledHead, SingleLabelKind, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec


class MultipleChoiceKind(SingleLabelKind):
    """One head scores each (context + question, choice) pair; softmax over the candidates."""

    name = "multiple_choice"

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        firsts, seconds = [], []
        for example in examples:
            prompt = f"{example['context']} {example.get('question') or ''}".strip()
            for choice in example["choices"]:
                firsts.append(prompt)
                seconds.append(choice)
        encoding = tokenizer(firsts, seconds, truncation=True, max_length=settings.max_length)
        with_types = model_takes_token_types(tokenizer)
        features, row = [], 0
        for i, example in enumerate(examples):
            count = len(example["choices"])
            rows = range(row, row + count)
            feature: Feature = {
                "input_ids": [token_ids(encoding, r) for r in rows],
                "label": example["label"],
                "example_index": i,
            }
            if with_types:
                feature["token_type_ids"] = [token_ids(encoding, r, "token_type_ids") for r in rows]
            features.append(feature)
            row += count
        return features

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        return PooledHead(hidden_size, 1, dropout)

    def logits(self, encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch_size, num_choices, length = batch["input_ids"].shape
        flat = {
            key: batch[key].view(batch_size * num_choices, length)
            for key in ("input_ids", "attention_mask", "token_type_ids")
            if key in batch
        }
        return super().logits(encoder, head, flat).view(batch_size, num_choices)
