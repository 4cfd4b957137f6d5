"""`full`: every weight trains in every stage; a stage saves the whole encoder, so there is nothing to rebuild."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from xstilts.settings import AdapterSettings
from xstilts.train.modes import no_adapters


class FullFineTuning:
    def rebuild(self, encoder: nn.Module, adapters: Sequence[Path]) -> nn.Module:
        no_adapters("full", adapters)
        return encoder

    def add_trainable(self, encoder: nn.Module, settings: AdapterSettings, name: str) -> nn.Module:
        raise ValueError("full chains train every weight: a stage adds no adapter")

    def adapter_state(self, encoder: nn.Module, name: str) -> dict[str, torch.Tensor]:
        raise ValueError("full chains save the whole encoder, not an adapter")
