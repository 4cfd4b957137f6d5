"""What a stage does to the encoder's representations: drift (linear CKA) and cross-lingual alignment.

Sentence representations are each hidden layer's states mean-pooled over the sentence's tokens (the
embedding layer included, as layer 0), so every layer of every encoder is compared on the same sentences.

- **Linear CKA** (Kornblith et al., ICML 2019) between two encoders' representations of the same
  sentences: 1 when one is an orthogonal transform and rescaling of the other, near 0 when unrelated. It
  measures how far a stage moved each layer away from the pretrained encoder (and from its parent).
- **Alignment**: for parallel sentences, how often a sentence's nearest English neighbour by cosine is its
  translation (Tatoeba's accuracy), layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations (n examples, any widths) of the same n examples."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"linear_cka: expected two (n, d) matrices with the same n >= 2, got {x.shape} and {y.shape}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def retrieval_accuracy(source: np.ndarray, english: np.ndarray) -> float:
    """% of source sentences whose most cosine-similar English sentence is their own translation (row i)."""
    source = np.asarray(source, dtype=np.float64)
    english = np.asarray(english, dtype=np.float64)
    if source.shape != english.shape:
        raise ValueError(f"retrieval_accuracy: parallel sets of different shapes {source.shape} and {english.shape}")
    a = source / np.maximum(np.linalg.norm(source, axis=1, keepdims=True), 1e-12)
    b = english / np.maximum(np.linalg.norm(english, axis=1, keepdims=True), 1e-12)
    return 100.0 * float((np.argmax(a @ b.T, axis=1) == np.arange(len(a))).mean())


@torch.no_grad()
def layer_representations(
    encoder: torch.nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int = 128, batch_size: int = 32
) -> list[np.ndarray]:
    """Every hidden layer's mean-pooled sentence representations: a list of (len(texts), hidden) arrays."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    layers: list[list[np.ndarray]] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = encoder(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        for index, states in enumerate(hidden):
            pooled = (states.float() * mask).sum(1) / mask.sum(1).clamp_min(1)
            if len(layers) <= index:
                layers.append([])
            layers[index].append(pooled.cpu().numpy())
    encoder.train(was_training)
    return [np.concatenate(parts) for parts in layers]
