"""What a study costs before it runs: training tokens, FLOPs, device-hours and disk, per stage and in total.

- Tokens: examples x epochs of each stage (or max_steps x batch size), each padded to the stage's max_length: an
  upper bound (length-grouped batches pad less). Examples are counted in the training files; where they are not
  on disk yet, a built-in task's approximate published training-set size stands in (marked ~).
- FLOPs per training token: 6 x the encoder's weight-matrix parameters (forward, and twice that backward;
  embeddings are lookups, not products) + 12 x layers x length x hidden (the attention scores and their
  weighted sum, forward and backward). `tests/test_price.py` checks this against torch's FLOP counter on a tiny
  encoder. Task heads and evaluation (inference, a third of a training token's FLOPs per token) are not counted.
- Device-hours: FLOPs / (the device's dense bf16 peak x a stated utilisation); the measured throughput of a
  running study replaces it (`xstilts status`).
- Disk: every stage that trains all weights stores its encoder in float32 (4 bytes per parameter); a stage of
  an adapter mode stores its adapter only; target fine-tunes are counted as kept (`keep: needed` prunes them).

Planning loads no model: the encoder's shape comes from its config.json (a local directory, or the hub cache)
or, offline, from the shapes of the encoders the protocol names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig
from xstilts.errors import XstiltsError
from xstilts.tasks.registry import TaskRegistry, TaskSpec


@dataclass(frozen=True)
class EncoderShape:
    """A BERT-family encoder's dimensions (XLM-R, mBERT): what its parameters and FLOPs follow from."""

    vocab: int
    hidden: int
    layers: int
    intermediate: int
    positions: int = 514
    type_vocab: int = 1
    heads: int = 16

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EncoderShape:
        return cls(
            config["vocab_size"],
            config["hidden_size"],
            config["num_hidden_layers"],
            config["intermediate_size"],
            config.get("max_position_embeddings", 514),
            config.get("type_vocab_size", 1),
            config.get("num_attention_heads", 16),
        )

    @property
    def matrix_parameters(self) -> int:
        """The weight matrices every token is multiplied by: per layer Q, K, V, the attention output, the two FFN."""
        return self.layers * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)

    @property
    def parameters(self) -> int:
        """Every parameter of the encoder with its pooler (XLMRobertaModel's count)."""
        d, f = self.hidden, self.intermediate
        embeddings = (self.vocab + self.positions + self.type_vocab) * d + 2 * d
        layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d
        return embeddings + self.layers * layer + d * d + d

    def training_flops_per_token(self, length: int) -> int:
        return 6 * self.matrix_parameters + 12 * self.layers * length * self.hidden


# The encoders the protocol names, for pricing offline (their config.json values).
KNOWN_SHAPES = {
    "xlm-roberta-large": EncoderShape(250002, 1024, 24, 4096),
    "FacebookAI/xlm-roberta-large": EncoderShape(250002, 1024, 24, 4096),
    "xlm-roberta-base": EncoderShape(250002, 768, 12, 3072, heads=12),
    "FacebookAI/xlm-roberta-base": EncoderShape(250002, 768, 12, 3072, heads=12),
    "bert-base-multilingual-cased": EncoderShape(119547, 768, 12, 3072, 512, 2, 12),
    "google-bert/bert-base-multilingual-cased": EncoderShape(119547, 768, 12, 3072, 512, 2, 12),
}

# Approximate English training-set sizes of the built-in tasks (docs: the protocol's tables), used only while
# their files are not on disk. QA counts questions (windows of long contexts add features).
APPROXIMATE_TRAIN_SIZES = {
    "mnli": 392_702,
    "anli_plus": 550_152 + 392_702 + 162_865,
    "qqp": 363_846,
    "squad_v1": 87_599,
    "squad_v2": 130_319,
    "hellaswag": 39_905,
    "cosmosqa": 25_262,
    "commonsenseqa": 9_741,
    "ccg": 39_604,
    "xnli": 392_702,
    "pawsx": 49_401,
    "udpos": 21_253,
    "panx": 20_000,
    "xquad": 87_599,
    "mlqa": 87_599,
    "tydiqa": 3_696,
}


