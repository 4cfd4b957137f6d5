"""The code of each chain mode (declared in `xstilts.chain_modes`), one module per mode family.

A mode's class does three things, which is all `xstilts.train.adapters` asks of it:

- `rebuild(encoder, adapters)`: the encoder of a prefix, from the pretrained encoder and the adapter folders
  of its stages in chain order (each folder holds what `adapter_state` returned and the adapter settings);
- `add_trainable(encoder, settings, name)`: a fresh adapter named `name` on the encoder, returning the encoder
  to train; the caller then trains only the parameters whose names hold `.{name}.` (or start with `{name}.`);
- `adapter_state(encoder, name)`: the adapter's own weights, to be saved as the stage's adapter.

A mode that trains every weight (`full`) needs none of them: its stages save the whole encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from xstilts.rundir.stage_directory import AdapterFiles
from xstilts.settings import AdapterSettings


class ModeCode(Protocol):
    def rebuild(self, encoder: nn.Module, adapters: Sequence[Path]) -> nn.Module: ...

    def add_trainable(self, encoder: nn.Module, settings: AdapterSettings, name: str) -> nn.Module: ...

    def adapter_state(self, encoder: nn.Module, name: str) -> dict[str, torch.Tensor]: ...


def adapter_settings(directory: str | Path) -> AdapterSettings:
    """The settings an adapter folder was trained with (its adapter.json)."""
    data = json.loads(AdapterFiles(Path(directory)).settings.read_text(encoding="utf-8"))
    return AdapterSettings(**{key: data[key] for key in AdapterSettings().trained_adapter()})


def adapter_weights_file(directory: str | Path) -> Path:
    return AdapterFiles(Path(directory)).weights


def no_adapters(mode: str, adapters: Sequence[Any]) -> None:
    if adapters:
        raise ValueError(f"{mode} chains have no adapters, but the recipe lists {len(adapters)}")
