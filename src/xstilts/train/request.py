"""What a stage needs, as plain data: the planner builds these, a stage (local or in a Ray worker) runs one.

Nothing here loads a model, so planning a study (`xstilts plan`) never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xstilts.chain_modes import FULL, merge_method
from xstilts.errors import XstiltsError
from xstilts.rundir.layout import from_root, relative_to_root
from xstilts.rundir.stage_directory import StageDirectory
from xstilts.rundir.store import content_identity
from xstilts.settings import AdapterSettings, TrainingSettings
from xstilts.tasks.registry import TaskSpec
from xstilts.train.mixture import Mixture, MixtureMember


@dataclass(frozen=True)
class EncoderRecipe:
    """A full encoder (directory or hub id) plus the adapter directories of the stages on top, in chain order.

    It is what a stage records so that evaluation, retrieval and the latency harness rebuild exactly the
    encoder that was trained; recorded paths inside the stage store are relative to it.
    """

    base: str
    mode: str = FULL
    adapters: tuple[str, ...] = ()

    def then(self, adapter_dir: str | Path) -> EncoderRecipe:
        return EncoderRecipe(self.base, self.mode, self.adapters + (str(adapter_dir),))

    def to_json(self, store_root: Path | None = None) -> dict[str, Any]:
        """The recipe as recorded: with `store_root`, paths inside the store are relative to it."""
        recorded = (lambda path: relative_to_root(path, store_root)) if store_root is not None else str
        return {"base": recorded(self.base), "mode": self.mode, "adapters": [recorded(a) for a in self.adapters]}

    @classmethod
    def from_json(cls, data: dict[str, Any], store_root: Path | None = None) -> EncoderRecipe:
        located = (lambda path: from_root(path, store_root)) if store_root is not None else str
        return cls(located(data["base"]), data.get("mode", FULL), tuple(located(a) for a in data.get("adapters", ())))


@dataclass(frozen=True)
class StageRequest:
    """Everything a stage needs, passed explicitly (nothing is found by guessing paths).

    A multi-task stage carries its `mixture`; `spec` is then its first supervised member and
    `settings` the stage-level settings (optimizer, batch, epochs), while each member keeps its own
    lengths in the mixture.
    """

    identity: str
    role: str  # "intermediate" or "target"
    spec: TaskSpec
    settings: TrainingSettings
    seed: int
    parent: str  # encoder directory or hub id
    parent_identity: str
    chain: tuple[str, ...]  # the intermediate tasks behind the parent encoder, in order
    parent_heads: Path | None = None  # reuse this stage's head from here (explicit opt-in only)
    mixture: Mixture | None = None
    parent_recipe: EncoderRecipe | None = None  # how to build the parent encoder (default: `parent` as it is)
    mode: str = FULL  # chain mode; with `adapter`, this stage trains only a fresh adapter
    adapter: AdapterSettings | None = None

    @property
    def name(self) -> str:
        """The stage's task, or its mixture's name."""
        return self.mixture.name if self.mixture else self.spec.name

    @property
    def members(self) -> tuple[MixtureMember, ...]:
        if self.mixture is not None:
            return self.mixture.members
        return (MixtureMember(self.spec, self.settings, self.spec.name, (self.spec.train_language,)),)

    def output_recipe(self, stage_dir: Path) -> EncoderRecipe:
        """The encoder this stage produces in `stage_dir`: its own full encoder, or its parent's recipe plus its adapter."""
        stage = StageDirectory(stage_dir)
        if self.adapter is None:
            return EncoderRecipe(str(stage.encoder_dir))
        return (self.parent_recipe or EncoderRecipe(self.parent, self.mode)).then(stage.adapter.path)

    @property
    def label(self) -> str:
        """How logs and errors name the stage: "intermediate squad_v1 after mnli"."""
        return f"{self.role} {self.name}" + (f" after {'+'.join(self.chain)}" if self.chain else "")


@dataclass(frozen=True)
class MergeSettings:
    """How task vectors are combined (`xstilts.train.merging`): `weight` is lambda (the same for every task),
    `density` the fraction of each task vector kept (methods that trim or drop), `seed` the draws of random masks."""

    method: str = "task_arithmetic"
    weight: float = 1.0
    density: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            method = merge_method(self.method)
        except ValueError as error:
            raise XstiltsError(f"merge method {self.method!r}: {error}") from None
        if method.uses_density and (self.density is None or not 0 < self.density <= 1):
            raise XstiltsError(f"merge method {self.method}: density must be in (0, 1], got {self.density}")
        if not method.uses_density and self.density is not None:
            raise XstiltsError(f"merge method {self.method} takes no density (got {self.density})")

    def describe(self) -> str:
        """ "lambda 0.5, density 0.3": the setting as the report prints it."""
        return f"lambda {self.weight:g}" + ("" if self.density is None else f", density {self.density:g}")


@dataclass(frozen=True)
class MergeRequest:
    """A merge of the single-task stages `members` ((identity, task) pairs) of one store, on the encoder `base`."""

    base: str  # the pretrained encoder every member was fine-tuned from (directory or hub id)
    base_identity: str
    members: tuple[tuple[str, str], ...]
    settings: MergeSettings

    @property
    def name(self) -> str:
        """The stage's name in the store (a name, not a path: `merge_ties`)."""
        return f"merge_{self.settings.method}"

    @property
    def identity(self) -> str:
        return content_identity(
            {"merge": asdict(self.settings), "base": self.base_identity, "members": [list(m) for m in self.members]}
        )

    @property
    def tasks(self) -> list[str]:
        return [task for _, task in self.members]
