"""A Hugging Face encoder plus a dictionary of small task heads, and how stages save and load them.

Stages hand each other an encoder directory (Hugging Face format, safetensors) and nothing else:
heads are saved beside it in `heads.safetensors` and are loaded only when a config asks for it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from xstilts.errors import XstiltsError
from xstilts.results.layout import ENCODER_DIR, HEADS_FILE
from xstilts.tasks import kind_of
from xstilts.tasks.registry import TaskSpec


class MultiTaskModel(nn.Module):
    """`encoder` shared by all tasks, heads on top; `forward(task, batch)` returns that task's logits.

    Each task has its own head unless `head_of` maps several tasks to one shared head name (ANLI+
    and MNLI predicting through one NLI head); heads are keyed by head name.
    """

    def __init__(self, encoder: nn.Module, specs: Mapping[str, TaskSpec], head_of: Mapping[str, str] | None = None):
        super().__init__()
        self.encoder = encoder
        self.specs = dict(specs)
        self.head_of = {task: (head_of or {}).get(task, task) for task in self.specs}
        dropout = float(getattr(encoder.config, "hidden_dropout_prob", 0.1) or 0.0)
        heads: dict[str, nn.Module] = {}
        for task, spec in self.specs.items():
            if self.head_of[task] not in heads:
                heads[self.head_of[task]] = kind_of(spec).head_for(spec, encoder.config, dropout)
        self.heads = nn.ModuleDict(heads)

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> Any:
        return kind_of(self.specs[task]).logits(self.encoder, self.heads[self.head_of[task]], batch)


@contextlib.contextmanager
def _loading(source: str | Path, what: str) -> Iterator[None]:
    """Any error of Hugging Face loading (missing or damaged files, no network) as one line naming the source."""
    try:
        yield
    except XstiltsError:
        raise
    except Exception as error:  # OSError, ValueError, safetensors' SafetensorError, ...: all about `source`
        detail = (str(error).strip().splitlines() or [""])[0]
        raise XstiltsError(f"{source}: cannot load the {what} ({type(error).__name__}: {detail})") from None


def load_tokenizer(source: str | Path) -> Any:
    """A fast tokenizer (character offsets are needed for QA and tagging)."""
    with _loading(source, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    if not getattr(tokenizer, "is_fast", False):
        raise XstiltsError(
            f"{source}: xstilts needs a fast (Rust) tokenizer for character offsets; none could be loaded"
        )
    return tokenizer


def load_encoder(source: str | Path, trust_remote_code: bool = False) -> nn.Module:
    """The bare encoder of any Auto-class model, without a pooler when the architecture has one.

    Heads pool for themselves; an unused pooler would only cost memory and trip DDP's unused-parameter check.
    """
    with _loading(source, "encoder"):
        config = AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code)
        model_class = AutoModel._model_mapping.get(type(config), None) if not trust_remote_code else None
        kwargs: dict[str, Any] = {}
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
            kwargs["add_pooling_layer"] = False
        return AutoModel.from_pretrained(str(source), config=config, trust_remote_code=trust_remote_code, **kwargs)


def save_encoder(model: MultiTaskModel, tokenizer: Any, stage_dir: Path) -> Path:
    """Encoder and tokenizer in Hugging Face format (safetensors) under `stage_dir/encoder`."""
    encoder_dir = stage_dir / ENCODER_DIR
    model.encoder.save_pretrained(encoder_dir, safe_serialization=True)
    tokenizer.save_pretrained(encoder_dir)
    return encoder_dir


def save_heads(model: MultiTaskModel, stage_dir: Path) -> Path:
    """Every head's weights in one safetensors file, keys `task.parameter`, with each head's kind as metadata."""
    tensors = {
        f"{task}.{name}": value.detach().cpu().contiguous()
        for task, head in model.heads.items()
        for name, value in head.state_dict().items()
    }
    metadata = {
        "kinds": json.dumps({model.head_of[task]: spec.kind for task, spec in model.specs.items()}),
        "head_of": json.dumps(model.head_of),
    }
    path = stage_dir / HEADS_FILE
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_heads(model: MultiTaskModel, heads_path: Path, tasks: list[str] | None = None) -> list[str]:
    """Load the saved heads of `tasks` (default: all of the model's) that exist in `heads_path`; returns the tasks loaded."""
    saved = load_file(str(heads_path))
    loaded = []
    for task in tasks or list(model.specs):
        prefix = f"{model.head_of[task]}."
        state = {key[len(prefix) :]: value for key, value in saved.items() if key.startswith(prefix)}
        if state:
            model.heads[model.head_of[task]].load_state_dict(state)
            loaded.append(task)
    return loaded


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
