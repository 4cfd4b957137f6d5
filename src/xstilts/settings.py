"""Training settings: protocol defaults, how layers of overrides combine, and the numbers derived from them.

Every stage (intermediate or target) trains with one `TrainingSettings`, resolved in this order, later
layers winning: protocol defaults (protocol.md section 5) -> the task kind's defaults (QA uses batch 16
and 384-token windows) -> the task's own defaults (XNLI trains 2 epochs) -> the experiment's `training`
block -> the stage's or target's `training` block. The resolved settings are saved with every stage
and are part of its identity.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator


def _accepts_bool(annotation: Any) -> bool:
    return annotation is bool or any(_accepts_bool(arg) for arg in typing.get_args(annotation))


def no_bools_for_numbers() -> Any:
    """A validator refusing `true`/`false` where a number is expected (pydantic would read `epochs: yes` as 1)."""

    def check(cls: type[BaseModel], value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if isinstance(value, bool) and field is not None and field.annotation is not Any and not _accepts_bool(field.annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value

    return field_validator("*", mode="before")(classmethod(check))



class TrainingSettings(BaseModel):
    """Everything that determines how one stage trains and evaluates."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    learning_rate: float = Field(1e-5, gt=0, le=1, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, le=10, description="AdamW weight decay; never applied to biases and LayerNorm weights.")
    adam_epsilon: float = Field(1e-8, gt=0, le=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of optimizer steps spent in linear warm-up; linear decay to 0 follows.")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, le=1e6, description="Gradient clipping by global norm; null disables it.")
    batch_size: int = Field(32, gt=0, le=65536, description="Examples per optimizer step (across all processes).")
    micro_batch_size: Optional[int] = Field(None, gt=0, le=65536, description="Examples per forward pass and process; batch_size / micro_batch_size gives gradient accumulation. Null: batch_size.")
    eval_batch_size: int = Field(64, gt=0, le=65536)
    max_length: int = Field(256, ge=16, le=1_000_000, description="Maximum tokens per feature (a QA window).")
    doc_stride: int = Field(128, gt=0, le=1_000_000, description="QA: tokens shared by neighbouring windows of a long context.")
    epochs: float = Field(3.0, gt=0, le=10_000)
    max_steps: Optional[int] = Field(None, gt=0, le=100_000_000, description="Optimizer steps; overrides epochs when set.")
    eval_every_steps: int = Field(1000, gt=0, description="Validate on the English dev set every N optimizer steps.")
    eval_examples: Optional[int] = Field(500, gt=0, description="English dev examples used for validation during training; null: all.")
    patience: Optional[int] = Field(30, gt=0, description="Stop after this many validations without improvement; null: never stop early.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU.")
    max_train_examples: Optional[int] = Field(None, gt=0, description="Use only the first N training examples (quick runs).")
    max_eval_examples: Optional[int] = Field(None, gt=0, description="Evaluate on at most N examples per language (quick runs).")
    n_best_size: int = Field(20, gt=0, le=10_000, description="QA: start and end candidates considered per window.")
    max_answer_length: int = Field(30, gt=0, le=1_000_000, description="QA: longest answer span in tokens.")
    log_every_steps: int = Field(20, gt=0, description="Progress-bar loss refresh; each refresh is one host-device sync.")
    group_by_length: bool = Field(True, description="Micro-batches of similar length (less padding): shuffle, sort within chunks of 50 micro-batches, shuffle the batches.")
    compile: bool = Field(False, description="torch.compile the encoder (dynamic shapes); pays off on GPU for long stages.")

    _no_bools = no_bools_for_numbers()

    @model_validator(mode="after")
    def _check_batch_division(self) -> "TrainingSettings":
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})")
        return self


def _optional_copy(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same fields, all optional and unset by default: a layer of overrides."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        fields[field_name] = (Optional[info.annotation], Field(None, description=info.description, metadata=info.metadata))
    model = create_model(name, __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False), __validators__={"no_bools": no_bools_for_numbers()}, **fields)
    return model


TrainingOverrides = _optional_copy(TrainingSettings, "TrainingOverrides")
TrainingOverrides.__doc__ = "A partial `TrainingSettings`: only the keys that are set override earlier layers."

# Per-kind defaults (protocol.md section 5: QA uses batch 16, max length 384 with stride 128).
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
        values = layer.model_dump(exclude_none=True) if isinstance(layer, BaseModel) else {k: v for k, v in layer.items() if v is not None}
        merged.update(values)
    settings = TrainingSettings(**merged)
    if kind == "qa" and settings.doc_stride >= settings.max_length:
        raise ValueError(f"doc_stride ({settings.doc_stride}) must be smaller than max_length ({settings.max_length}) for QA windows")
    return settings


@dataclass(frozen=True)
class StepPlan:
    """Numbers derived from settings and data size, computed once (see `plan_steps`)."""

    micro_batch_size: int
    accumulation_steps: int
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def plan_steps(settings: TrainingSettings, num_train_features: int, num_processes: int = 1) -> StepPlan:
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
    return StepPlan(
        micro_batch_size=micro,
        accumulation_steps=accumulation,
        micro_batches_per_epoch=micro_batches_per_epoch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=int(settings.warmup_ratio * total),
    )
