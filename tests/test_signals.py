"""Signals a scheduler or a person sends: SIGTERM (preemption, `kill`) and Ctrl-C during a stage end the run with
the shell's status, a line that says how to go on, the run lock released, and nothing written left half done; the
run then resumes and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, encoder: Path, demo_tasks: dict) -> Path:
    raw = {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": [{"task": "demo_paraphrase", "training": {"max_steps": 400, "eval_every_steps": 100}}],
        "targets": [{"task": "demo_nli", "languages": ["en"]}],
        "training": {"max_steps": 4, "batch_size": 8, "eval_every_steps": 4, "eval_examples": 8, "max_length": 64},
        "checkpoint_every_steps": 20,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("sent", "status", "said"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")],
)
def test_a_signal_mid_stage_ends_cleanly_and_the_run_resumes(
    sent, status, said, tmp_path, tiny_encoder_dir, demo_tasks
):
    config = _config(tmp_path, tiny_encoder_dir, demo_tasks)
    command = [sys.executable, "-m", "xstilts", "run", "--no-progress", "-q", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "run" / "stages" / ".checkpoints"
    deadline = time.time() + 300
    while not any(checkpoints.glob("*/progress.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, sent)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert said in err and "resumes from its last completed stage and mid-stage checkpoint" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / ".xstilts.lock").exists(), "the run lock is released"
    assert not list((tmp_path / "run" / "stages").glob(".partial-*")), "no half-built stage is left"
    progress = json.loads(next(checkpoints.glob("*/progress.json")).read_text())
    assert progress["step"] >= 20, "the last checkpoint is intact"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "taking over the lock" not in again.stderr, "no stale lock to take over: it was released"
    assert list((tmp_path / "run" / "results").rglob("test-en.json")), "the resumed run finishes"
