"""Merging fine-tuned encoders: one encoder from several trained from the same base, with no further training.

Each task's *task vector* is its fine-tuned weights minus the base's (Ilharco et al. 2023). A merge adds a
combination of the task vectors to the base, tensor by tensor, with PEFT's merge functions
(`peft.utils.merge_utils`), whose semantics `tests/test_merging.py` checks against the papers on small known
tensors:

- task arithmetic: base + lambda x the sum of the task vectors (Ilharco et al. 2023);
- TIES: each task vector trimmed to its `density` largest magnitudes, a sign elected per entry by the total
  mass, and the mean over the task vectors that agree with it (zeros not counted), times lambda (Yadav et al.
  2023; trimmed tensor by tensor, as PEFT and mergekit do, where the paper ranks the whole vector at once);
- DARE: each entry of each task vector dropped with probability 1 - `density` and the rest rescaled by
  1 / `density`, then combined linearly (`dare_linear`) or as TIES does (`dare_ties`) (Yu et al. 2024).

In xstilts the task vectors are the k = 1 stages of a study (each task trained alone from the pretrained
encoder), so a merge of any set of pool tasks costs the merge and its targets' fine-tuning only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from peft.utils import merge_utils

from xstilts.errors import XstiltsError

MergeMethod = Literal["task_arithmetic", "ties", "dare_linear", "dare_ties"]
MERGE_METHODS: tuple[str, ...] = ("task_arithmetic", "ties", "dare_linear", "dare_ties")
NEEDS_DENSITY = {"ties", "dare_linear", "dare_ties"}
RANDOM = {"dare_linear", "dare_ties"}  # draw their drop masks: seeded


@dataclass(frozen=True)
class MergeSettings:
    """How the task vectors are combined: `weight` is lambda (the same for every task), `density` the fraction
    of each task vector kept (TIES, DARE), `seed` the draws of DARE's drop masks."""

    method: MergeMethod = "task_arithmetic"
    weight: float = 1.0
    density: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in MERGE_METHODS:
            raise XstiltsError(f"merge method {self.method!r}: expected one of {', '.join(MERGE_METHODS)}")
        if self.method in NEEDS_DENSITY and (self.density is None or not 0 < self.density <= 1):
            raise XstiltsError(f"merge method {self.method}: density must be in (0, 1], got {self.density}")
        if self.method not in NEEDS_DENSITY and self.density is not None:
            raise XstiltsError(f"merge method {self.method} takes no density (got {self.density})")


def merge_states(
    base: Mapping[str, torch.Tensor], tuned: Sequence[Mapping[str, torch.Tensor]], settings: MergeSettings
) -> dict[str, torch.Tensor]:
    """The merged state: base + the combined task vectors (each model's tensor minus the base's), tensor by
    tensor, in the base's dtypes. Buffers that are not floating point (position ids) are the base's. The models
    may hold more tensors than the base (a pooler); the base's must all be there, with its shapes. `tuned` may
    be lazy mappings (a weight file read one tensor at a time): only one tensor per model is held at once."""
    if not tuned:
        raise XstiltsError("a merge needs at least one fine-tuned model")
    for index, state in enumerate(tuned):
        missing = sorted(set(base) - set(state))
        if missing:
            raise XstiltsError(
                f"model {index + 1} of the merge lacks tensors of the base ({', '.join(missing[:3])}); only encoders "
                "fine-tuned from the same base can be merged"
            )
    weights = torch.full((len(tuned),), float(settings.weight))
    merged: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        for key, value in base.items():
            if not value.is_floating_point():
                merged[key] = value.clone()
                continue
            deltas = [_delta(state[key], value, key, index) for index, state in enumerate(tuned)]
            merged[key] = (value.float() + combine(deltas, weights, settings)).to(value.dtype)
    return merged


def _delta(tensor: torch.Tensor, base: torch.Tensor, key: str, index: int) -> torch.Tensor:
    if tensor.shape != base.shape:
        raise XstiltsError(
            f"model {index + 1} of the merge: {key} has shape {tuple(tensor.shape)}, the base {tuple(base.shape)}; "
            "only encoders fine-tuned from the same base can be merged"
        )
    return tensor.float() - base.float()


def combine(deltas: list[torch.Tensor], weights: torch.Tensor, settings: MergeSettings) -> torch.Tensor:
    """One tensor's combined task vectors, by PEFT's function for the method."""
    with warnings.catch_warnings():  # density 1 (keep everything) is a legitimate setting, not a mistake
        warnings.filterwarnings("ignore", message="The density .* no pruning will be performed")
        return _peft_merge(deltas, weights, settings)


def _peft_merge(deltas: list[torch.Tensor], weights: torch.Tensor, settings: MergeSettings) -> torch.Tensor:
    if settings.method == "task_arithmetic":
        return merge_utils.task_arithmetic(deltas, weights)
    if settings.method == "ties":
        return merge_utils.ties(deltas, weights, settings.density, majority_sign_method="total")
    if settings.method == "dare_linear":
        return merge_utils.dare_linear(deltas, weights, settings.density)
    return merge_utils.dare_ties(deltas, weights, settings.density, majority_sign_method="total")
