"""Per-prefix diagnostics: what the stages so far did to the encoder, and what its features promise each target.

For the encoder after each prefix of a chain (k = 0, the pretrained encoder, included), with no fine-tuning:

- drift: linear CKA, layer by layer, between its representations of a fixed multilingual probe set (the
  targets' dev text in every language) and those of the pretrained encoder and of its parent;
- alignment: translation retrieval accuracy, layer by layer, on parallel sentences;
- forgetting: the English dev score of every earlier task of the chain, with the head its own stage trained
  (on the current encoder) and with a fresh head of the same kind trained on the frozen current encoder (a
  probe): the first falls when the head no longer fits, the second only when the information is gone;
- estimates: LogME and k-NN accuracy of its last layer's features on a sample of each target's English
  training data (classification: the first token; tagging: each word's first subword and its tag; QA: each
  context token, labelled by whether it lies inside the answer).

The result is one JSON record per prefix (`RunDirectory.diagnostics_file`); see `evaluate.representations`
and `evaluate.transferability` for the measures themselves.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from xstilts.data.examples import build_features, example_text, load_examples
from xstilts.files import read_lines
from xstilts.metrics.representations import layer_representations, linear_cka, retrieval_accuracy
from xstilts.metrics.transferability import knn_accuracy, logme
from xstilts.tasks import kind_of
from xstilts.tasks.base import encode
from xstilts.tasks.registry import TaskSpec

log = logging.getLogger(__name__)
ESTIMATED_KINDS = ("classification", "tagging", "qa")
MAX_TOKEN_FEATURES = 20_000  # token-level estimates (tagging, QA) on at most this many tokens


@dataclass
class ProbeData:
    """What every prefix of a run is diagnosed on, read once."""

    probe_texts: list[str]
    parallel: dict[str, list[str]]  # language -> sentences, line i a translation of parallel["en"][i]
    estimate_sets: dict[str, tuple[TaskSpec, list[dict[str, Any]]]]  # target -> English training examples


def probe_data(
    targets: Sequence[tuple[TaskSpec, Sequence[str]]],
    parallel_dir: Path | None,
    sentences: int,
    estimate_examples: int,
) -> ProbeData:
    """The probe set (`sentences` in all, spread evenly over the targets' dev languages), the parallel
    sentences and the estimation samples."""
    pools = [(spec, language) for spec, languages in targets if spec.kind != "retrieval" for language in languages]
    per_pool = max(1, sentences // max(1, len(pools)))
    texts: list[str] = []
    for spec, language in pools:
        examples = load_examples(spec, spec.dev_split, language, per_pool)
        texts += [text for text in (example_text(e) for e in examples) if text]
    estimate_sets = {
        spec.name: (spec, load_examples(spec, spec.train_split, spec.train_language, estimate_examples))
        for spec, _ in targets
        if spec.kind in ESTIMATED_KINDS
    }
    return ProbeData(texts[:sentences], read_parallel(parallel_dir, sentences), estimate_sets)


def read_parallel(directory: Path | None, limit: int) -> dict[str, list[str]]:
    """`en.txt` and `<lang>.txt` files aligned line by line (the first `limit` lines); {} without a directory."""
    if directory is None:
        return {}
    files = {path.stem: path for path in sorted(Path(directory).glob("*.txt"))}
    if "en" not in files:
        return {}
    english = [line for _, line in read_lines(files.pop("en"))][:limit]
    parallel = {"en": english}
    for language, path in files.items():
        lines = [line for _, line in read_lines(path)][: len(english)]
        if len(lines) == len(english):
            parallel[language] = lines
        else:
            log.warning("%s: %d lines for %d English ones; not used for alignment", path, len(lines), len(english))
    return parallel


def diagnose(
    encoder: torch.nn.Module,
    tokenizer: Any,
    data: ProbeData,
    references: Mapping[str, list[np.ndarray]],
    estimators: Sequence[str],
    max_length: int = 128,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The diagnostics of one encoder; also returns its probe-set representations (a later prefix's parent).

    `references` maps "pretrained" and "parent" to their layer representations of the same probe texts.
    """
    started = time.perf_counter()
    layers = layer_representations(encoder, tokenizer, data.probe_texts, max_length)
    record: dict[str, Any] = {"probe_sentences": len(data.probe_texts), "layers": len(layers)}
    record["drift"] = {
        name: [linear_cka(mine, theirs) for mine, theirs in zip(layers, reference)]
        for name, reference in references.items()
        if reference is not None and len(reference) == len(layers)
    }
    if len(data.parallel) > 1:
        english = layer_representations(encoder, tokenizer, data.parallel["en"], max_length)
        by_language = {
            language: [
                retrieval_accuracy(source, target)
                for source, target in zip(layer_representations(encoder, tokenizer, sentences, max_length), english)
            ]
            for language, sentences in data.parallel.items()
            if language != "en"
        }
        record["alignment"] = {
            "sentences": len(data.parallel["en"]),
            "languages": by_language,
            "mean": [float(np.mean(values)) for values in zip(*by_language.values())],
        }
    record["estimates"] = {
        target: estimate(encoder, tokenizer, spec, examples, estimators, max_length)
        for target, (spec, examples) in data.estimate_sets.items()
    }
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record, layers


def estimate(
    encoder: torch.nn.Module,
    tokenizer: Any,
    spec: TaskSpec,
    examples: list[dict[str, Any]],
    estimators: Sequence[str],
    max_length: int,
) -> dict[str, float | int]:
    """The estimators' values for one target on the encoder's frozen last-layer features."""
    from xstilts.settings import resolve_settings

    settings = resolve_settings(spec.kind, {"max_length": max_length, "doc_stride": max(16, max_length // 3)})
    features = build_features(spec, examples, tokenizer, settings, training=True)
    x, y = frozen_features(encoder, tokenizer, spec, features)
    values: dict[str, float | int] = {"examples": len(examples), "features": len(y)}
    if len(np.unique(y)) < 2:
        return values  # one class only: nothing to estimate
    if "logme" in estimators:
        values["logme"] = logme(x, y)
    if "knn" in estimators:
        values["knn"] = knn_accuracy(x, y)
    return values


@torch.no_grad()
def frozen_features(
    encoder: torch.nn.Module, tokenizer: Any, spec: TaskSpec, features: list[Any], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(last-layer features, integer labels) of training features, as each kind's head would read them."""
    kind = kind_of(spec)
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    xs, ys = [], []
    for start in range(0, len(features), batch_size):
        batch = kind.collate(features[start : start + batch_size], tokenizer.pad_token_id)
        batch = {key: value.to(device) for key, value in batch.items()}
        hidden = encode(encoder, batch).float()
        if spec.kind == "classification":
            xs.append(hidden[:, 0])
            ys.append(batch["label"])
        elif spec.kind == "tagging":
            keep = batch["labels"] != -100
            xs.append(hidden[keep])
            ys.append(batch["labels"][keep])
        else:  # qa: is each context token inside the answer? (windows without the answer: all outside)
            positions = torch.arange(hidden.shape[1], device=device)
            inside = (positions >= batch["start_position"][:, None]) & (positions <= batch["end_position"][:, None])
            inside &= batch["start_position"][:, None] > 0
            keep = context_tokens(features[start : start + batch_size], hidden.shape[1]).to(device)
            xs.append(hidden[keep])
            ys.append(inside[keep].long())
    encoder.train(was_training)
    x = torch.cat(xs).cpu().numpy()
    y = torch.cat(ys).cpu().numpy()
    if len(y) > MAX_TOKEN_FEATURES:
        chosen = sorted(random.Random(0).sample(range(len(y)), MAX_TOKEN_FEATURES))
        x, y = x[chosen], y[chosen]
    return x, y


def context_tokens(features: Sequence[Any], length: int) -> torch.Tensor:
    """(batch, length) mask of the context tokens of QA windows: the tokens the tokenizer's sequence ids put in the
    second sequence (their character offsets are recorded; question, special and padding tokens have -1). Token
    type ids cannot tell them apart for XLM-R, whose tokenizer returns none."""
    mask = torch.zeros((len(features), length), dtype=torch.bool)
    for row, feature in enumerate(features):
        offsets = np.asarray(feature["offsets"])
        mask[row, : len(offsets)] = torch.from_numpy(offsets[:, 0] >= 0)
    return mask


@dataclass
class EarlierStage:
    """A supervised stage of the chain so far: its task, where its head is, the settings it trained with."""

    position: int  # 1-based place in the chain
    spec: TaskSpec
    stage_dir: Path
    settings: Any  # TrainingSettings


def forgetting(
    encoder: torch.nn.Module,
    tokenizer: Any,
    earlier: Sequence[EarlierStage],
    examples: int,
    probe_steps: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Each earlier task's English dev score on the current encoder: with its own head, and with a probe."""
    return [_forgetting_of(encoder, tokenizer, stage, examples, probe_steps, seed) for stage in earlier]


def _forgetting_of(
    encoder: torch.nn.Module, tokenizer: Any, stage: EarlierStage, examples: int, probe_steps: int, seed: int
) -> dict[str, Any]:
    from xstilts.rundir.stage_directory import StageDirectory
    from xstilts.train.modeling import MultiTaskModel, load_heads

    spec, settings = stage.spec, stage.settings
    dev = load_examples(spec, spec.dev_split, spec.train_language, examples)
    dev_features = build_features(spec, dev, tokenizer, settings, training=False)
    entry: dict[str, Any] = {"task": spec.name, "trained_at": stage.position, "metric": kind_of(spec).primary_metric}
    own = MultiTaskModel(encoder, {spec.name: spec})
    loaded = load_heads(own, StageDirectory(stage.stage_dir).heads_file, [spec.name])
    entry["own_head"] = _dev_score(own, spec, dev, dev_features, settings, tokenizer) if loaded else None
    train = load_examples(spec, spec.train_split, spec.train_language, examples)
    train_features = build_features(spec, train, tokenizer, settings, training=True)
    probe = fit_probe_head(encoder, spec, train_features, tokenizer.pad_token_id, probe_steps, seed)
    entry["probe"] = _dev_score(probe, spec, dev, dev_features, settings, tokenizer)
    return entry


def _dev_score(model: Any, spec: TaskSpec, dev: list[Any], features: list[Any], settings: Any, tokenizer: Any) -> float:
    from xstilts.evaluate.evaluation import evaluate
    from xstilts.runtime.device import get_accelerator

    accelerator = get_accelerator()
    model.to(accelerator.device)
    evaluation = evaluate(
        model, spec, dev, features, settings, accelerator, tokenizer.pad_token_id, spec.train_language
    )
    return evaluation.metrics[kind_of(spec).primary_metric]


def fit_probe_head(
    encoder: torch.nn.Module,
    spec: TaskSpec,
    features: list[Any],
    pad_token_id: int,
    steps: int,
    seed: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
) -> Any:
    """A fresh head of the task's kind trained on the frozen encoder (no collective calls: any process can run it).

    The probe sees each example many times (100 steps of 32 over 200 examples: 16 times); the frozen encoder's
    states of an example never change, so they are computed once (`FrozenStates`) and the steps train the head
    alone."""
    from xstilts.train.modeling import MultiTaskModel

    kind = kind_of(spec)
    frozen = [p.requires_grad for p in encoder.parameters()]
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    device = next(encoder.parameters()).device
    states = FrozenStates(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultiTaskModel(states, {spec.name: spec}).to(device)
        order = torch.randperm(len(features)).tolist()
    head = model.heads[model.head_of[spec.name]]
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate)
    model.train()
    encoder.eval()  # frozen: no dropout in the features the probe learns from
    try:
        with torch.enable_grad():
            for step in range(steps):
                start = (step * batch_size) % max(1, len(order))
                chosen = [features[i] for i in (order + order)[start : start + batch_size]]
                batch = {k: v.to(device) for k, v in kind.collate(chosen, pad_token_id).items()}
                loss = kind.loss(model(spec.name, batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for parameter, flag in zip(encoder.parameters(), frozen):
            parameter.requires_grad_(flag)
    model.encoder = encoder  # the probe is evaluated like any model, on the encoder itself
    return model.eval()


class FrozenStates(torch.nn.Module):
    """A frozen encoder's last hidden states, computed once per distinct input row and then looked up.

    A row is keyed by its attended token ids (and token types): with right padding (every collate of xstilts)
    an attended token's state does not depend on how much padding follows. Padding positions read zeros, which
    no head uses (they are masked or never gathered)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "wrapped", encoder)  # not a submodule: the probe model holds no copy of it
        self.config = encoder.config
        self.cache: dict[bytes, torch.Tensor] = {}

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.wrapped.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Any = None) -> Any:
        attended = attention_mask.bool()
        keys = self._keys(input_ids, attended, token_type_ids)
        missing = [row for row, key in enumerate(keys) if key not in self.cache]
        if missing:
            inputs = {"input_ids": input_ids[missing], "attention_mask": attention_mask[missing]}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids[missing]
            with torch.no_grad():
                hidden = self.wrapped(**inputs).last_hidden_state
            for position, row in enumerate(missing):
                self.cache[keys[row]] = hidden[position][attended[row]].detach()
        found = [self.cache[key] for key in keys]
        states = found[0].new_zeros((*input_ids.shape, found[0].shape[-1]))
        states[attended] = torch.cat(found)  # the mask's positions in row order: each row's attended states
        return SimpleNamespace(last_hidden_state=states)

    @staticmethod
    def _keys(input_ids: torch.Tensor, attended: torch.Tensor, token_type_ids: Any) -> list[bytes]:
        ids, mask = input_ids.cpu().numpy(), attended.cpu().numpy()
        types = token_type_ids.cpu().numpy() if token_type_ids is not None else None
        keys = []
        for row in range(len(ids)):
            key = ids[row][mask[row]].tobytes()
            keys.append(key if types is None else key + b"|" + types[row][mask[row]].tobytes())
        return keys
