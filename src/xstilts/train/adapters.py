"""Chain modes: how each stage of a chain changes the encoder, and how a prefix's encoder is rebuilt.

- `full`: every weight trains in every stage; a stage saves the whole encoder.
- `lora-merged`: a stage trains a LoRA (peft) on the frozen encoder of its parent and saves only the
  LoRA; the prefix's encoder is the pretrained one with each stage's LoRA merged in, in order. Same
  architecture as the pretrained encoder, so no inference cost.
- `lora-stacked`: the same LoRAs stay separate modules, all active at inference: k stages, k LoRAs
  on every adapted linear layer; the cost grows with k.
- `adapter-stacked`: bottleneck adapters (MAD-X style: down-projection, ReLU, up-projection,
  residual) after every layer, one per stage, applied in chain order.

An `EncoderRecipe` names the base encoder and the adapters to apply; it is what a stage records so
that evaluation, retrieval and the latency harness rebuild exactly the encoder that was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xstilts.errors import RunError
from xstilts.rundir.stage_directory import AdapterFiles, StageDirectory, inspect_stage_dir
from xstilts.settings import AdapterSettings
from xstilts.tasks.registry import TaskSpec
from xstilts.train.modeling import MultiTaskModel, load_encoder, load_heads, load_tokenizer
from xstilts.train.request import EncoderRecipe


def build_encoder(recipe: EncoderRecipe | str) -> nn.Module:
    """The encoder a recipe describes, with its adapters applied (frozen or not: the caller decides)."""

    if isinstance(recipe, str):
        return load_encoder(recipe)
    encoder = load_encoder(recipe.base)
    if recipe.mode == "lora-merged":
        for directory in recipe.adapters:
            encoder = add_lora(encoder, _read_settings(directory), "stage", Path(directory)).merge_and_unload()
    elif recipe.mode == "lora-stacked":
        for index, directory in enumerate(recipe.adapters):
            encoder = add_lora(encoder, _read_settings(directory), f"stage{index + 1}", Path(directory))
    elif recipe.mode == "adapter-stacked":
        for index, directory in enumerate(recipe.adapters):
            add_bottleneck(encoder, _read_settings(directory), f"stage{index + 1}", Path(directory))
    return encoder


def add_stage_adapter(encoder: nn.Module, mode: str, settings: AdapterSettings, name: str) -> nn.Module:
    """A fresh trainable adapter named `name` on top of `encoder`; every other encoder weight is frozen."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    if mode in ("lora-merged", "lora-stacked"):
        encoder = add_lora(encoder, settings, name)
    else:
        add_bottleneck(encoder, settings, name)
    for parameter_name, parameter in encoder.named_parameters():
        parameter.requires_grad_(
            f".{name}." in parameter_name
            or parameter_name.startswith(f"{name}.")
            or f"xstilts_adapters.{name}." in parameter_name
        )
    return encoder


def save_stage_adapter(encoder: nn.Module, mode: str, settings: AdapterSettings, name: str, directory: Path) -> Path:
    """Only the stage's own adapter weights (small) and its settings, in the adapter folder `directory`."""
    adapter = AdapterFiles(Path(directory))
    Path(directory).mkdir(parents=True, exist_ok=True)
    if mode in ("lora-merged", "lora-stacked"):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(encoder, adapter_name=name)
        state = {key.replace(f".{name}.", "."): value for key, value in state.items()}
    else:
        state = {key: value for key, value in encoder.xstilts_adapters[name].state_dict().items()}
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(adapter.weights))
    adapter.settings.write_text(json.dumps({"mode": mode, **settings.trained_adapter()}, indent=2), encoding="utf-8")
    return Path(directory)


def _read_settings(directory: str | Path) -> AdapterSettings:
    data = json.loads(AdapterFiles(Path(directory)).settings.read_text(encoding="utf-8"))
    return AdapterSettings(**{key: data[key] for key in AdapterSettings().trained_adapter()})


# --- LoRA (peft) --------------------------------------------------------------------------------------


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
        saved = load_file(str(AdapterFiles(Path(weights_dir)).weights))
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


# --- bottleneck adapters ------------------------------------------------------------------------------


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
        encoder.xstilts_adapters[name].load_state_dict(load_file(str(AdapterFiles(Path(weights_dir)).weights)))
    device = next(encoder.parameters()).device
    encoder.xstilts_adapters[name].to(device)


def _stack_hook(encoder: nn.Module, index: int) -> Any:
    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        for stack in encoder.xstilts_adapters.values():
            hidden = stack[index](hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def check_recipe(recipe: EncoderRecipe, store_root: Path, user: str) -> None:
    """Raise RunError when a stage directory of `store_root` that `recipe` loads from is damaged."""
    root = Path(store_root).resolve()
    sources = [Path(recipe.base), *(Path(adapter) for adapter in recipe.adapters)]
    for stage_dir in {source.resolve().parent for source in sources if source.resolve().parent.parent == root}:
        state = inspect_stage_dir(stage_dir, full=True)
        if state.status in ("damaged", "pruned", "missing"):
            problem = state.problem or f"its weights are {'pruned' if state.status == 'pruned' else 'missing'}"
            raise RunError(
                f"{user}: the stage it is built on, {stage_dir.name}, is not usable ({problem}); run the command again to retrain it"
            )


def load_target_model(stage_dir: Path, spec: TaskSpec) -> tuple[MultiTaskModel, Any]:
    """A finished target stage's model (its encoder rebuilt from the recorded recipe, and its head) and tokenizer."""
    stage = StageDirectory(stage_dir)
    record = stage.read_record(f"target {spec.name}")
    recipe = EncoderRecipe.from_json(record.get("encoder_recipe") or {"base": str(stage.encoder_dir)}, stage_dir.parent)
    check_recipe(
        recipe, stage_dir.parent, f"target {spec.name}"
    )  # its own directory included: the recipe loads from it
    model = MultiTaskModel(build_encoder(recipe), {spec.name: spec})
    load_heads(model, stage.heads_file, [spec.name])
    return model.eval(), load_tokenizer(recipe.base)
