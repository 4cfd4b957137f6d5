"""Merging fine-tuned encoders: one encoder from several trained from the same base, with no further training.

Each task's *task vector* is its fine-tuned weights minus the base's (Ilharco et al. 2023). A merge adds a
combination of the task vectors to the base, tensor by tensor, with the method's code (`xstilts.train.merges`: PEFT's merge functions for task arithmetic,
TIES, DARE-linear and DARE-TIES; the registry is `xstilts.chain_modes.MERGE_METHODS`).

In xstilts the task vectors are the k = 1 stages of a study (each task trained alone from the pretrained
encoder), so a merge of any set of pool tasks costs the merge and its targets' fine-tuning only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch

from xstilts.chain_modes import merge_method
from xstilts.errors import XstiltsError
from xstilts.train.request import MergeSettings


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
    """One tensor's combined task vectors, by the method's code (`xstilts.train.merges`)."""
    with warnings.catch_warnings():  # density 1 (keep everything) is a legitimate setting, not a mistake
        warnings.filterwarnings("ignore", message="The density .* no pruning will be performed")
        return merge_method(settings.method).implementation()(deltas, weights, settings.density)
