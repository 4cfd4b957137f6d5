"""The surface every task kind implements, and the pieces they share.

A kind turns examples (plain dicts in the kind's schema) into features (dicts of numpy arrays), owns
a small head on top of the encoder's last hidden states, computes its loss, turns model outputs back
into one prediction per example, and scores predictions. Feature building, decoding and scoring are
pure functions of their inputs so they can be tested without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xstilts.metrics.classification import accuracy, correct_per_example
from xstilts.metrics.units import Units
from xstilts.runtime.cpu_dropout import ATTENTION as CPU_DROPOUT_ATTENTION
from xstilts.settings import TrainingSettings
from xstilts.tasks.registry import TaskSpec
from xstilts.tasks.schema import validate_example

Example = dict[str, Any]
Feature = dict[str, Any]

# Keys padded to the longest sequence of a batch, and the value used for padding (None: the tokenizer's pad id).
PADDED_KEYS: dict[str, int | None] = {"input_ids": None, "token_type_ids": 0, "labels": -100}


class TaskKind:
    """Base class; one subclass per kind, registered in `xstilts.tasks.KIND_IMPLEMENTATIONS`."""

    name: str = ""
    primary_metric: str = ""
    # Feature keys the model needs on the device, besides PADDED_KEYS.
    scalar_keys: tuple[str, ...] = ()

    def validate_example(self, record: dict[str, Any], spec: TaskSpec) -> str | None:
        """A message saying what is wrong with one input record, or None if it is well-formed (`tasks.schema`)."""
        return validate_example(record, spec)

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        raise NotImplementedError

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        raise NotImplementedError

    def head_for(self, spec: TaskSpec, encoder_config: Any, dropout: float) -> nn.Module:
        """The head for an encoder with this config (kinds needing more than the hidden size override this)."""
        return self.make_head(spec, encoder_config.hidden_size, dropout)

    def logits(self, encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """Encoder + head forward pass (heads reading only the first token get the cheaper last layer)."""
        hidden = encode(encoder, batch, first_token_only=isinstance(head, PooledHead))
        return head(hidden)

    def loss(self, logits: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def batch_outputs(self, logits: Any, batch: dict[str, torch.Tensor]) -> list[Any]:
        """Per-feature outputs moved to the host, the only state decoding needs."""
        raise NotImplementedError

    def decode(
        self,
        outputs: Sequence[Any],
        features: Sequence[Feature],
        examples: Sequence[Example],
        spec: TaskSpec,
        settings: TrainingSettings,
    ) -> list[Any]:
        """One prediction per example, in the form `score` and the prediction files use."""
        raise NotImplementedError

    def score(
        self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str
    ) -> dict[str, float]:
        raise NotImplementedError

    def units(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> Units:
        """Per-unit statistics whose sums give the headline score (`xstilts.metrics.units`): what resampling draws."""
        raise NotImplementedError

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        return collate_padded(features, pad_token_id, self.scalar_keys)


class SingleLabelKind(TaskKind):
    """Kinds that predict one class per example from logits of shape (batch, classes): classification, multiple choice."""

    primary_metric = "accuracy"
    scalar_keys = ("label",)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(logits.float(), batch["label"])

    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[Any]:
        return logits.argmax(dim=-1).cpu().tolist()

    def label_of(self, index: int, spec: TaskSpec) -> Any:
        """The prediction for class `index`, in the form of the examples' gold labels."""
        return index

    def decode(
        self,
        outputs: Sequence[Any],
        features: Sequence[Feature],
        examples: Sequence[Example],
        spec: TaskSpec,
        settings: TrainingSettings,
    ) -> list[Any]:
        predictions: list[Any] = [None] * len(examples)
        for output, feature in zip(outputs, features):
            predictions[feature["example_index"]] = self.label_of(int(output), spec)
        return predictions

    def score(
        self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str
    ) -> dict[str, float]:
        return accuracy(predictions, [e["label"] for e in examples])

    def units(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> Units:
        return Units("mean", correct_per_example(predictions, [e["label"] for e in examples]))


def encode(encoder: nn.Module, batch: dict[str, torch.Tensor], first_token_only: bool = False) -> torch.Tensor:
    """Last hidden states of the encoder for the model inputs present in `batch`.

    With `first_token_only` (heads that read the first token only), the last layer is computed for
    that token alone when the architecture allows it (see `_FirstTokenLastLayer`): the same values at
    position 0, and the returned tensor has length 1.
    """
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not first_token_only or not _FirstTokenLastLayer.supports(encoder, layers):
        return encoder(**inputs).last_hidden_state
    last = layers[-1]
    layers[len(layers) - 1] = _FirstTokenLastLayer(last)
    try:
        return encoder(**inputs).last_hidden_state
    finally:
        layers[len(layers) - 1] = last


class _FirstTokenLastLayer(nn.Module):
    """A BERT-family encoder layer computed for the first token only (queries of token 0, keys and values
    of all tokens). For a pooled classification head the other positions of the last layer are never
    read, so this saves 1/L of the encoder's work (a 4-layer model: a quarter; XLM-R Large: 1/24) and
    gives the same values (tested). It stands in for the last layer only during a forward call."""

    SUPPORTED = {"XLMRobertaModel", "RobertaModel", "BertModel", "XLMRobertaXLModel"}

    def __init__(self, layer: nn.Module):
        super().__init__()
        object.__setattr__(self, "wrapped", layer)  # not a submodule: parameter names stay those of the real layer

    @classmethod
    def supports(cls, encoder: nn.Module, layers: Any) -> bool:
        config = encoder.config
        return (
            type(encoder).__name__ in cls.SUPPORTED
            and layers is not None
            and len(layers) > 0
            and getattr(config, "_attn_implementation", None) in ("sdpa", "eager", CPU_DROPOUT_ATTENTION)
            and not getattr(config, "is_decoder", False)
            and hasattr(layers[-1], "attention")
            and hasattr(layers[-1].attention, "self")
            and hasattr(layers[-1], "feed_forward_chunk")
        )

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        layer = self.wrapped
        attention = layer.attention.self
        batch, length, _ = hidden_states.shape
        first = hidden_states[:, :1]

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        query, key, value = (
            split_heads(attention.query(first)),
            split_heads(attention.key(hidden_states)),
            split_heads(attention.value(hidden_states)),
        )
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[:, :, :1, :]
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=attention.dropout.p if layer.training else 0.0,
            scale=attention.scaling,
        )
        context = context.transpose(1, 2).reshape(batch, 1, -1)
        return layer.feed_forward_chunk(layer.attention.output(context, first))


