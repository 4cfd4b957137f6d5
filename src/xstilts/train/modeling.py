"""A Hugging Face encoder plus a dictionary of small task heads, and how stages save and load them.

Stages hand each other an encoder directory (Hugging Face format, safetensors) and nothing else:
heads are saved beside it in `heads.safetensors` and are loaded only when a config asks for it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import SAFE_WEIGHTS_NAME

from xstilts.errors import XstiltsError
from xstilts.files import read_json, write_json_atomic
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
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") and not Path(str(source)).exists()
        hint = (
            "; the machine is offline (HF_HUB_OFFLINE) and the model is not in the Hugging Face cache: download it "
            "once where there is network, or give a local directory as encoder"
            if offline
            else ""
        )
        raise XstiltsError(f"{source}: cannot load the {what} ({type(error).__name__}: {detail}){hint}") from None


def check_encoder_available(source: str | Path) -> None:
    """Load the encoder's config and tokenizer (small files; from the cache when offline), read the headers of
    a local encoder's weight files, and size the model its config describes, so that a model that cannot be
    had, or could never fit in this machine's memory, fails before a run writes anything."""
    with _loading(source, "encoder's config"):
        config = AutoConfig.from_pretrained(str(source))
    load_tokenizer(source)
    if Path(str(source)).is_dir():
        check_weight_headers(Path(str(source)))
    check_model_fits(config, f"{source}/config.json" if Path(str(source)).is_dir() else f"{source} (its config.json)")


def check_weight_headers(directory: Path) -> None:
    """Every safetensors file of a model directory opens: its header is at most 100 MB and its tensors lie within
    the file (safetensors checks both before allocating anything). A damaged or hostile file is named."""
    from safetensors import safe_open

    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # SafetensorError: HeaderTooLarge, MetadataIncompleteBuffer, InvalidHeader...
            detail = (str(error).strip().splitlines() or [""])[0]
            raise XstiltsError(
                f"{path}: not a readable safetensors weight file ({detail}); the file is damaged"
            ) from None


def check_model_fits(config: Any, where: str) -> None:
    """Refuse a config that describes a model larger than this machine's memory, even at 2 bytes per parameter.

    The parameters are counted on the meta device (nothing is allocated); a config claiming a vocabulary of 10^12
    would otherwise end, after minutes, in an "out of memory" that names no file."""
    import psutil

    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    except Exception:  # an architecture that cannot be built from its config alone: loading will say why
        return
    needed, memory = 2 * parameters, psutil.virtual_memory().total
    if needed > memory:
        raise XstiltsError(
            f"{where} describes a model of {parameters:,} parameters ({needed / 2**30:,.0f} GiB even in 16 bits); "
            f"this machine has {memory / 2**30:,.0f} GiB of memory: the config is damaged or meant for another machine"
        )


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


def save_encoder(model: MultiTaskModel, tokenizer: Any, encoder_dir: Path, parent: str | Path | None = None) -> Path:
    """Encoder and tokenizer in Hugging Face format (safetensors) in `encoder_dir`, loadable by
    `AutoModel.from_pretrained` with no missing weights (the pooler, see `_with_pooler`) and a tokenizer
    config without the options of the load that made it.
    """
    with _with_pooler(model.encoder, parent):
        model.encoder.save_pretrained(encoder_dir, safe_serialization=True)
    save_clean_tokenizer(tokenizer, encoder_dir)
    return encoder_dir


@contextlib.contextmanager
def _with_pooler(encoder: nn.Module, parent: str | Path | None) -> Iterator[None]:
    """Save a pooler with an encoder loaded without one (`load_encoder`), so `AutoModel` finds every weight.

    xstilts never trains the pooler: it carries the parent checkpoint's (pretrained BERT's, trained by its
    next-sentence task) or, when the parent has none (XLM-R), a deterministic fresh initialisation.
    """
    module = inspect.getmodule(type(encoder))
    pooler_class = getattr(module, type(encoder).__name__.replace("Model", "Pooler"), None)
    if getattr(encoder, "pooler", False) is not None or pooler_class is None:
        yield  # has its pooler, or an architecture without one
        return
    pooler = pooler_class(encoder.config)
    saved = _parent_pooler(parent, pooler) if parent is not None else None
    if saved is not None:
        pooler.load_state_dict(saved)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder._init_weights(pooler.dense)
    encoder.pooler = pooler.to(next(encoder.parameters()).device)
    try:
        yield
    finally:
        encoder.pooler = None


def _parent_pooler(parent: str | Path, pooler: nn.Module) -> dict[str, torch.Tensor] | None:
    """The pooler weights of the parent checkpoint (any prefix: `pooler.` or `bert.pooler.`), if it has them."""
    from safetensors import safe_open

    path = Path(parent) / SAFE_WEIGHTS_NAME
    if not path.is_file():
        return None
    wanted = set(pooler.state_dict())
    with safe_open(str(path), framework="pt") as handle:
        found = {key.split("pooler.", 1)[1]: key for key in handle.keys() if "pooler." in key}
        if set(found) != wanted:
            return None
        state = {name: handle.get_tensor(key) for name, key in found.items()}
    shapes_fit = all(state[name].shape == value.shape for name, value in pooler.state_dict().items())
    return state if shapes_fit else None


# Options of one loading or call that tokenizers write into tokenizer_config.json; a reader would inherit them.
TOKENIZER_LOADING_OPTIONS = (
    "is_local",
    "local_files_only",
    "stride",
    "max_length",
    "truncation_strategy",
    "padding_strategy",
    "_commit_hash",
)


def save_clean_tokenizer(tokenizer: Any, directory: Path) -> None:
    """The tokenizer without the options of the load or call that made it (`is_local`, `stride`, ...)."""
    tokenizer.save_pretrained(directory)
    path = Path(directory) / "tokenizer_config.json"
    if path.is_file():
        settings = read_json(path)
        cleaned = {key: value for key, value in settings.items() if key not in TOKENIZER_LOADING_OPTIONS}
        if cleaned != settings:
            write_json_atomic(path, cleaned)


def save_heads(model: MultiTaskModel, path: Path) -> Path:
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
