"""Multi-task stages: a named mixture of tasks trained together in one stage.

Every optimizer step trains on one member task, drawn with the mixture's sampler (as jiant does):

- proportional: p_i ∝ n_i (the size of member i's training set);
- temperature: p_i ∝ n_i^(1/T) (T = 1 is proportional, T -> inf is uniform);
- uniform: p_i = 1/m;
- capped: p_i ∝ min(n_i, cap) (large tasks stop dominating beyond `cap` examples).

One epoch of a mixture is the sum of its members' sizes (capped sizes for `capped`). Members have their
own heads unless they share one by name; masked LM on multilingual text can be a member.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from xstilts.settings import TrainingSettings
from xstilts.tasks.registry import TaskSpec

SAMPLERS = ("proportional", "temperature", "uniform", "capped")


@dataclass(frozen=True)
class MixtureMember:
    spec: TaskSpec
    settings: TrainingSettings  # the member's own lengths (QA windows, MLM text length)
    head: str  # head name; members with the same name share one head
    languages: tuple[str, ...]  # training languages (English for tasks, the corpus languages for MLM)
    max_examples_per_language: int | None = None


@dataclass(frozen=True)
class Mixture:
    name: str
    members: tuple[MixtureMember, ...]
    sampler: str = "proportional"
    temperature: float = 2.0
    cap: int | None = None

    @property
    def head_of(self) -> dict[str, str]:
        return {member.spec.name: member.head for member in self.members}

    @property
    def supervised(self) -> list[MixtureMember]:
        """Members with a dev set to validate on (not masked LM)."""
        return [member for member in self.members if member.spec.kind != "mlm"]

    def epoch_size(self, sizes: Mapping[str, int]) -> int:
        if self.sampler == "capped":
            return sum(min(size, self.cap) for size in sizes.values())
        return sum(sizes.values())

    def probabilities(self, sizes: Mapping[str, int]) -> dict[str, float]:
        """Sampling probability of each member given its number of training features."""
        return sampling_probabilities(sizes, self.sampler, self.temperature, self.cap)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sampler": self.sampler,
            "temperature": self.temperature if self.sampler == "temperature" else None,
            "cap": self.cap if self.sampler == "capped" else None,
            "members": [
                {
                    "task": m.spec.fingerprint(),
                    "settings": m.settings.model_dump(),
                    "head": m.head,
                    "languages": list(m.languages),
                    "max_examples_per_language": m.max_examples_per_language,
                }
                for m in self.members
            ],
        }


def sampling_probabilities(
    sizes: Mapping[str, int], sampler: str, temperature: float = 2.0, cap: int | None = None
) -> dict[str, float]:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    names = list(sizes)
    counts = np.array([sizes[name] for name in names], dtype=np.float64)
    if sampler == "proportional":
        weights = counts
    elif sampler == "temperature":
        weights = counts ** (1.0 / temperature)
    elif sampler == "uniform":
        weights = np.ones_like(counts)
    else:
        if cap is None:
            raise ValueError("the capped sampler needs a cap")
        weights = np.minimum(counts, cap)
    weights = weights / weights.sum()
    return {name: float(weight) for name, weight in zip(names, weights)}


def task_schedule(probabilities: Mapping[str, float], total_steps: int, seed: int) -> list[str]:
    """The member trained at each optimizer step: a function of (seed, probabilities) only, so resuming replays it."""
    names = list(probabilities)
    rng = np.random.default_rng([seed, 0x5EED])
    picks = rng.choice(len(names), size=total_steps, p=np.array([probabilities[n] for n in names]))
    return [names[i] for i in picks]
