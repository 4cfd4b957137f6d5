"""One stage: train the encoder (plus a head) on one task, starting from a parent encoder.

A stage is a function of its request (resolved settings, task, seed, parent encoder directory) and
returns its completion record. Intermediate stages and target fine-tunes are both stages; a target
stage also evaluates zero-shot in each of its languages and writes one evaluation file per language.
"""

from __future__ import annotations

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
from transformers.utils import SAFE_WEIGHTS_NAME

from xstilts.data.examples import build_features, load_examples
from xstilts.errors import DataError, XstiltsError
from xstilts.evaluate.evaluation import evaluate
from xstilts.files import writing
from xstilts.readers.jsonl import write_jsonl
from xstilts.rundir.layout import evaluation_file, predictions_file, relative_to_root
from xstilts.rundir.runs import read_evaluation, write_evaluation
from xstilts.rundir.stage_directory import StageDirectory
from xstilts.rundir.store import StageStore
from xstilts.rundir.units import units_file, write_units
from xstilts.runtime.device import get_accelerator, precision_name
from xstilts.settings import TrainingSettings
from xstilts.tasks import kind_of
from xstilts.tasks.registry import UNKNOWN_TAG, TaskSpec
from xstilts.tracking import log_metrics
from xstilts.train.adapters import add_stage_adapter, build_encoder, check_recipe, load_target_model, save_stage_adapter
from xstilts.train.loop import Checkpointer, train
from xstilts.train.mixture import MixtureMember
from xstilts.train.modeling import (
    MultiTaskModel,
    count_parameters,
    load_heads,
    load_tokenizer,
    save_encoder,
    save_heads,
)
from xstilts.train.request import EncoderRecipe, StageRequest

log = logging.getLogger(__name__)


@dataclass
class _MemberData:
    """One member's training features and English dev set."""

    member: MixtureMember
    train_examples: int
    train_features: list[Any]
    unknown_tags: int  # training tags in an open label set's unknown class (CCG supertags outside the inventory)
    dev_examples: list[Any] = field(default_factory=list)
    dev_features: list[Any] = field(default_factory=list)
    dev_source: str = ""  # where the English dev examples come from (recorded with the stage)

    def validation(self) -> tuple[list[Any], list[Any]]:
        """The first `eval_examples` dev examples and their features (a prefix of the dev features)."""
        limit = self.member.settings.eval_examples
        examples = self.dev_examples[:limit] if limit else self.dev_examples
        return examples, [f for f in self.dev_features if f["example_index"] < len(examples)]


def run_stage(
    request: StageRequest,
    store: StageStore,
    progress: bool = True,
    checkpoint_every_steps: int | None = None,
    position: str = "",
) -> dict[str, Any]:
    """Train the stage unless its completion record exists; returns the record.

    With `checkpoint_every_steps`, a killed stage resumes from its last checkpoint (kept under
    `<store>/.checkpoints/` until the stage is committed) and ends with the same weights. `position`
    ("stage 3/14") starts the stage's log lines.
    """
    label = f"{position} {request.label}".strip()
    done = store.record(request.identity, request.name)
    if done is not None:
        log.debug("%s: already trained (%s)", label, request.identity)
        return done
    set_seed(request.seed)
    accelerator = get_accelerator()
    built = _build_model(request, store, accelerator)
    data = {member.spec.name: _member_data(member, built.tokenizer) for member in request.members}
    supervised = [d for d in data.values() if d.member.spec.kind != "mlm"]
    log.info(
        "%s: training on %s",
        label,
        ", ".join(
            f"{name} {d.train_examples} examples -> {len(d.train_features)} features" for name, d in data.items()
        ),
    )
    started = time.perf_counter()
    checkpointer = (
        Checkpointer(store.checkpoint_dir(request.identity, request.name), checkpoint_every_steps, store.root)
        if checkpoint_every_steps
        else None
    )
    sizes = {name: len(d.train_features) for name, d in data.items()}
    probabilities = request.mixture.probabilities(sizes) if request.mixture else None
    result = train(
        built.model,
        {name: d.train_features for name, d in data.items()},
        request.settings,
        accelerator,
        built.tokenizer.pad_token_id,
        _validator(supervised, accelerator, built.tokenizer.pad_token_id),
        request.seed,
        label,
        progress,
        checkpointer,
        probabilities=probabilities,
        epoch_size=request.mixture.epoch_size(sizes) if request.mixture else None,
    )
    dev_metrics, primary = _final_dev_metrics(
        built.model, supervised, request.mixture is not None, accelerator, built.tokenizer.pad_token_id
    )
    log.info(
        "%s: English dev %s = %.2f (best step %d of %d)",
        label,
        primary,
        dev_metrics[primary],
        result.best_step,
        result.steps,
    )
    log_metrics({f"english_dev/{name}": value for name, value in dev_metrics.items()}, result.steps)
    record = _stage_record(request, store, built, data, result, (dev_metrics, primary), probabilities, started)
    if accelerator.is_main_process:  # one writer; the other processes read the committed record
        _commit(request, store, built, record)
        if checkpointer is not None:
            checkpointer.remove()
    accelerator.wait_for_everyone()
    return store.record(request.identity, request.name) or record  # as committed (with its file list), in every process


