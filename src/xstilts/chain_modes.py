"""Chain modes: how each stage of a chain changes the encoder, declared once.

The declarations are plain data, so the config, the planner and the CLI read them without importing torch;
each mode's code is one module under `xstilts.train.modes`, imported when a stage or a model needs it.

Adding a mode: write `xstilts/train/modes/<name>.py` with a class that does what `xstilts.train.modes.ModeCode`
describes, and add one `register(...)` line at the end of this file. The config accepts it, the planner gives
it its own stages (its identities differ from every other mode's), the report and latency tables get a block.

Merged modes combine k tasks without a chain: each task's single-task stage (trained from the pretrained encoder)
gives a task vector, and a merge method adds a combination of them to the pretrained weights. Adding a method:
write `xstilts/train/merges/<name>.py` with a function `combine(deltas, weights, density)` (one tensor's task
vectors -> their combined delta) and add one `register_merge(...)` line at the end of this file. The config's
`study.combine.methods`, `xstilts merge --method` and the combination study then offer it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

FULL = "full"  # every weight trains in every stage: the paper's mode, and the default


@dataclass(frozen=True)
class ChainMode:
    """What the rest of the project needs to know about a mode, without its code."""

    name: str
    code: str  # "module:Class" of its implementation (see xstilts.train.modes)
    trains_adapters: bool  # a stage trains only a fresh adapter on its frozen parent (and saves only that)
    stacked: bool  # the stages' adapters stay separate modules at inference: the cost grows with k
    summary: str

    def implementation(self) -> Any:
        """An instance of the mode's code (imports torch and peft)."""
        module, _, name = self.code.partition(":")
        return getattr(importlib.import_module(module), name)()


CHAIN_MODES: dict[str, ChainMode] = {}


def register(mode: ChainMode) -> ChainMode:
    if mode.name in CHAIN_MODES:
        raise ValueError(f"chain mode {mode.name!r} is registered twice")
    CHAIN_MODES[mode.name] = mode
    return mode


def unregister(name: str) -> None:
    """Remove a mode registered at run time (a plug-in, a test)."""
    if name == FULL:
        raise ValueError("the full chain mode cannot be removed")
    CHAIN_MODES.pop(name, None)


def chain_mode(name: str) -> ChainMode:
    try:
        return CHAIN_MODES[name]
    except KeyError:
        raise ValueError(f"unknown chain mode {name!r}; expected one of {', '.join(CHAIN_MODES)}") from None


def _closed_set(name: str, known: dict[str, Any]) -> str:
    """A config's name, checked against a registry with pydantic's wording for a closed set."""
    if name not in known:
        names = [repr(entry) for entry in known]
        expected = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return name


ChainModeName = Annotated[str, AfterValidator(lambda name: _closed_set(name, CHAIN_MODES))]
"""A config field holding a registered chain mode's name."""


@dataclass(frozen=True)
class MergeMethod:
    """A way to merge single-task encoders, declared without its code (which imports torch)."""

    name: str
    code: str  # "module:function" of its `combine(deltas, weights, density)` (see xstilts.train.merges)
    uses_density: bool  # keeps a fraction `density` of each task vector (the grid then spans densities too)
    random: bool  # draws (seeded) random masks
    summary: str

    def implementation(self) -> Any:
        module, _, name = self.code.partition(":")
        return getattr(importlib.import_module(module), name)


MERGE_METHODS: dict[str, MergeMethod] = {}


def register_merge(method: MergeMethod) -> MergeMethod:
    if method.name in MERGE_METHODS or method.name in CHAIN_MODES:
        raise ValueError(f"merge method {method.name!r} is registered twice")
    MERGE_METHODS[method.name] = method
    return method


def unregister_merge(name: str) -> None:
    """Remove a merge method registered at run time (a plug-in, a test)."""
    MERGE_METHODS.pop(name, None)


def merge_method(name: str) -> MergeMethod:
    try:
        return MERGE_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown merge method {name!r}; expected one of {', '.join(MERGE_METHODS)}") from None


MergeMethodName = Annotated[str, AfterValidator(lambda name: _closed_set(name, MERGE_METHODS))]
"""A config field holding a registered merge method's name."""


def default_target_tuning(name: str) -> str:
    """How targets are fine-tuned after a chain of this mode unless the config says: every weight after full
    chains, a fresh adapter after adapter chains (their point is a frozen shared encoder)."""
    return "adapter" if chain_mode(name).trains_adapters else "full"


register(ChainMode(FULL, "xstilts.train.modes.full:FullFineTuning", False, False, "every weight trains in every stage"))
register(
    ChainMode(
        "lora-merged",
        "xstilts.train.modes.lora:MergedLoRA",
        True,
        False,
        "a LoRA per stage, merged into the encoder in chain order (no inference cost)",
    )
)
register(
    ChainMode(
        "lora-stacked",
        "xstilts.train.modes.lora:StackedLoRA",
        True,
        True,
        "a LoRA per stage, all active at inference (k LoRAs on every adapted layer)",
    )
)
register(
    ChainMode(
        "adapter-stacked",
        "xstilts.train.modes.bottleneck:StackedBottlenecks",
        True,
        True,
        "a bottleneck adapter per stage after every layer, applied in chain order",
    )
)
register_merge(
    MergeMethod(
        "task_arithmetic",
        "xstilts.train.merges.task_arithmetic:combine",
        False,
        False,
        "base + lambda x the sum of the task vectors (Ilharco et al. 2023)",
    )
)
register_merge(
    MergeMethod(
        "ties",
        "xstilts.train.merges.ties:combine",
        True,
        False,
        "trim each task vector to its largest entries, elect a sign, average those that agree (Yadav et al. 2023)",
    )
)
register_merge(
    MergeMethod(
        "dare_linear",
        "xstilts.train.merges.dare_linear:combine",
        True,
        True,
        "drop entries at random and rescale the rest, then add (Yu et al. 2024)",
    )
)
register_merge(
    MergeMethod(
        "dare_ties",
        "xstilts.train.merges.dare_ties:combine",
        True,
        True,
        "drop entries at random and rescale the rest, then combine as TIES does (Yu et al. 2024)",
    )
)
