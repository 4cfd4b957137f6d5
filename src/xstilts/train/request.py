"""What a stage needs, as plain data: the planner builds these, a stage (local or in a Ray worker) runs one.

Nothing here loads a model, so planning a study (`xstilts plan`) never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xstilts.chain_modes import FULL
from xstilts.rundir.layout import from_root, relative_to_root
from xstilts.rundir.stage_directory import StageDirectory
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
