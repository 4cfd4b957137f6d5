"""One stage: train the encoder (plus a head) on one task, starting from a parent encoder.

A stage is a function of its request (resolved settings, task, seed, parent encoder directory) and
returns its completion record. Intermediate stages and target fine-tunes are both stages; a target
stage also evaluates zero-shot in each of its languages and writes one evaluation file per language.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed

from xstilts.data import build_features, load_examples
from xstilts.errors import XstiltsError
from xstilts.evaluation import evaluate
from xstilts.modeling import ENCODER_DIR, MultiTaskModel, count_parameters, load_encoder, load_heads, load_tokenizer, save_encoder, save_heads
from xstilts.readers.jsonl import write_jsonl
from xstilts.settings import TrainingSettings
from xstilts.store import StageStore, write_json_atomic
from xstilts.tasks import kind_of
from xstilts.tasks.registry import TaskSpec
from xstilts.training import Checkpointer, get_accelerator, precision_name, train

log = logging.getLogger(__name__)

EVALUATIONS_DIR = "evaluations"
PREDICTIONS_DIR = "predictions"


@dataclass(frozen=True)
class StageRequest:
    """Everything a stage needs, passed explicitly (nothing is found by guessing paths)."""

    identity: str
    role: str  # "intermediate" or "target"
    spec: TaskSpec
    settings: TrainingSettings
    seed: int
    parent: str  # encoder directory or hub id
    parent_identity: str
    chain: tuple[str, ...]  # the intermediate tasks behind the parent encoder, in order
    parent_heads: Path | None = None  # reuse this stage's head from here (explicit opt-in only)
    describe: dict[str, Any] = field(default_factory=dict)


def run_stage(request: StageRequest, store: StageStore, progress: bool = True, checkpoint_every_steps: int | None = None) -> dict[str, Any]:
    """Train the stage unless its completion record exists; returns the record.

    With `checkpoint_every_steps`, a killed stage resumes from its last checkpoint (kept under
    `<store>/.checkpoints/` until the stage is committed) and ends with the same weights.
    """
    done = store.record(request.identity, request.spec.name)
    if done is not None:
        log.info("stage %s (%s) is done, skipping", request.spec.name, request.identity)
        return done
    set_seed(request.seed)
    settings = request.settings
    accelerator = get_accelerator()
    tokenizer = load_tokenizer(request.parent)
    model = MultiTaskModel(load_encoder(request.parent), {request.spec.name: request.spec})
    reused = load_heads(model, request.parent_heads, [request.spec.name]) if request.parent_heads else []
    if request.parent_heads and not reused:
        raise XstiltsError(f"reuse_heads: the parent stage has no head for task {request.spec.name} ({request.parent_heads})")
    model.to(accelerator.device)

    spec, language = request.spec, request.spec.train_language
    train_examples = load_examples(spec, spec.train_split, language, settings.max_train_examples)
    dev_examples = load_examples(spec, spec.dev_split, language, settings.max_eval_examples)
    train_features = build_features(spec, train_examples, tokenizer, settings, training=True)
    dev_features = build_features(spec, dev_examples, tokenizer, settings, training=False)
    # Validation during training uses the first `eval_examples` dev examples: a prefix of the dev features.
    validation_examples = dev_examples[: settings.eval_examples] if settings.eval_examples else dev_examples
    validation_features = [f for f in dev_features if f["example_index"] < len(validation_examples)]
    primary = kind_of(spec).primary_metric

    def validate(current: MultiTaskModel) -> float:
        metrics = evaluate(current, spec, validation_examples, validation_features, settings, accelerator, tokenizer.pad_token_id, language).metrics
        return metrics[primary]

    label = f"{request.role} {spec.name}" + (f" after {'+'.join(request.chain)}" if request.chain else "")
    log.info("training %s: %d examples -> %d features", label, len(train_examples), len(train_features))
    started = time.perf_counter()
    checkpointer = Checkpointer(store.root / ".checkpoints" / f"{request.identity}-{spec.name}", checkpoint_every_steps) if checkpoint_every_steps else None
    result = train(model, spec.name, train_features, settings, accelerator, tokenizer.pad_token_id, validate, request.seed, label, progress, checkpointer)
    dev = evaluate(model, spec, dev_examples, dev_features, settings, accelerator, tokenizer.pad_token_id, language)
    log.info("%s: English dev %s = %.2f (best step %d of %d)", label, primary, dev.metrics[primary], result.best_step, result.steps)

    scratch = store.begin(request.identity, spec.name)
    save_encoder(model, tokenizer, scratch)
    save_heads(model, scratch)
    record = {
        "identity": request.identity,
        "role": request.role,
        "task": spec.name,
        "kind": spec.kind,
        "chain": list(request.chain),
        "parent": request.parent,
        "parent_identity": request.parent_identity,
        "seed": request.seed,
        "settings": settings.model_dump(),
        "reused_heads": reused,
        "train_examples": len(train_examples),
        "train_features": len(train_features),
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "dev_metrics": dev.metrics,
        "primary_metric": primary,
        "history": result.history,
        "train_seconds": round(result.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_tokens": result.tokens,
        "parameters": count_parameters(model),
        "environment": environment(accelerator, precision_name(settings, accelerator.device)),
        **request.describe,
    }
    store.commit(scratch, request.identity, spec.name, record)
    if checkpointer is not None:
        checkpointer.remove()
    return record


def evaluate_target(stage_dir: Path, spec: TaskSpec, languages: list[str], settings: TrainingSettings, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Zero-shot evaluation of a trained target stage in each language, one file per language.

    Languages already evaluated are read back, not recomputed; the model is loaded only if needed.
    """
    results: dict[str, dict[str, Any]] = {}
    missing = []
    for language in languages:
        path = stage_dir / EVALUATIONS_DIR / f"{language}.json"
        if path.is_file():
            results[language] = json.loads(path.read_text(encoding="utf-8"))
        else:
            missing.append(language)
    if not missing:
        return results
    accelerator = get_accelerator()
    encoder_dir = stage_dir / ENCODER_DIR
    tokenizer = load_tokenizer(encoder_dir)
    model = MultiTaskModel(load_encoder(encoder_dir), {spec.name: spec})
    load_heads(model, stage_dir / "heads.safetensors", [spec.name])
    model.to(accelerator.device)
    for language in missing:
        examples = load_examples(spec, spec.eval_split, language, settings.max_eval_examples)
        features = build_features(spec, examples, tokenizer, settings, training=False)
        evaluation = evaluate(model, spec, examples, features, settings, accelerator, tokenizer.pad_token_id, language)
        _write_predictions(stage_dir / PREDICTIONS_DIR / f"{language}.jsonl", examples, evaluation.predictions)
        results[language] = {
            "task": spec.name,
            "language": language,
            "split": spec.eval_split,
            "examples": len(examples),
            "metrics": evaluation.metrics,
        }
        write_json_atomic(stage_dir / EVALUATIONS_DIR / f"{language}.json", results[language])
        log.info("%s %s: %s", spec.name, language, ", ".join(f"{k}={v:.2f}" for k, v in evaluation.metrics.items()))
    return results


def _write_predictions(path: Path, examples: list[dict[str, Any]], predictions: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": example.get("id", index), "prediction": prediction} for index, (example, prediction) in enumerate(zip(examples, predictions))]
    write_jsonl(path, rows)


def environment(accelerator: Accelerator, precision: str) -> dict[str, Any]:
    return {
        "device": str(accelerator.device),
        "precision": precision,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
