"""A chain mode is one module plus one registration line: a throw-away mode, written here as a module of its own
and registered with one call, runs through the config, the planner, the stages, evaluation and the report."""

from __future__ import annotations

import json
import textwrap

import pytest
from fast_training import FAST as TWO_STEPS

import xstilts
from xstilts.chain_modes import CHAIN_MODES, ChainMode, register, unregister

SCALED_MODE = '''
"""`scaled`: each stage learns one scale per hidden unit, applied to the encoder's output."""

import torch
from torch import nn


class ScaledOutput:
    def rebuild(self, encoder, adapters):
        from safetensors.torch import load_file

        from xstilts.train.modes import adapter_weights_file

        for index, directory in enumerate(adapters):
            self.add_trainable(encoder, None, f"stage{index + 1}")
            encoder.xstilts_scales[f"stage{index + 1}"].load_state_dict(load_file(str(adapter_weights_file(directory))))
        return encoder

    def add_trainable(self, encoder, settings, name):
        if not hasattr(encoder, "xstilts_scales"):
            encoder.xstilts_scales = nn.ModuleDict()

            def scale(module, inputs, output):
                hidden = output.last_hidden_state
                for scales in encoder.xstilts_scales.values():
                    hidden = hidden * scales.weight
                output.last_hidden_state = hidden
                return output

            encoder.register_forward_hook(scale)
        scales = nn.Module()
        scales.weight = nn.Parameter(torch.ones(encoder.config.hidden_size))  # a fresh stage changes nothing
        encoder.xstilts_scales[name] = scales.to(next(encoder.parameters()).device)
        return encoder

    def adapter_state(self, encoder, name):
        return dict(encoder.xstilts_scales[name].state_dict())
'''


@pytest.fixture
def scaled_mode(tmp_path, monkeypatch):
    (tmp_path / "scaled_mode.py").write_text(textwrap.dedent(SCALED_MODE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register(ChainMode("scaled", "scaled_mode:ScaledOutput", trains_adapters=True, stacked=True, summary="scales"))
    yield "scaled"
    unregister("scaled")


def test_the_registry_refuses_what_would_be_ambiguous():
    with pytest.raises(ValueError, match="registered twice"):
        register(CHAIN_MODES["full"])
    with pytest.raises(ValueError, match="cannot be removed"):
        unregister("full")


@pytest.mark.stage
def test_a_registered_mode_runs_a_chain_end_to_end(tmp_path, tiny_encoder_dir, demo_tasks, scaled_mode):
    config = xstilts.parse_config(
        {
            "encoder": str(tiny_encoder_dir),
            "output_dir": str(tmp_path / "run"),
            "tasks": demo_tasks,
            "chain": ["demo_paraphrase", "demo_pos"],
            "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
            "training": {**TWO_STEPS, "max_steps": 2, "eval_every_steps": 2},
            "chain_modes": ["full", scaled_mode],
        }
    )
    summary = xstilts.run(config, progress=False)
    assert sorted(summary["chains"]) == ["k2-demo_paraphrase+demo_pos", "scaled-k2-demo_paraphrase+demo_pos"]
    stages = [json.loads(p.read_text()) for p in (tmp_path / "run" / "stages").glob("*/stage.json")]
    scaled = [s for s in stages if s["mode"] == scaled_mode]
    assert len(scaled) == 3, "two intermediate stages and the target, each its own stage"
    intermediate = [s for s in scaled if s["role"] == "intermediate"]
    assert all(s["trainable_parameters"] < s["parameters"] / 2 for s in intermediate), "only the scales train"
    assert sorted(len(s["encoder_recipe"]["adapters"]) for s in intermediate) == [1, 2], "k scales after k stages"
    assert {s["identity"] for s in scaled}.isdisjoint({s["identity"] for s in stages if s["mode"] == "full"})
    report = xstilts.write_report(tmp_path / "run").read_text()
    assert "scaled chains" in report


MEAN_MERGE = '''
"""`mean`: the task vectors' weighted mean (a model soup's delta)."""


def combine(deltas, weights, density):
    return sum(w * d for w, d in zip(weights, deltas)) / len(deltas)
'''


def test_a_merge_method_is_one_module_and_one_registration(tmp_path, monkeypatch, tiny_encoder_dir, demo_tasks):
    import torch

    from xstilts.chain_modes import MergeMethod, register_merge, unregister_merge
    from xstilts.rundir.runs import RunDirectory
    from xstilts.study.plan import build_plan
    from xstilts.train.merging import merge_states
    from xstilts.train.request import MergeSettings

    (tmp_path / "mean_merge.py").write_text(textwrap.dedent(MEAN_MERGE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_merge(MergeMethod("mean", "mean_merge:combine", uses_density=False, random=False, summary="the mean"))
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_merge(MergeMethod("ties", "mean_merge:combine", False, False, "again"))
        base = {"w": torch.zeros(3)}
        tuned = [{"w": torch.tensor([1.0, 2.0, 3.0])}, {"w": torch.tensor([3.0, 2.0, 1.0])}]
        merged = merge_states(base, tuned, MergeSettings("mean", weight=1.0))
        torch.testing.assert_close(merged["w"], torch.tensor([2.0, 2.0, 2.0]))
        config = xstilts.parse_config(
            {
                "encoder": str(tiny_encoder_dir),
                "output_dir": str(tmp_path / "run"),
                "tasks": demo_tasks,
                "study": {
                    "pool": ["demo_paraphrase", "demo_swag"],
                    "orders": {"explicit": [["demo_paraphrase", "demo_swag"]]},
                    "combine": {"methods": ["mean"], "weights": [1.0], "mixture": False},
                },
                "targets": [{"task": "demo_nli", "languages": ["en"]}],
            }
        )
        plan = build_plan(config, config.registry(), RunDirectory(config.output_dir).store)
        assert [node.label for node in plan.merges] == ["mean-w1-k2-demo_paraphrase+demo_swag"]
    finally:
        unregister_merge("mean")
    with pytest.raises(xstilts.XstiltsError, match="merge method 'mean'"):
        MergeSettings("mean")