@dataclass
class _BuiltModel:
    model: MultiTaskModel
    tokenizer: Any
    adapter_name: str | None  # the adapter this stage trains (adapter chain modes)
    reused_heads: list[str]
    mlm_head: str | None  # where a masked-LM head's weights came from


def _build_model(request: StageRequest, store: StageStore, accelerator: Accelerator) -> _BuiltModel:
    """The parent encoder (checked intact), the stage's fresh adapter if its mode trains one, and its heads."""
    _check_parent(request, store)
    tokenizer = load_tokenizer(request.parent)
    specs = {member.spec.name: member.spec for member in request.members}
    encoder = build_encoder(request.parent_recipe or request.parent)
    _check_lengths(request, encoder.config)
    adapter_name = None
    if request.adapter is not None:
        adapter_name = f"stage{len(request.parent_recipe.adapters) + 1}"
        encoder = add_stage_adapter(encoder, request.mode, request.adapter, adapter_name)
    model = MultiTaskModel(encoder, specs, {m.spec.name: m.head for m in request.members})
    reused = load_heads(model, request.parent_heads, list(specs)) if request.parent_heads else []
    if request.parent_heads and not reused:
        raise XstiltsError(f"reuse_heads: the parent stage has no head for {', '.join(specs)} ({request.parent_heads})")
    mlm_head = _initial_mlm_head(model, request.parent) if "mlm" in {s.kind for s in specs.values()} else None
    model.to(accelerator.device)
    return _BuiltModel(model, tokenizer, adapter_name, reused, mlm_head)


def _validator(supervised: list[Any], accelerator: Accelerator, pad_token_id: int) -> Any:
    """The primary dev metric of the model being trained; for a mixture, the mean over its supervised members."""

    def validate(current: MultiTaskModel) -> float:
        values = []
        for item in supervised:
            examples, features = item.validation()
            spec = item.member.spec
            metrics = evaluate(
                current,
                spec,
                examples,
                features,
                item.member.settings,
                accelerator,
                pad_token_id,
                spec.train_language,
            ).metrics
            values.append(metrics[kind_of(spec).primary_metric])
        return sum(values) / len(values)

    return validate


