"""Inference latency against chain length: a measurement meant to survive review.

For every trained target model of a run (one per chain mode, target and prefix), the harness times the
forward pass on fixed inputs built from the target's own English dev text, for each batch size and
sequence length. Models of one (mode, target) are timed interleaved, in an order that rotates every
repetition, so drift of the machine (clocks, thermals, other load) spreads over all of them instead of
masquerading as an effect of chain length. The k = 0 model is timed a second time under another name:
the ratio of those two identical models is the harness's noise floor. GPU timings use CUDA events
after synchronisation; CPU timings record the thread count.

Per model: median, p90, p99 and throughput; the ratio of its median to k = 0 with a bootstrap 95%
confidence interval; parameters, forward FLOPs per token and bytes on disk. Per mode: a verdict line
with the change per added task (least-squares slope of the median ratio over k, bootstrapped).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xstilts.errors import XstiltsError
from xstilts.logs import progress_bar
from xstilts.results.statistics import ratio_of_medians, slope_of_median_ratios
from xstilts.rundir.records import complete_rows
from xstilts.rundir.runs import RunDirectory
from xstilts.rundir.stage_directory import StageDirectory, inspect_stage_dir
from xstilts.settings import LatencySettings
from xstilts.train.request import EncoderRecipe

log = logging.getLogger(__name__)


@dataclass
class TimedModel:
    """One model to time: a target fine-tuned after a prefix of length k (or the k = 0 noise twin)."""

    name: str
    chain_length: int
    chain_label: str
    model: Any = field(repr=False, default=None)
    seconds: list[float] = field(default_factory=list)
    combination: str | None = None  # a merge or mixture of the combination study: timed, not in the chain's slope


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def fixed_inputs(
    texts: list[str], tokenizer: Any, batch_size: int, length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """`batch_size` rows of exactly `length` real tokens cut from the concatenated dev text (no padding)."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= batch_size * (length - 2):
            break
    if not ids:
        raise XstiltsError("no text to build latency inputs from")
    while len(ids) < batch_size * (length - 2):
        ids = ids + ids
    rows = [
        [
            tokenizer.cls_token_id or tokenizer.bos_token_id,
            *ids[i * (length - 2) : (i + 1) * (length - 2)],
            tokenizer.sep_token_id or tokenizer.eos_token_id,
        ]
        for i in range(batch_size)
    ]
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def _time_once(
    model: Any, task: str, inputs: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype | None
) -> float:
    with (
        torch.inference_mode(),
        torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            model(task, inputs)
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0
        began = time.perf_counter()
        model(task, inputs)
        return time.perf_counter() - began


def time_interleaved(
    models: list[TimedModel],
    task: str,
    inputs: dict[str, torch.Tensor],
    settings: LatencySettings,
    device: torch.device,
    dtype: torch.dtype | None,
    progress: bool = False,
) -> None:
    """Warm every model up, then time them `repetitions` times in an order rotated each round."""
    for timed in models:
        timed.seconds = []
        for _ in range(settings.warmup):
            _time_once(timed.model, task, inputs, device, dtype)
    for repetition in progress_bar(progress, iterable=range(settings.repetitions), desc="latency", leave=False):
        shift = repetition % len(models)
        for timed in models[shift:] + models[:shift]:
            timed.seconds.append(_time_once(timed.model, task, inputs, device, dtype))


def forward_flops_per_token(model: torch.nn.Module, length: int) -> float:
    """2 x the weights of every linear layer a token passes (LoRA matrices included) + attention (4 x layers x hidden x length)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model.encoder.config
    return 2.0 * linear + 4.0 * config.num_hidden_layers * config.hidden_size * length


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def summarize_models(
    models: list[TimedModel], settings: LatencySettings, batch_size: int, length: int
) -> dict[str, Any]:
    """Statistics of one interleaved group; k = 0 is the baseline and its twin gives the noise floor."""
    rng = np.random.default_rng(settings.seed)
    base = next(m for m in models if m.chain_length == 0 and not m.name.endswith("(twin)"))
    baseline = np.asarray(base.seconds)
    rows = []
    for timed in models:
        values = np.asarray(timed.seconds)
        ratio, low, high = ratio_of_medians(values, baseline, settings.bootstrap, rng)
        median = float(np.median(values))
        rows.append(
            {
                "name": timed.name,
                "chain_length": timed.chain_length,
                "chain_label": timed.chain_label,
                "median_ms": median * 1e3,
                "p90_ms": percentile(values, 90) * 1e3,
                "p99_ms": percentile(values, 99) * 1e3,
                "tokens_per_second": batch_size * length / median,
                "ratio_to_k0": ratio,
                "ratio_ci95": [low, high],
                **({"combination": timed.combination} if timed.combination else {}),
            }
        )
    twin = next(r for r in rows if r["name"].endswith("(twin)"))
    measured = [m for m in models if not m.name.endswith("(twin)") and m.combination is None]
    lengths = [m.chain_length for m in measured]
    slope, slope_low, slope_high = slope_of_median_ratios(
        lengths, [np.asarray(m.seconds) for m in measured], baseline, min(settings.bootstrap, 500), rng
    )
    return {
        "batch_size": batch_size,
        "length": length,
        "models": rows,
        "noise_floor": {"ratio": twin["ratio_to_k0"], "ci95": twin["ratio_ci95"]},
        "slope_per_task": [slope, slope_low, slope_high],
    }


def verdict(mode: str, group: dict[str, Any]) -> str:
    """One line stating what was observed for a mode, against the noise floor."""
    slope, low, high = group["slope_per_task"]
    low_floor, high_floor = group["noise_floor"]["ci95"]
    floor = max(abs(1 - low_floor), abs(high_floor - 1))
    lengths = [m["chain_length"] for m in group["models"] if not m.get("combination")]
    span = (max(lengths) - min(lengths)) or 1
    text = f"{mode}: latency changes by {slope * 100:+.2f}% per added task (95% CI {low * 100:+.2f}% to {high * 100:+.2f}%)"
    if low <= 0 <= high or abs(slope) * span <= floor:
        return text + f"; flat: within the noise floor (identical models differ by up to {floor * 100:.1f}%)"
    return (
        text
        + ("; grows with chain length" if slope > 0 else "; falls with chain length")
        + f" (noise floor {floor * 100:.1f}%)"
    )


def measure_run(
    run_dir: str | Path, settings: LatencySettings = LatencySettings(), progress: bool = True
) -> dict[str, Any]:
    """Time every trained target model of a run directory; writes and returns `latency.json`. Of the combination
    study, one model per method is timed (every merge has the same architecture; the mixture is one stage)."""
    from xstilts.config import load_config
    from xstilts.data.examples import example_text, load_examples
    from xstilts.runtime.device import get_accelerator
    from xstilts.train.adapters import load_target_model

    run = RunDirectory(run_dir)
    run.check_contained()
    rows = _timed_rows(run.result_rows())
    if not rows:
        raise XstiltsError(f"{run.root}: no fine-tuned target results to time (run the study first)")
    config = load_config(run.config_file)
    registry = config.registry()
    device = get_accelerator().device
    dtype = (
        torch.bfloat16
        if settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")
        else None
    )
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["target"]), {})[row["chain_label"]] = row
    result: dict[str, Any] = {
        "settings": settings.model_dump(mode="json"),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "precision": "bf16" if dtype else "fp32",
        "torch": torch.__version__,
        "groups": [],
    }
    for (mode, target), labelled in sorted(groups.items()):
        spec = registry.get(target)
        models, stages = [], {}
        for label, row in sorted(labelled.items(), key=lambda item: item[1]["chain_length"]):
            stage_dir = run.store.stage_dir(row["target_stage"], target)
            if inspect_stage_dir(stage_dir).status == "pruned":
                raise XstiltsError(
                    f"{stage_dir}: the target model is gone (keep: needed?); latency needs the trained models"
                )
            model, tokenizer = load_target_model(stage_dir, spec)  # checks the model's files against their record
            method = row["combination"]["method"] if row.get("combination") else None
            models.append(TimedModel(label, row["chain_length"], label, model.to(device), combination=method))
            stages[label] = stage_dir
        if not any(m.chain_length == 0 for m in models):
            continue
        base = next(m for m in models if m.chain_length == 0)
        # The noise twin is a copy in its own memory: timing the same object twice would let it run on
        # weights still in cache from its namesake and look faster than any other model.
        models.append(TimedModel(base.name + " (twin)", 0, base.chain_label, copy.deepcopy(base.model)))
        texts = [example_text(e) for e in load_examples(spec, spec.dev_split, spec.train_language, 200)]
        structure = {
            m.chain_label: {
                "chain_length": m.chain_length,
                "parameters": sum(p.numel() for p in m.model.parameters()),
                "bytes_on_disk": directory_bytes(stages[m.chain_label]),
                "chain_bytes_on_disk": _chain_bytes(stages[m.chain_label]),
            }
            for m in models
            if not m.name.endswith("(twin)")
        }
        for batch_size in settings.batch_sizes:
            for length in settings.lengths:
                if length > getattr(base.model.encoder.config, "max_position_embeddings", 514) - 2:
                    continue
                inputs = fixed_inputs(texts, tokenizer, batch_size, length, device)
                time_interleaved(models, target, inputs, settings, device, dtype, progress)
                group = summarize_models(models, settings, batch_size, length)
                for model_row in group["models"]:
                    model_row.update(structure.get(model_row["chain_label"], {}))
                    model_row["flops_per_token"] = forward_flops_per_token(
                        next(m for m in models if m.name == model_row["name"]).model, length
                    )
                group.update(mode=mode, target=target, verdict=verdict(mode, group))
                result["groups"].append(group)
                log.info("latency %s (%s chains) batch %d x %d: %s", target, mode, batch_size, length, group["verdict"])
        del models
    run.write_latency(result)
    return result


def _timed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fine-tuned targets to time: the study's, and per (target, method) the lowest seed's first model of the
    combination study (controls are not timed)."""
    rows = sorted(complete_rows(rows), key=lambda r: (r["seed"], r["chain_label"]))
    rows = [r for r in rows if r.get("target_stage") and not r.get("control")]
    first: dict[tuple[str, str, str], str] = {}
    for row in rows:
        if row.get("combination"):
            first.setdefault((row["mode"], row["target"], row["combination"]["method"]), row["chain_label"])
    return [
        r
        for r in rows
        if not r.get("combination") or first[(r["mode"], r["target"], r["combination"]["method"])] == r["chain_label"]
    ]


def _chain_bytes(target_stage_dir: Path) -> int:
    """Bytes on disk of the target stage plus every stage its encoder is built from."""
    record = StageDirectory(target_stage_dir).read_record("latency", full=False)
    recipe = EncoderRecipe.from_json(record.get("encoder_recipe") or {"base": ""}, target_stage_dir.parent)
    total = directory_bytes(target_stage_dir)
    for adapter in recipe.adapters:
        if Path(adapter).resolve().parent != target_stage_dir.resolve():
            total += directory_bytes(Path(adapter))
    base = Path(recipe.base)
    if base.is_dir() and target_stage_dir.resolve() not in base.resolve().parents:
        total += directory_bytes(base)
    return total
