"""Masked language modelling on multilingual text, mixed into an intermediate stage (X-STILTs' MLM variant).

Schema: {"text": str}, read from `{language}.txt` files (one text per line) or JSONL. Masking follows
BERT: 15% of the non-special tokens are chosen; 80% of them become the mask token, 10% a random
token, 10% stay. Masks are drawn at collation from torch's RNG, which checkpoints save and restore,
so a resumed stage masks exactly as an uninterrupted one. The head is RoBERTa's (dense, GELU,
LayerNorm, then the input embeddings as the output projection, tied by reading them at run time
rather than sharing a parameter, which keeps safetensors files free of shared storage).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, TaskKind, collate_padded, encode
from xstilts.tasks.registry import TaskSpec

MASK_PROBABILITY = 0.15


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm; the decoder is the encoder's input embedding matrix plus this bias."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor, embedding_weight: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(F.gelu(self.dense(hidden_states)))
        return F.linear(x, embedding_weight) + self.bias


class MaskedLMKind(TaskKind):
    name = "mlm"
    primary_metric = "loss"

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        if tokenizer.mask_token_id is None:
            raise ValueError(f"task {spec.name}: the tokenizer has no mask token, so it cannot train masked LM")
        encoding = tokenizer(
            [e["text"] for e in examples],
            truncation=True,
            max_length=settings.max_length,
            return_special_tokens_mask=True,
        )
        return [
            {
                "input_ids": np.asarray(ids, dtype=np.int32),
                "special_tokens_mask": np.asarray(special, dtype=np.int8),
                "mask_token_id": tokenizer.mask_token_id,
                "vocab_size": len(tokenizer),
                "example_index": i,
            }
            for i, (ids, special) in enumerate(zip(encoding["input_ids"], encoding["special_tokens_mask"]))
        ]

    def head_for(self, spec: TaskSpec, encoder_config: Any, dropout: float) -> nn.Module:
        return MaskedLMHead(
            encoder_config.hidden_size, encoder_config.vocab_size, getattr(encoder_config, "layer_norm_eps", 1e-5)
        )

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        batch = collate_padded(features, pad_token_id)
        maskable = batch["attention_mask"].bool()
        for row, feature in enumerate(features):
            maskable[row, : len(feature["special_tokens_mask"])] &= torch.from_numpy(
                feature["special_tokens_mask"] == 0
            )
        input_ids, labels = mask_tokens(
            batch["input_ids"], maskable, features[0]["mask_token_id"], (0, features[0]["vocab_size"])
        )
        batch["input_ids"], batch["labels"] = input_ids, labels
        return batch

    def logits(self, encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Vocabulary logits at the masked positions only (the other positions cost no projection)."""
        hidden = encode(encoder, batch)
        return head(hidden[batch["labels"] != -100], encoder.get_input_embeddings().weight)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch["labels"][batch["labels"] != -100]
        if targets.numel() == 0:  # nothing masked in a batch of very short texts
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), targets)


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    random_tokens: tuple[int, int],
    probability: float = MASK_PROBABILITY,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: returns (masked inputs, labels with -100 where nothing is predicted).

    `probability` of the maskable tokens are chosen; of those, 80% become the mask token, 10% a random
    token from the id range `random_tokens` (low inclusive, high exclusive), 10% stay.
    """
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    masked = input_ids.clone()
    replaced = chosen & (torch.rand(input_ids.shape, generator=generator) < 0.8)
    masked[replaced] = mask_token_id
    randomised = chosen & ~replaced & (torch.rand(input_ids.shape, generator=generator) < 0.5)
    masked[randomised] = torch.randint(*random_tokens, input_ids.shape, generator=generator)[randomised]
    return masked, labels