def _stage_record(
    request: StageRequest,
    store: StageStore,
    built: _BuiltModel,
    data: dict[str, Any],
    result: Any,
    dev: tuple[dict[str, float], str],
    probabilities: dict[str, float] | None,
    started: float,
) -> dict[str, Any]:
    """stage.json (less its file list, which the store adds when it commits the stage); `dev`: the final English
    dev metrics and the primary one's name; `started`: when the stage began (perf_counter)."""
    model, settings, accelerator = built.model, request.settings, get_accelerator()
    dev_metrics, primary = dev
    record = {
        "identity": request.identity,
        "role": request.role,
        "task": request.name,
        "kind": "mixture" if request.mixture else request.spec.kind,
        "chain": list(request.chain),
        "parent": relative_to_root(request.parent, store.root),
        "parent_identity": request.parent_identity,
        "seed": request.seed,
        "settings": settings.model_dump(),
        "reused_heads": built.reused_heads,
        "train_examples": sum(d.train_examples for d in data.values()),
        "train_features": sum(len(d.train_features) for d in data.values()),
        "unknown_tags": {name: d.unknown_tags for name, d in data.items() if d.member.spec.open_label_set},
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "dev_metrics": dev_metrics,
        "dev_source": {name: d.dev_source for name, d in data.items() if d.dev_source},
        "primary_metric": primary,
        "history": result.history,
        "train_seconds": round(result.seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_tokens": result.tokens,
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "mode": request.mode,
        "encoder_recipe": request.output_recipe(store.stage_dir(request.identity, request.name)).to_json(store.root),
        "environment": {
            **environment(accelerator, precision_name(settings, accelerator.device)),
            "attention": getattr(model.encoder.config, "_attn_implementation", None),
        },
    }
    if request.mixture is not None:
        record["mixture"] = {
            "sampler": request.mixture.sampler,
            "members": {
                name: {
                    "train_features": len(d.train_features),
                    "probability": probabilities[name],
                    "steps": result.task_steps.get(name, 0),
                    "head": d.member.head,
                }
                for name, d in data.items()
            },
            "mlm_head": built.mlm_head,
        }
    return record


def _commit(request: StageRequest, store: StageStore, built: _BuiltModel, record: dict[str, Any]) -> None:
    """Write the encoder (or only the stage's adapter) and the heads aside, then commit the stage in one rename."""
    scratch = store.begin(request.identity, request.name)
    building = StageDirectory(scratch)
    with writing(scratch):
        if request.adapter is None:
            save_encoder(built.model, built.tokenizer, building.encoder_dir, request.parent)
        else:
            save_stage_adapter(
                built.model.encoder, request.mode, request.adapter, built.adapter_name, building.adapter.path
            )
        save_heads(built.model, building.heads_file)
    store.commit(scratch, request.identity, request.name, record)


def _check_parent(request: StageRequest, store: StageStore) -> None:
    """The stages the parent encoder is built from must be intact (every file's sha256 as recorded) before loading."""
    recipe = request.parent_recipe or EncoderRecipe(request.parent)
    check_recipe(recipe, store.root, request.label)


def _check_lengths(request: StageRequest, encoder_config: Any) -> None:
    """Inputs longer than the encoder's position table would fail deep inside the model: say which setting to lower."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    usable = (
        positions - 2
        if positions and getattr(encoder_config, "model_type", "") in ("xlm-roberta", "roberta", "camembert")
        else positions
    )
    for member in request.members:
        if usable and member.settings.max_length > usable:
            raise XstiltsError(
                f"{request.role} {member.spec.name}: training.max_length is {member.settings.max_length}, but the encoder "
                f"{request.parent} takes at most {usable} tokens; set training.max_length to {usable} or less"
            )


def _member_data(member: MixtureMember, tokenizer: Any) -> _MemberData:
    spec, settings = member.spec, member.settings
    train_examples = []
    for language in member.languages:
        limit = member.max_examples_per_language or settings.max_train_examples
        train_examples += load_examples(spec, spec.train_split, language, limit)
    dev_examples, dev_source = [], ""
    if spec.kind != "mlm" and spec.dev_is_test:
        train_examples, dev_examples, dev_source = held_out_validation(spec, train_examples, settings)
    elif spec.kind != "mlm":
        dev_examples = load_examples(spec, spec.dev_split, spec.train_language, settings.max_eval_examples)
        dev_source = f"{spec.dev_split}-{spec.train_language}"
    unknown = (
        sum(tag == UNKNOWN_TAG for example in train_examples for tag in example["tags"]) if spec.open_label_set else 0
    )
    data = _MemberData(
        member, len(train_examples), build_features(spec, train_examples, tokenizer, settings, training=True), unknown
    )
    if dev_examples:
        data.dev_examples, data.dev_source = dev_examples, dev_source
        data.dev_features = build_features(spec, dev_examples, tokenizer, settings, training=False)
    return data


HELD_OUT_SHARE = 0.1  # of the English training examples, for targets whose dev split is their test set


def held_out_validation(
    spec: TaskSpec, examples: list[Any], settings: TrainingSettings
) -> tuple[list[Any], list[Any], str]:
    """(train, validation, description) for a task whose dev files are its test files (TyDiQA-GoldP): model selection
    and early stopping must not read them, so the last tenth of the English training examples (at most
    `eval_examples`, the validation size the settings ask for) is held out and never trained on."""
    if len(examples) < 2:
        raise DataError(
            spec.data.path(spec.train_split, spec.train_language),
            f"task {spec.name} holds out part of its training data for validation (its dev split is its test set), "
            f"but has {len(examples)} training example(s)",
        )
    held = max(1, int(len(examples) * HELD_OUT_SHARE))
    if settings.eval_examples:
        held = min(held, settings.eval_examples)
    description = (
        f"held out: the last {held} of {len(examples)} English training examples "
        f"({spec.name}'s dev split is its test set)"
    )
    return examples[:-held], examples[-held:], description


def _final_dev_metrics(
    model: MultiTaskModel, supervised: list[_MemberData], mixture: bool, accelerator: Accelerator, pad_token_id: int
) -> tuple[dict[str, float], str]:
    """English dev metrics of the kept weights; a mixture reports each member's, prefixed, and their mean primary metric."""
    metrics: dict[str, float] = {}
    primaries = []
    for item in supervised:
        spec = item.member.spec
        member_metrics = evaluate(
            model,
            spec,
            item.dev_examples,
            item.dev_features,
            item.member.settings,
            accelerator,
            pad_token_id,
            spec.train_language,
        ).metrics
        if not mixture:
            return member_metrics, kind_of(spec).primary_metric
        metrics.update({f"{spec.name} {name}": value for name, value in member_metrics.items()})
        primaries.append(member_metrics[kind_of(spec).primary_metric])
    metrics["mean"] = sum(primaries) / len(primaries)
    return metrics, "mean"


def _initial_mlm_head(model: MultiTaskModel, parent: str) -> str:
    """Start the masked-LM head from the parent checkpoint's `lm_head` when it has one (pretrained XLM-R does)."""
    from safetensors import safe_open

    weights = Path(parent) / SAFE_WEIGHTS_NAME
    head = model.heads[model.head_of["mlm"]]
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            keys = {key for key in handle.keys() if key.startswith("lm_head.")}
            state = {key[len("lm_head.") :]: handle.get_tensor(key) for key in keys}
        state = {
            key: value
            for key, value in state.items()
            if key in head.state_dict() and value.shape == head.state_dict()[key].shape
        }
        if len(state) == len(head.state_dict()):
            head.load_state_dict(state)
            return "pretrained lm_head"
    return "fresh"


def evaluate_target(
    stage_dir: Path,
    spec: TaskSpec,
    split: str,
    languages: list[str],
    settings: TrainingSettings,
    progress: bool = True,
    label: str = "",
) -> dict[str, dict[str, Any]]:
    """Zero-shot evaluation of a trained target stage on `split` ("dev" or "test") in each language, one file per
    language. Languages already evaluated are read back, not recomputed; the model is loaded only if needed.
    `label` names the model in log lines.
    """
    results: dict[str, dict[str, Any]] = {}
    missing = []
    accelerator = get_accelerator()
    accelerator.wait_for_everyone()  # every process decides what is missing from the same files
    for language in languages:
        evaluation = read_evaluation(evaluation_file(stage_dir, split, language))
        if evaluation is not None:
            results[language] = evaluation
        else:
            missing.append(language)
    if missing:
        results.update(_evaluate_languages(stage_dir, spec, split, missing, settings, accelerator, label))
    log_metrics(
        {
            f"{split}/{language}/{name}": value
            for language, evaluation in results.items()
            for name, value in evaluation["metrics"].items()
        }
    )
    return results


def _evaluate_languages(
    stage_dir: Path,
    spec: TaskSpec,
    split: str,
    missing: list[str],
    settings: TrainingSettings,
    accelerator: Accelerator,
    label: str,
) -> dict[str, dict[str, Any]]:
    """Evaluate the languages not on disk yet; writes predictions, units and then the evaluation record of each."""
    results: dict[str, dict[str, Any]] = {}
    model, tokenizer = load_target_model(stage_dir, spec)
    model.to(accelerator.device)
    for language in missing:
        examples = load_examples(spec, spec.file_split(split), language, settings.max_eval_examples)
        features = build_features(spec, examples, tokenizer, settings, training=False)
        evaluation = evaluate(
            model, spec, examples, features, settings, accelerator, tokenizer.pad_token_id, language, with_units=True
        )
        results[language] = {
            "task": spec.name,
            "language": language,
            "split": split,
            "examples": len(examples),
            "metrics": evaluation.metrics,
            "units": evaluation.units.describe(),
        }
        if accelerator.is_main_process:
            _write_predictions(predictions_file(stage_dir, split, language), examples, evaluation.predictions)
            path = evaluation_file(stage_dir, split, language)
            write_units(units_file(path), evaluation.units)  # before the record: a record means both are there
            write_evaluation(path, results[language])
        log.info(
            "%s: %s %s %s",
            label or spec.name,
            split,
            language,
            ", ".join(f"{k}={v:.2f}" for k, v in evaluation.metrics.items()),
        )
    return results


def _write_predictions(path: Path, examples: list[dict[str, Any]], predictions: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": example.get("id", index), "prediction": prediction}
        for index, (example, prediction) in enumerate(zip(examples, predictions))
    ]
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
