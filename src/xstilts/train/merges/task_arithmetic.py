"""Task arithmetic (Ilharco et al. 2023): lambda x the sum of the task vectors."""

from __future__ import annotations

import torch
from peft.utils import merge_utils


def combine(deltas: list[torch.Tensor], weights: torch.Tensor, density: float | None) -> torch.Tensor:
    return merge_utils.task_arithmetic(deltas, weights)
