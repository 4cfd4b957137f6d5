"""Chain modes: LoRA merged vs unmerged give the same outputs, stacked modes really run k adapters,
and the latency harness's statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xstilts.results.statistics import ratio_of_medians, slope_of_median_ratios
from xstilts.settings import AdapterSettings
from xstilts.study.latency import verdict
from xstilts.train.adapters import EncoderRecipe, add_stage_adapter, build_encoder, save_stage_adapter
from xstilts.train.modes.bottleneck import Bottleneck
from xstilts.train.modes.lora import active_lora_count

SETTINGS = AdapterSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0, bottleneck_reduction=4)


def _trained_adapter(base: str, recipe: EncoderRecipe, mode: str, directory, seed: int) -> EncoderRecipe:
    """Stand-in for a stage: a fresh adapter on the recipe's encoder with random (non-zero) weights, saved."""
    torch.manual_seed(seed)
    encoder = add_stage_adapter(build_encoder(recipe), mode, SETTINGS, f"stage{len(recipe.adapters) + 1}")
    with torch.no_grad():
        for parameter in encoder.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.05)
    save_stage_adapter(encoder, mode, SETTINGS, f"stage{len(recipe.adapters) + 1}", directory)
    return recipe.then(directory)


def _inputs(tokenizer) -> dict:
    encoded = tokenizer(["the cat sees the dog", "a bird sings"], padding=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def test_lora_merged_equals_the_unmerged_stack_within_1e5(tmp_path, tiny_encoder_dir, tiny_tokenizer):
    merged = EncoderRecipe(str(tiny_encoder_dir), "lora-merged")
    for k in range(3):
        merged = _trained_adapter(str(tiny_encoder_dir), merged, "lora-merged", tmp_path / f"a{k}", seed=k)
    unmerged = EncoderRecipe(str(tiny_encoder_dir), "lora-stacked", merged.adapters)
    inputs = _inputs(tiny_tokenizer)
    with torch.no_grad():
        merged_encoder, stacked_encoder = build_encoder(merged).eval(), build_encoder(unmerged).eval()
        merged_out = merged_encoder(**inputs).last_hidden_state
        stacked_out = stacked_encoder(**inputs).last_hidden_state
        plain_out = build_encoder(str(tiny_encoder_dir)).eval()(**inputs).last_hidden_state
    assert active_lora_count(merged_encoder) == 0, "merged: no LoRA modules left"
    assert active_lora_count(stacked_encoder) == 3
    assert (merged_out - stacked_out).abs().max().item() < 1e-5
    assert (merged_out - plain_out).abs().max().item() > 1e-3, "the adapters change the encoder"


def test_stacked_modes_run_k_adapters(tmp_path, tiny_encoder_dir, tiny_tokenizer):
    inputs = _inputs(tiny_tokenizer)
    for mode in ("lora-stacked", "adapter-stacked"):
        recipe = EncoderRecipe(str(tiny_encoder_dir), mode)
        for k in range(1, 4):
            recipe = _trained_adapter(str(tiny_encoder_dir), recipe, mode, tmp_path / f"{mode}{k}", seed=k)
            encoder = build_encoder(recipe).eval()
            if mode == "lora-stacked":
                assert active_lora_count(encoder) == k
                calls = {}
                for name, module in encoder.named_modules():
                    if name.endswith(".lora_A") or ".lora_A." in name:
                        module.register_forward_hook(
                            lambda m, i, o, name=name, calls=calls: calls.__setitem__(name, calls.get(name, 0) + 1)
                        )
                with torch.no_grad():
                    encoder(**inputs)
                from peft.tuners.lora import LoraLayer

                adapted = len([m for m in encoder.modules() if isinstance(m, LoraLayer)])
                assert adapted == 6 * encoder.config.num_hidden_layers, (
                    "query, key, value and the three dense layers of each layer"
                )
                assert len(calls) == k * adapted, "each of the k LoRAs runs on every adapted layer"
            else:
                bottlenecks = [m for m in encoder.modules() if isinstance(m, Bottleneck)]
                assert len(bottlenecks) == k * encoder.config.num_hidden_layers
                calls = {}
                for index, bottleneck in enumerate(bottlenecks):
                    bottleneck.register_forward_hook(
                        lambda m, i, o, index=index, calls=calls: calls.__setitem__(index, calls.get(index, 0) + 1)
                    )
                with torch.no_grad():
                    encoder(**inputs)
                assert calls == {index: 1 for index in range(len(bottlenecks))}, (
                    "every stacked adapter runs once per forward"
                )


def test_adapter_stage_trains_only_its_adapter(tiny_encoder_dir):
    encoder = add_stage_adapter(build_encoder(str(tiny_encoder_dir)), "lora-stacked", SETTINGS, "stage1")
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".stage1." in n for n in trainable)


def test_bootstrap_ratio_and_verdicts():
    rng = np.random.default_rng(0)
    base = rng.normal(10.0, 0.1, 200)
    slower = rng.normal(12.0, 0.1, 200)
    ratio, low, high = ratio_of_medians(slower, base, 1000, rng)
    assert ratio == pytest.approx(1.2, abs=0.01) and low < ratio < high and high - low < 0.02
    samples = [rng.normal(10.0 * (1 + 0.05 * k), 0.1, 100) for k in range(4)]
    slope, low, high = slope_of_median_ratios(list(range(4)), samples, samples[0], 300, rng)
    assert slope == pytest.approx(0.05, abs=0.005) and low < slope < high
    group = {
        "slope_per_task": [slope, low, high],
        "noise_floor": {"ci95": [0.99, 1.01]},
        "models": [{"chain_length": k} for k in range(4)],
    }
    assert "grows with chain length" in verdict("lora-stacked", group) and "changes by +5." in verdict(
        "lora-stacked", group
    )
    flat = {
        "slope_per_task": [0.001, -0.002, 0.004],
        "noise_floor": {"ci95": [0.98, 1.02]},
        "models": [{"chain_length": k} for k in range(4)],
    }
    assert "flat: within the noise floor" in verdict("full", flat)


def test_chain_mode_config_errors(tmp_path, tiny_encoder_dir, demo_tasks):
    from xstilts.config import parse_config
    from xstilts.errors import ConfigError

    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "tasks": demo_tasks,
        "chain": ["demo_paraphrase"],
        "targets": ["demo_nli"],
        "chain_modes": ["full", "lora-stacked", "lora-stacked", "prompt"],
        "adapters": {"target_tuning": "full"},
        "latency": {},
        "keep": "needed",
    }
    with pytest.raises(ConfigError) as error:
        parse_config(raw, "study.yaml")
    assert "chain_modes[3]: Input should be 'full', 'lora-merged', 'lora-stacked' or 'adapter-stacked'" in str(
        error.value
    )
    raw["chain_modes"] = ["full", "lora-stacked", "lora-stacked"]
    with pytest.raises(ConfigError) as error:
        parse_config(raw, "study.yaml")
    text = str(error.value)
    assert "adapters.target_tuning: target_tuning: full is not available with lora-stacked" in text
    assert "latency: latency needs the trained target models; use keep: all" in text
    assert "chain_modes: a mode appears twice" in text
