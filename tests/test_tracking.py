"""Experiment trackers through accelerate: a tiny study's TensorBoard event files read back."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from xstilts.cli import main
from xstilts.config import load_config
from xstilts.errors import ConfigError
from xstilts.tracking import flatten, log_metrics

TRAINING = {
    "epochs": 1,
    "max_steps": 6,
    "batch_size": 8,
    "eval_every_steps": 3,
    "eval_examples": 8,
    "learning_rate": 1e-3,
    "max_length": 64,
    "log_every_steps": 2,
}


def write_config(tmp_path, encoder, demo_tasks, **extra):
    config = {
        "name": "tracked study",
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": ["demo_paraphrase"],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": TRAINING,
        **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_event_files_hold_the_stage_records(tmp_path, tiny_encoder_dir, demo_tasks):
    path = write_config(tmp_path, tiny_encoder_dir, demo_tasks)
    assert main(["run", str(path), "--tracker", "tensorboard", "-q", "--no-progress"]) == 0
    run = tmp_path / "run"
    folders = sorted(p for p in (run / "trackers").iterdir() if p.is_dir())
    names = [folder.name for folder in folders]
    assert len(names) == 2 and names[0].startswith("intermediate-demo_paraphrase-seed0-")
    assert names[1].startswith("target-demo_nli-after-demo_paraphrase-seed0-"), names

    for folder in folders:
        identity_prefix = folder.name.rsplit("-", 1)[1]
        (stage_dir,) = [p for p in (run / "stages").iterdir() if p.name.startswith(identity_prefix)]
        record = json.loads((stage_dir / "stage.json").read_text())
        logged = scalars(folder)
        losses = [(h["step"], h["loss"]) for h in record["history"] if "loss" in h]
        rates = [(h["step"], h["lr"]) for h in record["history"] if "loss" in h]
        devs = [(h["step"], h["dev"]) for h in record["history"] if "dev" in h]
        assert [s for s, _ in logged["train/loss"]] == [s for s, _ in losses] == [2, 4, 6]
        assert [v for _, v in logged["train/loss"]] == pytest.approx([v for _, v in losses], rel=1e-6)
        assert [v for _, v in logged["train/learning_rate"]] == pytest.approx([v for _, v in rates], rel=1e-6)
        assert [s for s, _ in logged["validation/english_dev"]] == [s for s, _ in devs] == [3, 6]
        assert [v for _, v in logged["validation/english_dev"]] == pytest.approx([v for _, v in devs], rel=1e-6)
        ((step, value),) = logged["english_dev/accuracy"]
        assert step == 6 and value == pytest.approx(record["dev_metrics"]["accuracy"], rel=1e-6)
        hyper = yaml.safe_load(next(folder.rglob("hparams.yml")).read_text())
        assert hyper["settings/learning_rate"] == record["settings"]["learning_rate"] == 1e-3
        assert hyper["study"] == "tracked study" and hyper["seed"] == 0

    target = scalars(folders[1])
    for split in ("dev", "test"):
        for language in ("en", "x-lex"):
            evaluation = json.loads((stage_dir / "evaluations" / f"{split}-{language}.json").read_text())
            (logged,) = target[f"{split}/{language}/accuracy"]
            assert logged[1] == pytest.approx(evaluation["metrics"]["accuracy"], rel=1e-6)
    assert len(list((run / "trackers").glob("target-*"))) == 1, "dev and test of one fine-tune: one tracker run"


def test_tracker_config_errors(tmp_path, tiny_encoder_dir, demo_tasks, monkeypatch):
    path = write_config(tmp_path, tiny_encoder_dir, demo_tasks, trackers=["tensorboard", "neptune"])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "trackers[1]: Input should be 'tensorboard', 'wandb' or 'mlflow' (got 'neptune')" in str(caught.value)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name))
    path = write_config(tmp_path, tiny_encoder_dir, demo_tasks, trackers=["wandb"])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "trackers: the wandb tracker needs the wandb package: pip install 'xstilts[wandb]'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides=["trackers=[tensorboard, tensorboard]"])
    assert "override trackers=[tensorboard, tensorboard]: trackers[1]: 'tensorboard' appears twice" in str(caught.value)


def test_settings_flatten_to_plain_values_and_logging_without_trackers_is_a_no_op():
    nested = {"settings": {"learning_rate": 1e-5, "patience": None, "languages": ["en", "de"]}, "k": 2, "ok": True}
    assert flatten(nested) == {
        "settings/learning_rate": 1e-5,
        "settings/patience": "null",
        "settings/languages": '["en", "de"]',
        "k": 2,
        "ok": True,
    }
    log_metrics({"train/loss": 1.0}, step=1)  # no stage is tracked: nothing happens, nothing fails
