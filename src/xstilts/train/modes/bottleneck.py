"""`adapter-stacked`: bottleneck adapters (MAD-X style: down-projection, ReLU, up-projection, residual) after
every layer, one per stage, applied in chain order; all of them run at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from xstilts.settings import AdapterSettings
from xstilts.train.modes import adapter_settings, adapter_weights_file


class StackedBottlenecks:
    def rebuild(self, encoder: nn.Module, adapters: Sequence[Path]) -> nn.Module:
        for index, directory in enumerate(adapters):
            add_bottleneck(encoder, adapter_settings(directory), f"stage{index + 1}", Path(directory))
        return encoder

    def add_trainable(self, encoder: nn.Module, settings: AdapterSettings, name: str) -> nn.Module:
        add_bottleneck(encoder, settings, name)
        return encoder

    def adapter_state(self, encoder: nn.Module, name: str) -> dict[str, torch.Tensor]:
        return dict(encoder.xstilts_adapters[name].state_dict())


class Bottleneck(nn.Module):
    """x + up(relu(down(x))); `up` starts at zero so a fresh adapter is the identity."""

    def __init__(self, hidden_size: int, reduction: int):
        super().__init__()
        self.down = nn.Linear(hidden_size, max(1, hidden_size // reduction))
        self.up = nn.Linear(max(1, hidden_size // reduction), hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.up(torch.relu(self.down(hidden_states)))


def _layers(encoder: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(encoder).__name__}: bottleneck adapters need a BERT-style encoder.layer list")
    return layers


def add_bottleneck(encoder: nn.Module, settings: AdapterSettings, name: str, weights_dir: Path | None = None) -> None:
    """One bottleneck per layer, applied to the layer's output after the adapters of earlier stages."""
    if not hasattr(encoder, "xstilts_adapters"):
        encoder.xstilts_adapters = nn.ModuleDict()
        for index, layer in enumerate(_layers(encoder)):
            layer.register_forward_hook(_stack_hook(encoder, index))
    hidden = encoder.config.hidden_size
    encoder.xstilts_adapters[name] = nn.ModuleList(
        Bottleneck(hidden, settings.bottleneck_reduction) for _ in _layers(encoder)
    )
    if weights_dir is not None:
        encoder.xstilts_adapters[name].load_state_dict(load_file(str(adapter_weights_file(weights_dir))))
    device = next(encoder.parameters()).device
    encoder.xstilts_adapters[name].to(device)


def _stack_hook(encoder: nn.Module, index: int) -> Any:
    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        for stack in encoder.xstilts_adapters.values():
            hidden = stack[index](hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook
