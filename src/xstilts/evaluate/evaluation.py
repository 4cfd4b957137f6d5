"""Forward passes without gradients over features, then decoding and scoring with the task's kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from accelerate import Accelerator

from xstilts.metrics.units import Units, item_keys
from xstilts.runtime.device import autocast
from xstilts.settings import TrainingSettings
from xstilts.tasks import kind_of
from xstilts.tasks.base import Example, Feature, feature_length
from xstilts.tasks.registry import TaskSpec
from xstilts.train.modeling import MultiTaskModel


@dataclass
class Evaluation:
    predictions: list[Any]
    metrics: dict[str, float]
    units: Units | None = None  # per-unit statistics, for intervals (zero-shot evaluations only)


def predict_outputs(
    model: MultiTaskModel,
    task: str,
    features: Sequence[Feature],
    settings: TrainingSettings,
    accelerator: Accelerator,
    pad_token_id: int,
) -> list[Any]:
    """Per-feature outputs, in feature order. Batches are formed from length-sorted features to waste little padding.

    With several processes each computes every P-th batch and the outputs are gathered, so every
    process ends with all outputs and nothing is computed twice.
    """
    kind = kind_of(model.specs[task])
    order = sorted(range(len(features)), key=lambda i: feature_length(features[i]))
    batches = [
        order[start : start + settings.eval_batch_size] for start in range(0, len(order), settings.eval_batch_size)
    ]
    mine: list[tuple[int, Any]] = []
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(settings, accelerator.device):
        for indices in batches[accelerator.process_index :: accelerator.num_processes]:
            batch = kind.collate([features[i] for i in indices], pad_token_id)
            batch = {key: value.to(accelerator.device) for key, value in batch.items()}
            mine += zip(indices, kind.batch_outputs(model(task, batch), batch))
    model.train(was_training)
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        mine = gather_object(mine)
    outputs: list[Any] = [None] * len(features)
    for index, output in mine:
        outputs[index] = output
    return outputs


def evaluate(
    model: MultiTaskModel,
    spec: TaskSpec,
    examples: Sequence[Example],
    features: Sequence[Feature],
    settings: TrainingSettings,
    accelerator: Accelerator,
    pad_token_id: int,
    language: str,
    with_units: bool = False,
) -> Evaluation:
    kind = kind_of(spec)
    outputs = predict_outputs(model, spec.name, features, settings, accelerator, pad_token_id)
    predictions = kind.decode(outputs, features, examples, spec, settings)
    units = kind.units(predictions, examples, spec, language) if with_units else None
    if units is not None and spec.parallel:
        units = replace(units, keys=item_keys(spec.parallel, examples))
    return Evaluation(predictions, kind.score(predictions, examples, spec, language), units)
