"""What a stage does to the encoder's representations: drift (linear CKA) and cross-lingual alignment.

Sentence representations are each hidden layer's states mean-pooled over the sentence's tokens (the
embedding layer included, as layer 0), so every layer of every encoder is compared on the same sentences.

- **Linear CKA** (Kornblith et al., ICML 2019; debiased as Nguyen, Raghu and Kornblith, ICLR 2021) between two
  encoders' representations of the same sentences: 1 when one is an orthogonal transform and rescaling of the
  other, about 0 when unrelated, whatever the number of sentences against the width. It
  measures how far a stage moved each layer away from the pretrained encoder (and from its parent).
- **Alignment**: for parallel sentences, how often a sentence's nearest English neighbour by cosine is its
  translation (Tatoeba's accuracy), layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xstilts.metrics import finite_matrix


def linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = True) -> float:
    """Linear CKA of two representations (n examples, any widths) of the same n examples.

    `debiased` (the default) uses the unbiased HSIC estimator (Song et al. 2012), as Nguyen, Raghu and Kornblith
    (ICLR 2021) do: the plain estimator is biased upwards when examples are few against dimensions (two unrelated
    random 500 x 1024 matrices score about 0.67), the debiased one is about 0 for unrelated inputs at any size
    and can be slightly negative. Written after the feature-space form of Kornblith et al.'s reference code.
    """
    x, y = finite_matrix("linear_cka: x", x), finite_matrix("linear_cka: y", y)
    n = len(x)
    if len(y) != n or n < (4 if debiased else 2):
        raise ValueError(
            f"linear_cka: expected two (n, d) matrices with the same n >= {4 if debiased else 2}, got {x.shape} and {y.shape}"
        )
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    self_x, self_y = np.linalg.norm(x.T @ x) ** 2, np.linalg.norm(y.T @ y) ** 2
    if debiased:
        rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
        cross = _debiased(cross, rows_x, rows_y, n)
        self_x, self_y = _debiased(self_x, rows_x, rows_x, n), _debiased(self_y, rows_y, rows_y, n)
    if self_x <= 0 or self_y <= 0:
        raise ValueError("linear_cka: a representation is constant over the examples (no variance to compare)")
    return float(cross / np.sqrt(self_x * self_y))


def _debiased(product: float, rows_x: np.ndarray, rows_y: np.ndarray, n: int) -> float:
    """The unbiased HSIC's numerator from the plain one (the factor 1 / (n (n - 3)) cancels in CKA)."""
    return float(product - n / (n - 2) * rows_x @ rows_y + rows_x.sum() * rows_y.sum() / ((n - 1) * (n - 2)))


def retrieval_accuracy(source: np.ndarray, english: np.ndarray) -> float:
    """% of source sentences whose most cosine-similar English sentence is their own translation (row i)."""
    source = finite_matrix("retrieval_accuracy: source", source)
    english = finite_matrix("retrieval_accuracy: english", english)
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
