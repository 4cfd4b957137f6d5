"""Multi-task stages: samplers, shared heads, masked LM mixed in, translated variants, and resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from xstilts.config import parse_config
from xstilts.errors import ConfigError
from xstilts.rundir.layout import ENCODER_DIR, HEADS_FILE
from xstilts.rundir.store import StageStore
from xstilts.study.plan import build_plan
from xstilts.study.stage import run_stage
from xstilts.tasks.mlm import mask_tokens
from xstilts.train.mixture import sampling_probabilities, task_schedule

FAST = {
    "max_steps": 8,
    "batch_size": 8,
    "eval_every_steps": 4,
    "eval_examples": 8,
    "learning_rate": 1e-3,
    "max_length": 64,
    "doc_stride": 32,
}


def test_sampler_probabilities_exact():
    sizes = {"big": 100, "small": 25}
    assert sampling_probabilities(sizes, "proportional") == {"big": 0.8, "small": 0.2}
    assert sampling_probabilities(sizes, "temperature", temperature=2.0) == pytest.approx(
        {"big": 2 / 3, "small": 1 / 3}, abs=1e-15
    )
    assert sampling_probabilities(sizes, "temperature", temperature=1.0) == pytest.approx(
        {"big": 0.8, "small": 0.2}, abs=1e-15
    )
    assert sampling_probabilities(sizes, "uniform") == {"big": 0.5, "small": 0.5}
    assert sampling_probabilities(sizes, "capped", cap=50) == pytest.approx({"big": 2 / 3, "small": 1 / 3}, abs=1e-15)
    with pytest.raises(ValueError, match="needs a cap"):
        sampling_probabilities(sizes, "capped")


def test_task_schedule_is_seeded_and_follows_the_probabilities():
    schedule = task_schedule({"a": 0.75, "b": 0.25}, 4000, seed=3)
    assert schedule == task_schedule({"a": 0.75, "b": 0.25}, 4000, seed=3)
    assert schedule != task_schedule({"a": 0.75, "b": 0.25}, 4000, seed=4)
    assert abs(Counter(schedule)["a"] / 4000 - 0.75) < 0.03


def test_bert_masking_rates_and_special_tokens():
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (64, 256))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    masked, labels = mask_tokens(ids, maskable, mask_token_id=4, random_tokens=(0, 1000))
    chosen = labels != -100
    assert not chosen[:, 0].any(), "special tokens are never predicted"
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs((masked[chosen] == 4).float().mean().item() - 0.8) < 0.03
    assert torch.equal(masked[~chosen], ids[~chosen]), "unchosen tokens are untouched"


def mixture_config(tmp_path: Path, encoder: Path, demo_tasks: dict, **mixture) -> dict:
    corpus = tmp_path / "mlm"
    corpus.mkdir(exist_ok=True)
    (corpus / "en.txt").write_text("the cat sees the dog\nthe dog sees the bird\n\na bird sings\n", encoding="utf-8")
    (corpus / "x-lex.txt").write_text(
        "\n".join(ex["text_a"] for ex in _read(demo_tasks["demo_nli"]["data_dir"], "test-x-lex.jsonl")[:20]),
        encoding="utf-8",
    )
    nli_copy = tmp_path / "nli-copy"
    nli_copy.mkdir(exist_ok=True)
    for split in ("train", "dev"):
        (nli_copy / f"{split}-en.jsonl").write_text(
            (Path(demo_tasks["demo_nli"]["data_dir"]) / f"{split}-en.jsonl").read_text(encoding="utf-8"),
            encoding="utf-8",
        )
    return {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": demo_tasks,
        "variants": {"demo_nli_translated": {"base": "demo_nli", "data_dir": str(nli_copy)}},
        "mixtures": {
            "nli_mix": {
                "tasks": ["demo_nli", {"task": "demo_nli_translated", "head": "demo_nli"}, "demo_squad2"],
                "mlm": {"data_dir": str(corpus), "languages": ["en", "x-lex"]},
                **mixture,
            }
        },
        "chain": ["nli_mix"],
        "targets": [{"task": "demo_nli", "languages": ["en"]}],
        "training": FAST,
    }


def _read(directory: str, name: str) -> list[dict]:
    import json

    return [
        json.loads(line) for line in (Path(directory) / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@pytest.mark.stage
def test_mixture_stage_trains_every_member_with_a_shared_head(tmp_path, tiny_encoder_dir, demo_tasks):
    config = parse_config(mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="uniform"))
    store = StageStore(tmp_path / "stages")
    (node,) = build_plan(config, config.registry(), store).stages
    record = run_stage(node.stage, store, progress=False)

    members = record["mixture"]["members"]
    assert set(members) == {"demo_nli", "demo_nli_translated", "demo_squad2", "mlm"}
    assert sum(m["steps"] for m in members.values()) == record["steps"] == 8
    assert all(m["probability"] == 0.25 for m in members.values())
    assert members["demo_nli_translated"]["head"] == "demo_nli" and record["mixture"]["mlm_head"] == "fresh"
    assert record["kind"] == "mixture" and record["primary_metric"] == "mean"
    dev = record["dev_metrics"]
    assert dev["mean"] == pytest.approx(
        (dev["demo_nli accuracy"] + dev["demo_nli_translated accuracy"] + dev["demo_squad2 f1"]) / 3
    )
    stage_dir = store.stage_dir(node.identity, "nli_mix")
    with safe_open(str(stage_dir / HEADS_FILE), framework="pt") as handle:
        heads = {key.split(".")[0] for key in handle.keys()}
    assert heads == {"demo_nli", "demo_squad2", "mlm"}, "one NLI head shared by the two NLI tasks"
    assert (stage_dir / ENCODER_DIR / "model.safetensors").is_file()


def test_mixture_identity_and_config_errors(tmp_path, tiny_encoder_dir, demo_tasks):
    base = mixture_config(tmp_path, tiny_encoder_dir, demo_tasks)

    def identity(raw):
        return (
            build_plan(parse_config(raw), parse_config(raw).registry(), StageStore(tmp_path / "s")).stages[0].identity
        )

    assert identity(base) == identity(mixture_config(tmp_path, tiny_encoder_dir, demo_tasks))
    assert identity(base) != identity(mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="temperature"))
    assert identity(
        mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="temperature", temperature=3.0)
    ) != identity(mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="temperature"))

    bad = mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="capped")
    bad["mixtures"]["nli_mix"]["tasks"][2] = {"task": "demo_squad2", "head": "demo_nli"}
    bad["mixtures"]["nli_mix"]["mlm"]["languages"] = ["en", "xx"]
    bad["variants"]["broken"] = {"base": "demo_nil", "data_dir": str(tmp_path)}
    with pytest.raises(ConfigError) as error:
        parse_config(bad, "study.yaml")
    text = str(error.value)
    assert "mixtures.nli_mix.tasks[2].head: demo_squad2 cannot share head 'demo_nli' with demo_nli" in text
    assert "mixtures.nli_mix.cap: the capped sampler needs a cap" in text
    assert "mixtures.nli_mix.mlm.languages[1]: masked-LM text file not found" in text
    assert "variants.broken.base: unknown task 'demo_nil' (did you mean 'demo_nli'?)" in text


@pytest.mark.stage
def test_a_killed_mixture_stage_resumes_to_identical_weights(tmp_path, tiny_encoder_dir, demo_tasks, monkeypatch):
    import xstilts.train.loop as training

    raw = mixture_config(tmp_path, tiny_encoder_dir, demo_tasks, sampler="temperature")
    config = parse_config(raw)
    stores = [StageStore(tmp_path / "a"), StageStore(tmp_path / "b")]
    requests = [build_plan(config, config.registry(), store).stages[0].stage for store in stores]
    uninterrupted = run_stage(requests[0], stores[0], progress=False, checkpoint_every_steps=3)

    original_save = training.Checkpointer.save

    def save_then_die(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stage(requests[1], stores[1], progress=False, checkpoint_every_steps=3)
    monkeypatch.setattr(training.Checkpointer, "save", original_save)
    resumed = run_stage(requests[1], stores[1], progress=False, checkpoint_every_steps=3)

    assert resumed["history"] == uninterrupted["history"] and resumed["mixture"] == uninterrupted["mixture"]
    weights = [
        load_file(str(s.stage_dir(r.identity, "nli_mix") / ENCODER_DIR / "model.safetensors"))
        for s, r in zip(stores, requests)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
