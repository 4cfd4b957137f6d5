"""The price of a study: the FLOP formula against torch's FLOP counter, the parameter count against the model's,
and `xstilts plan --device` on the paper config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import XLMRobertaModel

from xstilts.cli import DEVICE_NAMES, main
from xstilts.demo.shaped import xlmr_config
from xstilts.study.price import DEVICES, KNOWN_SHAPES, EncoderShape, encoder_shape

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("length", [16, 48])
def test_the_training_flop_formula_is_torchs_count_of_a_forward_and_backward(length):
    shape = EncoderShape(vocab=300, hidden=64, layers=3, intermediate=160, positions=130)
    config = xlmr_config(shape)
    config._attn_implementation = "eager"  # the attention products as matrix products torch's counter sees
    model = XLMRobertaModel(config, add_pooling_layer=False)
    ids = torch.randint(5, 300, (2, length))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).last_hidden_state.sum().backward()
    tokens = ids.numel()
    assert counter.get_total_flops() == shape.training_flops_per_token(length) * tokens


def test_the_parameter_count_is_the_models_own():
    tiny = EncoderShape(vocab=300, hidden=64, layers=3, intermediate=160, positions=130)
    assert tiny.parameters == sum(p.numel() for p in XLMRobertaModel(xlmr_config(tiny)).parameters())
    large = KNOWN_SHAPES["xlm-roberta-large"]
    with torch.device("meta"):  # XLM-R Large's shape, nothing allocated
        model = XLMRobertaModel(xlmr_config(large))
    assert large.parameters == sum(p.numel() for p in model.parameters()) == 559_890_432


def test_a_local_encoder_is_priced_from_its_config(tiny_encoder_dir):
    shape = encoder_shape(str(tiny_encoder_dir))
    assert shape.hidden == 32 and shape.layers == 2
    with pytest.raises(Exception, match="no shape for the encoder 'nobody/nothing'"):
        encoder_shape("nobody/nothing")


def test_plan_prices_the_paper_on_a_device(capsys):
    assert set(DEVICE_NAMES) == set(DEVICES)
    paper = REPOSITORY / "configs" / "paper" / "x-stilts.yaml"
    assert main(["plan", str(paper), "--device", "h100"]) == 0
    out = capsys.readouterr().out
    price = out[out.index("price on NVIDIA H100") :]
    assert "at 40% utilisation; encoder 560M parameters (24 layers, hidden 1024, vocabulary 250002)" in price
    total = next(line for line in price.splitlines() if line.strip().startswith("total"))
    tokens, pflop, hours, disk = total.split()[-4:]
    assert tokens.startswith("~") and float(hours.lstrip("~").replace(",", "")) > 0
    # 10 stages and 13 x 7 target fine-tunes, each an encoder of 560M float32 parameters
    assert float(disk) == pytest.approx((10 + 13 * 7) * 4 * 559_890_432 / 1e9, rel=1e-3)
    assert "all stages (10)" in price and "all target fine-tunes (91)" in price
    assert main(["plan", str(paper), "--device", "tpu"]) == 2
    assert "--device: expected one of h100, h200, a100, cpu, got 'tpu'" in capsys.readouterr().err


def test_status_replaces_the_estimate_with_the_measured_rate(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    import shutil

    from fast_training import FAST

    import xstilts
    from xstilts.config import parse_config
    from xstilts.rundir.runs import RunDirectory

    config = parse_config(
        {
            "encoder": str(tiny_encoder_dir),
            "output_dir": str(tmp_path / "run"),
            "tasks": demo_tasks,
            "study": {"pool": ["demo_paraphrase"], "orders": {"singles": True}, "baseline_runs": 1},
            "targets": [{"task": "demo_nli", "languages": ["en"]}],
            "training": FAST,
        }
    )
    xstilts.run(config, progress=False)
    run = RunDirectory(tmp_path / "run")
    plan = run.read_plan()
    # one intermediate stage and two fine-tunes, each max_steps x batch_size x max_length tokens
    assert sorted(plan.estimated_tokens.values()) == [2 * 8 * 64] * 3
    assert main(["status", str(run.root)]) == 0
    assert "time left: none to train (3 stages and fine-tunes done)" in capsys.readouterr().out
    stage = next(e.stage for e in plan.evaluations if e.stage and e.chain)
    shutil.rmtree(run.store.stage_dir(stage, "demo_nli"))  # one fine-tune still to do
    assert main(["status", str(run.root)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("time left"))
    assert "to train 1 stages and fine-tunes, at the rate measured over the 2 finished" in line


def test_a_retrieval_layer_beyond_the_encoders_depth_is_refused_before_any_stage(tmp_path, tiny_encoder_dir, capsys):
    """The tiny encoder has 2 layers (hidden states 0..2): layer 9 would fail at Tatoeba's first evaluation, after
    every stage before it; run refuses it before writing anything and plan says it would fail."""
    import yaml

    data = tmp_path / "data" / "tatoeba" / "v1"
    data.mkdir(parents=True)
    (data / "tatoeba.deu-eng.deu").write_text("Tom isst Brot .\nDie Katze schläft .\n", encoding="utf-8")
    (data / "tatoeba.deu-eng.eng").write_text("Tom eats bread .\nThe cat sleeps .\n", encoding="utf-8")
    config = tmp_path / "retrieval.yaml"
    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "data_dir": str(tmp_path / "data"),
        "targets": [{"task": "tatoeba", "languages": ["de"], "embedding": {"layer": 9}}],
    }
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["plan", str(config)]) == 0
    assert "would fail: targets[0].embedding.layer: embedding layer 9 does not exist" in capsys.readouterr().out
    assert main(["run", str(config)]) == 2
    error = capsys.readouterr().err
    assert "targets[0].embedding.layer: embedding layer 9 does not exist: the encoder has hidden states 0..2" in error
    assert not (tmp_path / "run").exists(), "nothing is written"
