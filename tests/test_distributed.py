"""Data parallel within a stage: two CPU processes (gloo, launched by torchrun) train like one process
with the same global batch, evaluate without duplicates, and only one of them writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

TRAINING = {
    "max_steps": 6,
    "batch_size": 8,
    "micro_batch_size": 4,
    "eval_every_steps": 3,
    "eval_examples": 12,
    "log_every_steps": 1,
    "learning_rate": 1e-3,
    "max_length": 64,
}


@pytest.fixture(scope="module")
def dropout_free_encoder(tmp_path_factory, tiny_encoder_dir) -> Path:
    """The tiny encoder without dropout, so one and two processes can agree to rounding."""
    from transformers import XLMRobertaModel

    directory = tmp_path_factory.mktemp("no-dropout")
    model = XLMRobertaModel.from_pretrained(
        tiny_encoder_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, add_pooling_layer=False
    )
    model.save_pretrained(directory)
    for name in os.listdir(tiny_encoder_dir):
        if "token" in name or name.endswith(".model"):
            (directory / name).write_bytes((tiny_encoder_dir / name).read_bytes())
    return directory


def _config(tmp_path: Path, name: str, encoder: Path, demo_tasks: dict) -> Path:
    config = {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / name),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": ["demo_paraphrase"],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": TRAINING,
        "checkpoint_every_steps": 2,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _records(run_dir: Path) -> dict[str, dict]:
    return {
        json.loads(p.read_text())["role"]: json.loads(p.read_text()) for p in (run_dir / "stages").glob("*/stage.json")
    }


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, dropout_free_encoder, demo_tasks):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "xstilts",
            "run",
            "--no-progress",
            "-q",
            str(_config(tmp_path, "one", dropout_free_encoder, demo_tasks)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "--master_addr=127.0.0.1",
        "-m",
        "xstilts",
        "run",
        "--no-progress",
        "-q",
        str(_config(tmp_path, "two", dropout_free_encoder, demo_tasks)),
    ]
    double = subprocess.run(launch, capture_output=True, text=True, timeout=600, env=env)
    assert double.returncode == 0, double.stderr[-3000:]

    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    for role in ("intermediate", "target"):
        losses_one = [h["loss"] for h in one[role]["history"] if "loss" in h]
        losses_two = [h["loss"] for h in two[role]["history"] if "loss" in h]
        assert len(losses_one) == len(losses_two) == 6
        assert max(abs(a - b) for a, b in zip(losses_one, losses_two)) < 1e-4, (losses_one, losses_two)
        assert one[role]["dev_metrics"] == pytest.approx(two[role]["dev_metrics"], abs=1e-6), (
            "sharded, gathered evaluation scores the same"
        )
        assert two[role]["train_tokens"] == one[role]["train_tokens"], (
            "each example trained once across the two processes"
        )
    for language in ("en", "x-lex"):
        a = json.loads(next((tmp_path / "one" / "results").rglob(f"k1-*/demo_nli/test-{language}.json")).read_text())
        b = json.loads(next((tmp_path / "two" / "results").rglob(f"k1-*/demo_nli/test-{language}.json")).read_text())
        assert a["examples"] == b["examples"] == 12 and a["metrics"] == pytest.approx(b["metrics"], abs=1e-6)
    assert double.stdout.count("\nwritten:\n") == 1, "one process reports"
    assert not list((tmp_path / "two" / "stages").glob(".partial-*")) and not list(
        (tmp_path / "two" / "stages").glob("*.tmp*")
    )
