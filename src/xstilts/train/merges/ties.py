"""TIES (Yadav et al. 2023): each task vector trimmed to its `density` largest magnitudes, a sign elected per entry
by the total mass, the mean over the task vectors that agree with it (zeros not counted), times lambda. Trimmed
tensor by tensor, as PEFT and mergekit do (the paper ranks the whole vector at once)."""

from __future__ import annotations

import torch
from peft.utils import merge_utils


def combine(deltas: list[torch.Tensor], weights: torch.Tensor, density: float | None) -> torch.Tensor:
    return merge_utils.ties(deltas, weights, density, majority_sign_method="total")
