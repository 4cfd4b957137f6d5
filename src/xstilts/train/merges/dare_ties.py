"""DARE, combined as TIES does (Yu et al. 2024): random drop and rescale, then sign election and the disjoint mean."""

from __future__ import annotations

import torch
from peft.utils import merge_utils


def combine(deltas: list[torch.Tensor], weights: torch.Tensor, density: float | None) -> torch.Tensor:
    return merge_utils.dare_ties(deltas, weights, density, majority_sign_method="total")
