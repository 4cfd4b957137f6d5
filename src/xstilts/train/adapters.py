"""Building, training and saving the encoder of a chain, whatever its chain mode.

A stage records an `EncoderRecipe`: the base encoder and the adapter folders of the stages on top, in chain
order, so that evaluation, retrieval, export and the latency harness rebuild exactly the encoder that was
trained. What each mode does to the encoder is its own module under `xstilts.train.modes`, found through the
declarations in `xstilts.chain_modes`; nothing here names a mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from xstilts.chain_modes import chain_mode
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
    code = chain_mode(recipe.mode).implementation()
    return code.rebuild(load_encoder(recipe.base), [Path(adapter) for adapter in recipe.adapters])


def add_stage_adapter(encoder: nn.Module, mode: str, settings: AdapterSettings, name: str) -> nn.Module:
    """A fresh trainable adapter named `name` on top of `encoder`; every other encoder weight is frozen."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    encoder = chain_mode(mode).implementation().add_trainable(encoder, settings, name)
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
    state = chain_mode(mode).implementation().adapter_state(encoder, name)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(adapter.weights))
    adapter.settings.write_text(json.dumps({"mode": mode, **settings.trained_adapter()}, indent=2), encoding="utf-8")
    return Path(directory)


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
