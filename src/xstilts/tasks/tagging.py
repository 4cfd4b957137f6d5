"""Token tagging: one label per word (UD-POS, PAN-X, CCG supertags).

Schema: {"tokens": [str, ...], "tags": [str, ...]}. The first sub-token of each word carries the
word's label; the other sub-tokens are ignored in the loss and the prediction (docs/protocol.md 4.3).
A sentence longer than `max_length` sub-tokens is split into consecutive chunks of whole words, as
XTREME's preprocessing does, and the chunks' predictions are joined again. A word the tokenizer maps
to no token at all gets the fallback label "O" (the first label if the task has no "O"), so that
predictions always line up with words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xstilts.metrics.tagging import chunk_counts_per_sentence, seqeval_scores
from xstilts.metrics.units import Units
from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, TaskKind, TokenHead, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec

IGNORE_INDEX = -100


def _word_chunks(examples: Sequence[Example], tokenizer: Any, max_length: int) -> list[tuple[int, int, int]]:
    """(example, first word, end word) spans whose sub-tokens fit in `max_length` with special tokens.

    Greedy over whole words, like XTREME's tokenize-preprocess step; a single word longer than the
    limit gets a chunk of its own and is truncated (its first sub-token, which carries the label, stays).
    """
    limit = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    encoding = tokenizer([e["tokens"] for e in examples], is_split_into_words=True, add_special_tokens=False)
    chunks = []
    for index, example in enumerate(examples):
        counts = np.bincount([w for w in encoding.word_ids(index) if w is not None], minlength=len(example["tokens"]))
        start, used = 0, 0
        for word, count in enumerate(counts):
            if used + count > limit and word > start:
                chunks.append((index, start, word))
                start, used = word, 0
            used += count
        chunks.append((index, start, len(example["tokens"])))
    return chunks


class TaggingKind(TaskKind):
    name = "tagging"
    primary_metric = "f1"

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        label_ids = {label: i for i, label in enumerate(spec.labels)}
        chunks = _word_chunks(examples, tokenizer, settings.max_length)
        encoding = tokenizer(
            [examples[i]["tokens"][start:end] for i, start, end in chunks],
            is_split_into_words=True,
            truncation=True,
            max_length=settings.max_length,
        )
        with_types = model_takes_token_types(tokenizer)
        features = []
        for row, (example_index, start, end) in enumerate(chunks):
            tags = examples[example_index]["tags"][start:end]
            labels = np.full(len(encoding["input_ids"][row]), IGNORE_INDEX, dtype=np.int32)
            word_token = np.full(end - start, -1, dtype=np.int32)
            previous = None
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:
                    labels[position] = label_ids[tags[word]]
                    word_token[word] = position
                previous = word
            feature: Feature = {
                "input_ids": token_ids(encoding, row),
                "labels": labels,
                "word_token": word_token,
                "example_index": example_index,
                "word_start": start,
            }
            if with_types:
                feature["token_type_ids"] = token_ids(encoding, row, "token_type_ids")
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
        self,
        outputs: Sequence[Any],
        features: Sequence[Feature],
        examples: Sequence[Example],
        spec: TaskSpec,
        settings: TrainingSettings,
    ) -> list[Any]:
        fallback = "O" if "O" in spec.labels else spec.labels[0]
        predictions: list[Any] = [[fallback] * len(e["tokens"]) for e in examples]
        for output, feature in zip(outputs, features):
            words = predictions[feature["example_index"]]
            for offset, position in enumerate(feature["word_token"]):
                if position >= 0:
                    words[feature["word_start"] + offset] = spec.labels[output[position]]
        return predictions

    def score(
        self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str
    ) -> dict[str, float]:
        return seqeval_scores(predictions, [e["tags"] for e in examples])

    def units(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> Units:
        return Units("f1", chunk_counts_per_sentence(predictions, [e["tags"] for e in examples]))