@dataclass(frozen=True)
class Device:
    name: str
    peak_flops: float  # dense bf16 (cpu: float32) FLOP/s
    memory_bytes: int


DEVICES = {
    "h100": Device("NVIDIA H100 SXM (989 TFLOP/s dense bf16)", 989e12, 80 << 30),
    "h200": Device("NVIDIA H200 (989 TFLOP/s dense bf16)", 989e12, 141 << 30),
    "a100": Device("NVIDIA A100 (312 TFLOP/s dense bf16)", 312e12, 80 << 30),
    "cpu": Device("2 CPU cores (about 0.1 TFLOP/s float32)", 0.1e12, 24 << 30),
}
UTILISATION = 0.4  # the fraction of peak a fine-tune of a large encoder reaches (model FLOPs utilisation)


@dataclass
class PricedStage:
    identity: str  # the stage's (a target fine-tune's, a merge's) identity in the stage store
    label: str
    kind: str  # "stage", "target fine-tune", "merge"
    tokens: int | None  # None: unknown (no file and no known size)
    approximate: bool  # some size is the published approximation, not the file's
    full: bool = True  # trains (and stores) every weight; False: an adapter
    length: int = 0  # tokens per feature (max_length)
    flops: float | None = None
    disk_bytes: int = 0


def encoder_shape(encoder: str) -> EncoderShape:
    """The shape from the encoder's config.json (a local directory, or the hub cache), else the known shapes."""
    path = Path(encoder).expanduser()
    config_file = path / "config.json" if path.is_dir() else None
    if config_file is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(encoder, "config.json")
            config_file = Path(cached) if isinstance(cached, str) else None
        except Exception:  # an id the hub library cannot parse: fall through to the known shapes
            config_file = None
    if config_file is not None and config_file.is_file():
        return EncoderShape.from_config(json.loads(config_file.read_text(encoding="utf-8")))
    if encoder in KNOWN_SHAPES:
        return KNOWN_SHAPES[encoder]
    raise XstiltsError(
        f"no shape for the encoder {encoder!r}: not a local directory, not in the hub cache, not one of "
        f"{', '.join(sorted(KNOWN_SHAPES))}; download it once (or give a local directory) to price the study"
    )


def stage_tokens(plan: Any, config: ExperimentConfig, registry: TaskRegistry) -> list[PricedStage]:
    """Every trained stage, merge and target fine-tune of the plan with its training tokens (no shape needed:
    what `xstilts status` divides measured seconds by)."""
    from xstilts.study.plan import evaluated_prefixes, stage_example_epochs, target_request, train_examples_on_disk

    def priced(request: Any, label: str, kind: str) -> PricedStage:
        approximated: list[str] = []

        def examples(spec: TaskSpec, languages: Any, limit: int | None) -> int | None:
            found = train_examples_on_disk(spec, languages, limit)
            if found is None and spec.name in APPROXIMATE_TRAIN_SIZES:
                approximated.append(spec.name)
                found = APPROXIMATE_TRAIN_SIZES[spec.name]
                return min(found, limit) if limit else found
            return found

        count = stage_example_epochs(request, examples)
        tokens = None if count is None else count * request.settings.max_length
        full = request.adapter is None
        return PricedStage(request.identity, label, kind, tokens, bool(approximated), full, request.settings.max_length)

    found = [priced(node.stage, node.label, "stage") for node in plan.stages]
    found += [PricedStage(node.identity, node.label, "merge", 0, False) for node in plan.merges]
    trainable = [t for t in config.targets if registry.get(t.task).trainable]
    for identity, seed in evaluated_prefixes(plan, config) + plan.combined:
        prefix = replace(plan.nodes[identity], seed=seed)
        suffix = "" if seed == plan.nodes[identity].seed else f" (seed {seed})"
        for target in trainable:
            request = target_request(config, registry, prefix, target)
            found.append(priced(request, f"{target.task} after {prefix.label}{suffix}", "target fine-tune"))
    return found


