"""DARE, combined linearly (Yu et al. 2024): each entry of each task vector dropped with probability 1 - `density`,
the rest rescaled by 1 / `density`, then lambda x their sum. The masks come from torch's generator, which
`xstilts.train.merging.merge_states` seeds."""

from __future__ import annotations

import torch
from peft.utils import merge_utils


def combine(deltas: list[torch.Tensor], weights: torch.Tensor, density: float | None) -> torch.Tensor:
    return merge_utils.dare_linear(deltas, weights, density)
