"""Settings: one validated type per concept, shared by the config, the runtime and the command line.

- `TrainingSettings`: every stage (intermediate or target) trains with one, resolved in this order, later
  layers winning: protocol defaults (docs/protocol.md section 5) -> the task kind's defaults (QA uses batch 16
  and 384-token windows) -> the task's own defaults (XNLI trains 2 epochs) -> the experiment's `training`
  block -> the stage's or target's `training` block. The resolved settings are saved with every stage
  and are part of its identity.
- `AdapterSettings`: the parameter-efficient chain modes (LoRA, bottleneck adapters).
- `EmbeddingSettings`: sentence representations of retrieval targets (docs/protocol.md 4.6).
- `LatencySettings`: the latency harness (the config's `latency:` block and `xstilts latency`).

All of them refuse NaN, infinity, out-of-range numbers and booleans where a number is expected.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from xstilts.chain_modes import default_target_tuning
from xstilts.names import Name


def _accepts_bool(annotation: Any) -> bool:
    return annotation is bool or any(_accepts_bool(arg) for arg in typing.get_args(annotation))


def no_bools_for_numbers() -> Any:
    """A validator refusing `true`/`false` where a number is expected (pydantic would read `epochs: yes` as 1)."""

    def check(cls: type[BaseModel], value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if (
            isinstance(value, bool)
            and field is not None
            and field.annotation is not Any
            and not _accepts_bool(field.annotation)
        ):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    return field_validator("*", mode="before")(classmethod(check))


class Settings(BaseModel):
    """Base of every settings and config model: unknown keys, NaN, infinity and booleans-as-numbers are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    _no_bools = no_bools_for_numbers()


class TrainingSettings(Settings):
    """Everything that determines how one stage trains and evaluates."""

    learning_rate: float = Field(1e-5, gt=0, le=1, description="Peak AdamW learning rate.")
    weight_decay: float = Field(
        0.01, ge=0, le=10, description="AdamW weight decay; never applied to biases and LayerNorm weights."
    )
    adam_epsilon: float = Field(1e-8, gt=0, le=1)
    warmup_ratio: float = Field(
        0.1, ge=0, le=1, description="Share of optimizer steps spent in linear warm-up; linear decay to 0 follows."
    )
    max_grad_norm: Optional[float] = Field(
        1.0, gt=0, le=1e6, description="Gradient clipping by global norm; null disables it."
    )
    batch_size: int = Field(32, gt=0, le=65536, description="Examples per optimizer step (across all processes).")
    micro_batch_size: Optional[int] = Field(
        None,
        gt=0,
        le=65536,
        description="Examples per forward pass and process; batch_size / micro_batch_size gives gradient accumulation. Null: batch_size.",
    )
    eval_batch_size: int = Field(64, gt=0, le=65536)
    max_length: int = Field(256, ge=16, le=1_000_000, description="Maximum tokens per feature (a QA window).")
    doc_stride: int = Field(
        128,
        gt=0,
        le=1_000_000,
        description="QA: how far each window of a long context advances, in context tokens (with qa_windows: "
        "huggingface, the tokens neighbouring windows share).",
    )
    qa_windows: Literal["xtreme", "huggingface"] = Field(
        "xtreme",
        description="QA windows as XTREME and jiant build them (doc_stride = advance, question cut to 64 tokens, "
        "max-context rule), or as a Hugging Face fast tokenizer's stride= does (doc_stride = overlap).",
    )
    epochs: float = Field(3.0, gt=0, le=10_000)
    max_steps: Optional[int] = Field(
        None, gt=0, le=100_000_000, description="Optimizer steps; overrides epochs when set."
    )
    eval_every_steps: int = Field(1000, gt=0, description="Validate on the English dev set every N optimizer steps.")
    eval_examples: Optional[int] = Field(
        500, gt=0, description="English dev examples used for validation during training; null: all."
    )
    patience: Optional[int] = Field(
        30, gt=0, description="Stop after this many validations without improvement; null: never stop early."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU.")
    max_train_examples: Optional[int] = Field(
        None, gt=0, description="Use only the first N training examples (quick runs)."
    )
    max_eval_examples: Optional[int] = Field(
        None, gt=0, description="Evaluate on at most N examples per language (quick runs)."
    )
    n_best_size: int = Field(20, gt=0, le=10_000, description="QA: start and end candidates considered per window.")
    max_answer_length: int = Field(30, gt=0, le=1_000_000, description="QA: longest answer span in tokens.")
    log_every_steps: int = Field(
        20,
        gt=0,
        description="Record the mean loss (stage history, progress line, bar) every N optimizer steps; one host-device sync each.",
    )
    group_by_length: bool = Field(
        True,
        description="Micro-batches of similar length (less padding): shuffle, sort within chunks of 50 micro-batches, shuffle the batches.",
    )
    compile: bool = Field(
        False, description="torch.compile the encoder (dynamic shapes); pays off on GPU for long stages."
    )

    @model_validator(mode="after")
    def _check_batch_division(self) -> TrainingSettings:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})"
            )
        return self