def price_plan(plan: Any, config: ExperimentConfig, registry: TaskRegistry, shape: EncoderShape) -> list[PricedStage]:
    """`stage_tokens` with each one's FLOPs and the disk its stage takes."""
    priced = stage_tokens(plan, config, registry)
    for stage in priced:
        per_token = shape.training_flops_per_token(stage.length)
        stage.flops = None if stage.tokens is None else float(stage.tokens) * per_token
        stage.disk_bytes = 4 * (shape.parameters if stage.full else _adapter_parameters(config, shape))
    return priced


def _adapter_parameters(config: ExperimentConfig, shape: EncoderShape) -> int:
    """A LoRA's parameters on the adapted linear layers (r x (inputs + outputs) each), as an adapter stage stores."""
    d, f, r = shape.hidden, shape.intermediate, config.adapters.lora_r
    sizes = {"query": [(d, d)], "key": [(d, d)], "value": [(d, d)], "dense": [(d, d), (d, f), (f, d)]}
    return shape.layers * sum(r * (i + o) for name in config.adapters.lora_targets for i, o in sizes.get(name, []))


def format_price(
    stages: list[PricedStage], shape: EncoderShape, device: Device, utilisation: float = UTILISATION
) -> str:
    """The price table: per kind of work a summary line, the ten costliest stages, and the total."""
    seconds = lambda flops: flops / (device.peak_flops * utilisation)  # noqa: E731
    lines = [
        f"price on {device.name} at {utilisation:.0%} utilisation; encoder {shape.parameters / 1e6:.0f}M parameters "
        f"({shape.layers} layers, hidden {shape.hidden}, vocabulary {shape.vocab}); tokens padded to max_length "
        "(an upper bound), ~ where a size is the published one (files not on disk):",
        f"  {'stage':<60} {'tokens':>10} {'PFLOP':>10} {'device-h':>9} {'disk GB':>8}",
    ]
    ranked = sorted(stages, key=lambda s: -(s.flops or 0))
    shown = ranked[:10]
    for stage in shown:
        lines.append(_line(stage.label[:60], stage, seconds))
    if len(ranked) > len(shown):
        lines.append(f"  ... and {len(ranked) - len(shown)} more")
    for kind in ("stage", "merge", "target fine-tune"):
        mine = [s for s in stages if s.kind == kind]
        if mine:
            lines.append(_line(f"all {kind}s ({len(mine)}{_unknown(mine)})", _sum(mine), seconds))
    lines.append(_line(f"total{_unknown(stages)}", _sum(stages), seconds))
    return "\n".join(lines)


def _unknown(stages: list[PricedStage]) -> str:
    unknown = sum(s.tokens is None for s in stages)
    return f", {unknown} of unknown size, not counted" if unknown else ""


def _sum(stages: list[PricedStage]) -> PricedStage:
    known = [s for s in stages if s.tokens is not None]
    return PricedStage(
        identity="",
        label="sum",
        kind="sum",
        tokens=sum(s.tokens for s in known),
        approximate=any(s.approximate or s.tokens is None for s in stages),
        flops=sum(s.flops or 0.0 for s in known),
        disk_bytes=sum(s.disk_bytes for s in stages),
    )


def _line(label: str, stage: PricedStage, seconds: Any) -> str:
    mark = "~" if stage.approximate else ""
    if stage.tokens is None:
        return f"  {label:<60} {'?':>10} {'?':>10} {'?':>9} {stage.disk_bytes / 1e9:>8.1f}"
    hours = seconds(stage.flops) / 3600
    return (
        f"  {label:<60} {mark + _si(stage.tokens):>10} {mark + f'{stage.flops / 1e15:,.1f}':>10} "
        f"{mark + f'{hours:,.2f}':>9} {stage.disk_bytes / 1e9:>8.1f}"
    )


def _si(value: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"
