"""The study graph on a real local Ray cluster (2 CPUs) started by the test, with a worker killed mid-stage:
same results as the local executor, and the stage resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="the Ray executor is an optional extra: pip install 'xstilts[ray]'")
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))  # the CLI installed beside this interpreter
# A throwaway local test cluster: no usage statistics, no token authentication (Ray 2.5x turns it on
# for `ray start`; a driver then needs the token file), one torch thread per process.
RAY_ENV = {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
FAST = {
    "max_steps": 3,
    "batch_size": 8,
    "eval_every_steps": 3,
    "eval_examples": 8,
    "learning_rate": 1e-3,
    "max_length": 64,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(tmp_path: Path, name: str, encoder: Path, demo_tasks: dict) -> Path:
    tasks = {k: {**demo_tasks[k], "training": FAST} for k in ("demo_paraphrase", "demo_pos", "demo_swag", "demo_nli")}
    tasks["demo_paraphrase"]["training"] = {
        **FAST,
        "max_steps": 300,
        "eval_every_steps": 150,
    }  # long enough to be killed inside
    config = {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / name),
        "tasks": tasks,
        "checkpoint_every_steps": 10,
        "study": {
            "pool": ["demo_paraphrase", "demo_pos", "demo_swag"],
            "orders": {"explicit": [["demo_paraphrase", "demo_pos"], ["demo_paraphrase", "demo_swag"]]},
            "baseline_runs": 1,
            # a merge per chain's task set: built by a Ray task after its single-task stages (two added for it)
            "combine": {"methods": ["task_arithmetic"], "weights": [1.0], "mixture": False},
        },
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _results(run_dir: Path) -> dict:
    return {
        str(p.relative_to(run_dir)): json.loads(p.read_text())["metrics"]
        for p in sorted((run_dir / "results").rglob("*.json"))
    }


def _stage_workers() -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "ray::_train_stage" in line]


@pytest.fixture()
def ray_cluster(tmp_path):
    port = _free_port()
    env = {**os.environ, **RAY_ENV}
    start = subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--num-cpus=2",
            f"--port={port}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert start.returncode == 0, start.stderr[-2000:]
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_ray_executor_with_a_killed_worker_matches_the_local_executor(
    tmp_path, tiny_encoder_dir, demo_tasks, ray_cluster
):
    env = {**os.environ, **RAY_ENV, "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "xstilts", "run", "--no-progress", "-q"]
    local = subprocess.run(
        [*command, str(_config(tmp_path, "local", tiny_encoder_dir, demo_tasks))],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert local.returncode == 0, local.stderr[-3000:]

    run = subprocess.Popen(
        [
            *command,
            "--executor",
            "ray",
            "--address",
            ray_cluster,
            str(_config(tmp_path, "ray", tiny_encoder_dir, demo_tasks)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    checkpoints = tmp_path / "ray" / "stages" / ".checkpoints"
    deadline = time.time() + 300
    while (
        not any(checkpoints.glob("*-demo_paraphrase/progress.json")) and time.time() < deadline and run.poll() is None
    ):
        time.sleep(0.05)
    workers = _stage_workers()
    assert workers, ("a stage task is running on a Ray worker", run.poll() is None or run.communicate()[1][-3000:])
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]

    assert _results(tmp_path / "ray") == _results(tmp_path / "local") and _results(tmp_path / "local")
    stages = [json.loads(p.read_text()) for p in (tmp_path / "ray" / "stages").glob("*/stage.json")]
    assert sorted(s["role"] for s in stages) == ["intermediate"] * 5 + ["merge"] * 2 + ["target"] * 6, (
        "each stage once, nothing duplicated"
    )
    assert not list((tmp_path / "ray" / "stages").glob(".partial-*")) and not any(checkpoints.iterdir())

    status = subprocess.run(
        [sys.executable, "-m", "xstilts", "status", str(tmp_path / "ray")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert status.returncode == 0, status.stderr
    assert (
        "intermediate stages: 5 done, 0 pruned, 0 in progress, 0 waiting" in status.stdout
        and "merges: 2 built of 2" in status.stdout
        and "results: 24 of 24" in status.stdout  # 4 prefixes and 2 merges x 2 languages x dev and test
    )