def _optional_copy(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same fields, all optional and unset by default: a layer of overrides."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        fields[field_name] = (
            Optional[info.annotation],
            Field(None, description=info.description, metadata=info.metadata),
        )
    model = create_model(
        name,
        __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
        __validators__={"no_bools": no_bools_for_numbers()},
        **fields,
    )
    return model


TrainingOverrides = _optional_copy(TrainingSettings, "TrainingOverrides")
TrainingOverrides.__doc__ = "A partial `TrainingSettings`: only the keys that are set override earlier layers."

# Per-kind defaults (docs/protocol.md section 5: QA uses batch 16, max length 384 with stride 128).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": {},
    "multiple_choice": {},
    "qa": {"batch_size": 16, "max_length": 384, "doc_stride": 128},
    "tagging": {},
    "mlm": {"max_length": 128},
}


def resolve_settings(kind: str, *layers: dict[str, Any] | BaseModel | None) -> TrainingSettings:
    """Merge the kind's defaults and the given override layers (later wins) into full settings."""
    merged: dict[str, Any] = dict(KIND_DEFAULTS.get(kind, {}))
    for layer in layers:
        if layer is None:
            continue
        values = (
            layer.model_dump(exclude_none=True)
            if isinstance(layer, BaseModel)
            else {k: v for k, v in layer.items() if v is not None}
        )
        merged.update(values)
    settings = TrainingSettings(**merged)
    if kind == "qa" and settings.doc_stride >= settings.max_length:
        raise ValueError(
            f"doc_stride ({settings.doc_stride}) must be smaller than max_length ({settings.max_length}) for QA windows"
        )
    return settings


@dataclass(frozen=True)
class StepCounts:
    """Numbers derived from settings and data size, computed once (see `count_steps`)."""

    micro_batch_size: int
    accumulation_steps: int
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def count_steps(settings: TrainingSettings, num_train_features: int, num_processes: int = 1) -> StepCounts:
    """Optimizer steps, accumulation and warm-up for a training set of `num_train_features`."""
    micro = settings.micro_batch_size or settings.batch_size
    per_step = micro * num_processes
    if settings.batch_size % per_step:
        raise ValueError(
            f"batch_size {settings.batch_size} is not a multiple of micro_batch_size x processes = {micro} x {num_processes}"
        )
    accumulation = settings.batch_size // per_step
    micro_batches_per_epoch = max(1, math.ceil(num_train_features / per_step))
    steps_per_epoch = max(1, math.ceil(micro_batches_per_epoch / accumulation))
    total = settings.max_steps or max(1, math.ceil(steps_per_epoch * settings.epochs))
    return StepCounts(
        micro_batch_size=micro,
        accumulation_steps=accumulation,
        micro_batches_per_epoch=micro_batches_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=int(settings.warmup_ratio * total),
    )