def feature_length(feature: Feature) -> int:
    """Tokens a feature contributes to a padded batch (multiple choice: its longest candidate, per candidate)."""
    ids = feature["input_ids"]
    return max(len(x) for x in ids) * len(ids) if isinstance(ids, list) else len(ids)


def collate_padded(
    features: Sequence[Feature], pad_token_id: int, scalar_keys: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (dynamic padding).

    A feature's sequence value is one 1-D array, or a list of them (multiple choice: one per
    candidate), giving tensors of shape (batch, length) or (batch, candidates, length).
    """
    batch: dict[str, torch.Tensor] = {}
    grouped = isinstance(features[0]["input_ids"], list)
    sequences = [f["input_ids"] if grouped else [f["input_ids"]] for f in features]
    longest = max(len(seq) for group in sequences for seq in group)
    for key, pad in PADDED_KEYS.items():
        if key not in features[0]:
            continue
        values = [f[key] if grouped else [f[key]] for f in features]
        out = np.full((len(values), len(values[0]), longest), pad_token_id if pad is None else pad, dtype=np.int64)
        for i, group in enumerate(values):
            for j, seq in enumerate(group):
                out[i, j, : len(seq)] = seq
        batch[key] = torch.from_numpy(out if grouped else out[:, 0])
    # The mask comes from the true lengths, not from comparing with the pad id (which may be a real token).
    mask = np.zeros((len(sequences), len(sequences[0]), longest), dtype=np.int64)
    for i, group in enumerate(sequences):
        for j, seq in enumerate(group):
            mask[i, j, : len(seq)] = 1
    batch["attention_mask"] = torch.from_numpy(mask if grouped else mask[:, 0])
    for key in scalar_keys:
        if key in features[0]:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
    return batch


def token_ids(encoding: Any, index: int, key: str = "input_ids") -> np.ndarray:
    """One sequence of a batch encoding as a compact int32 array (features are kept in memory)."""
    return np.asarray(encoding[key][index], dtype=np.int32)


def model_takes_token_types(tokenizer: Any) -> bool:
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


class PooledHead(nn.Module):
    """The RoBERTa classification head: dropout, dense, tanh, dropout, projection, on the first token."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden_states[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class TokenHead(nn.Module):
    """A linear layer over every token (tagging labels, QA start/end scores)."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(hidden_states))
