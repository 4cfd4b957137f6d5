"""LoRA chain modes (peft): a LoRA per stage on the frozen encoder of its parent.

- `lora-merged`: each stage's LoRA merged into the encoder in chain order: the architecture of the pretrained
  encoder, so no inference cost.
- `lora-stacked`: the LoRAs stay separate modules, all active at inference: k stages, k LoRAs on every adapted
  linear layer; the cost grows with k.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from xstilts.settings import AdapterSettings
from xstilts.train.modes import adapter_settings, adapter_weights_file


class MergedLoRA:
    def rebuild(self, encoder: nn.Module, adapters: Sequence[Path]) -> nn.Module:
        for directory in adapters:
            encoder = add_lora(encoder, adapter_settings(directory), "stage", Path(directory)).merge_and_unload()
        return encoder

    def add_trainable(self, encoder: nn.Module, settings: AdapterSettings, name: str) -> nn.Module:
        return add_lora(encoder, settings, name)

    def adapter_state(self, encoder: nn.Module, name: str) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(encoder, adapter_name=name)
        return {key.replace(f".{name}.", "."): value for key, value in state.items()}


class StackedLoRA(MergedLoRA):
    def rebuild(self, encoder: nn.Module, adapters: Sequence[Path]) -> nn.Module:
        for index, directory in enumerate(adapters):
            encoder = add_lora(encoder, adapter_settings(directory), f"stage{index + 1}", Path(directory))
        return encoder


def add_lora(encoder: nn.Module, settings: AdapterSettings, name: str, weights_dir: Path | None = None) -> nn.Module:
    """Add a LoRA named `name` (loaded from `weights_dir` if given) and activate it together with the ones already there."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    config = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_targets),
    )
    if isinstance(encoder, PeftModel):
        encoder.add_adapter(name, config)
    else:
        encoder = get_peft_model(encoder, config, adapter_name=name)
    if weights_dir is not None:
        saved = load_file(str(adapter_weights_file(weights_dir)))
        result = set_peft_model_state_dict(encoder, saved, adapter_name=name)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{weights_dir}: adapter weights do not fit the encoder: {result.unexpected_keys[:3]}")
    names = list(encoder.peft_config)
    encoder.base_model.set_adapter(names)  # every LoRA active: stacked
    return encoder


def active_lora_count(encoder: nn.Module) -> int:
    """LoRAs active on the encoder's first adapted layer (k for a stacked prefix of length k)."""
    from peft.tuners.lora import LoraLayer

    for module in encoder.modules():
        if isinstance(module, LoraLayer):
            return len(module.active_adapters)
    return 0