class AdapterSettings(Settings):
    """Settings of the parameter-efficient chain modes (`chain_modes`): LoRA (peft) and bottleneck adapters."""

    lora_r: int = Field(8, gt=0, le=65536)
    lora_alpha: int = Field(16, gt=0, le=65536)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: tuple[Name, ...] = Field(
        ("query", "key", "value", "dense"),
        min_length=1,
        description="Linear layers that get a LoRA (peft target_modules).",
    )
    bottleneck_reduction: int = Field(16, gt=0, description="adapter-stacked: hidden size / bottleneck size.")
    target_tuning: Optional[Literal["full", "adapter"]] = Field(
        None,
        description="Target fine-tuning: all weights, or a fresh adapter on top of the chain. Default: full in `full` mode, adapter otherwise.",
    )

    def tuning_for(self, mode: str) -> str:
        return self.target_tuning or default_target_tuning(mode)

    def trained_adapter(self) -> dict[str, Any]:
        """The fields that determine a trained adapter (part of a stage's identity and of its adapter.json)."""
        return {**self.model_dump(exclude={"target_tuning"}), "lora_targets": list(self.lora_targets)}


class EmbeddingSettings(Settings):
    """Sentence representations for retrieval targets (docs/protocol.md 4.6), recorded with every retrieval result.

    Presets name the two code bases: `jiant` (which ran X-STILTs; the default) mean-pools hidden layer 14 of 24
    for BUCC and Tatoeba; `xtreme` (XTREME's scripts) does the same for Tatoeba but takes BUCC's first-token
    (CLS) vector of layer 20 of 24 (`--pool_type cls --specific_layer 7` among the last 12 layers). Layers scale
    to the encoder's depth; an explicit `layer` or `pooling` overrides the preset.
    """

    preset: Literal["jiant", "xtreme"] = "jiant"
    layer: Optional[int] = Field(
        None, ge=0, description="hidden_states index (0: the embedding output); default: the preset's."
    )
    pooling: Optional[Literal["mean", "cls"]] = Field(None, description="default: the preset's.")
    max_length: int = Field(512, ge=8, le=1_000_000)
    batch_size: int = Field(64, gt=0, le=65536)

    def resolved(self, num_hidden_layers: int, task: str = "") -> EmbeddingSettings:
        """These settings with the layer and pooling fixed for `task` and an encoder of `num_hidden_layers` layers."""
        from xstilts.errors import XstiltsError

        xtreme_bucc = self.preset == "xtreme" and task == "bucc2018"
        default_layer = (
            max(1, round(20 * num_hidden_layers / 24)) if xtreme_bucc else default_embedding_layer(num_hidden_layers)
        )
        layer = self.layer if self.layer is not None else default_layer
        pooling = self.pooling or ("cls" if xtreme_bucc else "mean")
        if not 0 <= layer <= num_hidden_layers:
            raise XstiltsError(
                f"embedding layer {layer} does not exist: the encoder has hidden states 0..{num_hidden_layers}"
            )
        return self.model_copy(update={"layer": layer, "pooling": pooling})


def default_embedding_layer(num_hidden_layers: int) -> int:
    """The 14th of 24 layers (XTREME and jiant for XLM-R Large), at the same relative depth elsewhere."""
    return max(1, round(14 * num_hidden_layers / 24))


class LatencySettings(Settings):
    """The latency harness: shapes, repetitions and precision (the config's `latency:` block, `xstilts latency`)."""

    batch_sizes: tuple[Annotated[int, Field(gt=0, le=65536)], ...] = Field((1, 32), min_length=1)
    lengths: tuple[Annotated[int, Field(ge=8, le=1_000_000)], ...] = Field(
        (128, 512), min_length=1, description="Tokens per row, no padding."
    )
    warmup: int = Field(5, ge=0, le=100_000, description="Untimed forward passes per model first.")
    repetitions: int = Field(
        30, ge=3, le=1_000_000, description="Timed forward passes per model and shape (interleaved)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU.")
    bootstrap: int = Field(2000, ge=100, le=1_000_000, description="Bootstrap resamples of the intervals.")
    seed: int = Field(0, ge=0, lt=2**32)
