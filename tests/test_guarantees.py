"""What a run guarantees when things go wrong: no path outside the run directory, one owner at a time,
no stage kept from a diverged training, damaged stages found and retrained identically, a full disk
that fails cleanly and resumes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fast_training import FAST

import xstilts
from xstilts.cli import main
from xstilts.errors import RunError, XstiltsError
from xstilts.rundir.layout import remove_inside
from xstilts.rundir.lock import LOCK_FILE, _process_start, run_lock
from xstilts.rundir.stage_directory import sha256_of
from xstilts.rundir.store import StageStore


def chain_config(directory: Path, encoder: Path, demo_tasks: dict, **extra) -> Path:
    """A tiny chain (two intermediate stages, one target, every prefix) written to `directory/config.yaml`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "guarantees",
        "encoder": str(encoder),
        "output_dir": str(directory / "run"),
        "seed": 1,
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_squad2", "demo_nli")},
        "chain": ["demo_paraphrase", "demo_squad2"],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": FAST,
        "evaluate_every_prefix": True,
        **extra,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def results_of(run_dir: Path) -> dict:
    return {
        p.relative_to(run_dir).as_posix(): json.loads(p.read_text())
        for p in sorted((run_dir / "results").rglob("*.json"))
    }


def stage_dir_of(run_dir: Path, task: str, role: str = "intermediate") -> Path:
    found = [
        p.parent for p in (run_dir / "stages").glob(f"*-{task}/stage.json") if json.loads(p.read_text())["role"] == role
    ]
    assert len(found) == 1, found
    return found[0]


def planted(root: Path) -> Path:
    victim = root / "victim"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "important.txt").write_text("keep me\n", encoding="utf-8")
    return victim


# --- paths never leave the run directory -------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../victim", "../victim", "/tmp/victim", "a/b", "..", ".", "-rf", "x.y", ""])
def test_the_store_refuses_names_that_are_not_identifiers(tmp_path, name):
    victim = planted(tmp_path)
    store = StageStore(tmp_path / "run" / "stages")
    for action in (
        lambda: store.stage_dir("0123abcd", name),
        lambda: store.begin("0123abcd", name),
        lambda: store.discard("0123abcd", name),
        lambda: store.prune("0123abcd", name),
        lambda: store.checkpoint_dir("0123abcd", name),
        lambda: store.stage_dir(name, "task"),
    ):
        with pytest.raises(XstiltsError, match="invalid name"):
            action()
    assert (victim / "important.txt").read_text() == "keep me\n"


def test_deletion_is_confined_to_the_run_directory(tmp_path):
    victim = planted(tmp_path)
    root = tmp_path / "run" / "stages"
    root.mkdir(parents=True)
    for outside in (tmp_path / "victim", root / ".." / ".." / "victim", root, root / ".."):
        with pytest.raises(XstiltsError, match="not inside the run directory"):
            remove_inside(root, outside)
    # A stage directory that is a link to somewhere else is removed as a link; what it points to stays.
    (root / "0123abcd-task").symlink_to(victim, target_is_directory=True)
    StageStore(root).discard("0123abcd", "task")
    assert not (root / "0123abcd-task").exists() and (victim / "important.txt").read_text() == "keep me\n"
    # Through a linked parent directory the target lies outside: refused.
    (root / "linked").symlink_to(victim, target_is_directory=True)
    with pytest.raises(XstiltsError, match="not inside"):
        remove_inside(root, root / "linked" / "important.txt")
    assert (victim / "important.txt").is_file()


def test_a_checkpointer_cannot_delete_outside_its_store(tmp_path):
    from xstilts.train.loop import Checkpointer

    victim = planted(tmp_path)
    checkpointer = Checkpointer(victim, 1, tmp_path / "run" / "stages")
    with pytest.raises(XstiltsError, match="not inside"):
        checkpointer.remove()
    assert (victim / "important.txt").is_file()


def test_names_are_checked_by_the_registry_too(tmp_path):
    from xstilts.tasks.registry import LocalFiles, TaskSpec

    for name, languages in (("../victim", ("en",)), ("nli.v2", ("en",)), ("ok", ("en", "../de"))):
        with pytest.raises(XstiltsError, match="invalid name"):
            TaskSpec(
                name=name, kind="classification", languages=languages, data=LocalFiles(tmp_path), labels=("a", "b")
            )


def test_a_forged_task_name_cannot_reach_the_disk(tmp_path, tiny_encoder_dir, demo_registry):
    """With the config and the registry bypassed (a spec changed after validation), the store still refuses."""
    from xstilts.study.plan import ChainPrefix, stage_request
    from xstilts.study.stage import run_stage
    from xstilts.train.adapters import EncoderRecipe

    victim = planted(tmp_path)
    spec = demo_registry.get("demo_paraphrase")
    object.__setattr__(spec, "name", "../../../victim")
    try:
        request = stage_request(
            "intermediate",
            spec,
            [FAST],
            0,
            ChainPrefix(0, (), "base", None, recipe=EncoderRecipe(str(tiny_encoder_dir))),
        )
        with pytest.raises(XstiltsError, match="invalid name"):
            run_stage(request, StageStore(tmp_path / "run" / "stages"), progress=False)
    finally:
        object.__setattr__(spec, "name", "demo_paraphrase")
    assert sorted(p.name for p in victim.iterdir()) == ["important.txt"]


# --- the run lock ----------------------------------------------------------------------------------------


def _lock(run_dir: Path, **owner) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(
        json.dumps({"host": socket.gethostname(), "started": "earlier", "command": "xstilts run other.yaml", **owner})
    )


def test_a_second_run_fails_naming_the_owner_and_writes_nothing(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    path = chain_config(tmp_path, tiny_encoder_dir, demo_tasks)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path / "run", pid=owner.pid, process_start=_process_start(owner.pid))
        assert main(["run", "--no-progress", "-q", str(path)]) == 1
        err = capsys.readouterr().err
        assert (
            f"is in use by another xstilts run (pid {owner.pid} on {socket.gethostname()}" in err
            and "xstilts run other.yaml" in err
        )
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_FILE], "nothing was written"
        assert (
            main(["status", str(tmp_path / "run")]) == 2
        )  # no run has written its config yet; status never waits for the lock
    finally:
        owner.kill()
        owner.wait()


def test_locks_of_other_hosts_are_respected_and_stale_ones_taken_over(tmp_path, caplog):
    _lock(tmp_path / "a", host="another-host", pid=1)
    with pytest.raises(RunError, match=r"pid 1 on another-host.*if no such run is alive any more, delete"):
        with run_lock(tmp_path / "a"):
            pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path / "b", pid=dead.pid)
    _lock(tmp_path / "c", pid=os.getpid(), process_start="1")  # our pid, but another process's start time: a reused pid
    for run_dir in (tmp_path / "b", tmp_path / "c"):
        with caplog.at_level(logging.WARNING), run_lock(run_dir):
            assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
            with run_lock(run_dir):  # re-entrant in the owning process (the Ray driver's final assembly)
                pass
            assert (run_dir / LOCK_FILE).is_file()
        assert not (run_dir / LOCK_FILE).exists(), "released on exit"
    assert caplog.text.count("taking over the lock") == 2


@pytest.mark.slow
def test_two_concurrent_runs_one_fails_clearly_the_other_finishes_correctly(tmp_path, tiny_encoder_dir, demo_tasks):
    reference = chain_config(tmp_path / "reference", tiny_encoder_dir, demo_tasks)
    shared = chain_config(
        tmp_path / "shared", tiny_encoder_dir, demo_tasks, training={**FAST, "max_steps": 60, "eval_every_steps": 30}
    )
    raw = yaml.safe_load(reference.read_text())
    raw["training"] = {**FAST, "max_steps": 60, "eval_every_steps": 30}
    reference.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "xstilts", "run", "--no-progress", "-q"]
    assert subprocess.run([*command, str(reference)], capture_output=True, timeout=600).returncode == 0
    first = subprocess.Popen([*command, str(shared)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "shared" / "run" / LOCK_FILE).is_file() and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run([*command, str(shared)], capture_output=True, text=True, timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert (
        second.returncode == 1
        and "is in use by another xstilts run" in second.stderr
        and "Traceback" not in second.stderr
    )
    assert results_of(tmp_path / "shared" / "run") == results_of(tmp_path / "reference" / "run")
    assert not (tmp_path / "shared" / "run" / LOCK_FILE).exists()


# --- diverged training ----------------------------------------------------------------------------------


def test_a_nan_loss_stops_the_stage_and_keeps_nothing_of_it(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "nan-encoder"
    shutil.copytree(tiny_encoder_dir, broken)
    weights = load_file(str(broken / "model.safetensors"))
    name = next(k for k in weights if "word_embeddings" in k)
    weights[name][:] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    path = chain_config(tmp_path, broken, demo_tasks, checkpoint_every_steps=1)
    assert main(["run", "--no-progress", "-q", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error: stage 1/5 target demo_nli: training diverged by step 1 of 2: the training loss is not finite" in err
    assert "Try a lower learning_rate (now 0.001)" in err and "precision: fp32" in err and "Traceback" not in err
    stages = tmp_path / "run" / "stages"
    assert not list(stages.glob("*/stage.json")), "no record of a diverged stage"
    assert not list(stages.glob(".checkpoints/*/progress.json")), "no checkpoint of non-finite weights"


def test_a_damaged_pretrained_encoder_or_too_long_inputs_are_named(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    damaged = tmp_path / "damaged-encoder"
    shutil.copytree(tiny_encoder_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["run", "--no-progress", "-q", str(chain_config(tmp_path / "a", damaged, demo_tasks))]) == 2
    assert f"error: {weights}: not a readable safetensors weight file" in capsys.readouterr().err, (
        "named, not its folder"
    )
    too_long = chain_config(tmp_path / "b", tiny_encoder_dir, demo_tasks, training={**FAST, "max_length": 400})
    assert main(["run", "--no-progress", "-q", str(too_long)]) == 2
    assert "training.max_length is 400, but the encoder" in capsys.readouterr().err


# --- integrity of the store --------------------------------------------------------------------------------


@pytest.mark.slow
def test_damaged_stages_are_found_and_retrained_bit_identically(tmp_path, tiny_encoder_dir, demo_tasks, caplog, capsys):
    config = xstilts.load_config(chain_config(tmp_path, tiny_encoder_dir, demo_tasks))
    run_dir = tmp_path / "run"
    xstilts.run(config, progress=False)
    results = results_of(run_dir)
    first = stage_dir_of(run_dir, "demo_paraphrase")
    weights = first / "encoder" / "model.safetensors"
    original = sha256_of(weights)

    # 1. A truncated weights file: status and report say so instead of crashing; run retrains it.
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["status", str(run_dir)]) == 0
    status = capsys.readouterr().out
    assert "damaged" in status and f"{weights} has 1000 bytes" in status
    assert main(["report", str(run_dir)]) == 0
    with caplog.at_level(logging.WARNING):
        xstilts.run(config, progress=False)
    assert f"is damaged ({weights} has 1000 bytes" in caplog.text
    assert sha256_of(weights) == original and results_of(run_dir) == results

    # 2. Same size, other bytes, in a parent whose child must be trained again: found by its sha256 before use.
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    shutil.rmtree(stage_dir_of(run_dir, "demo_squad2"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        xstilts.run(config, progress=False)
    assert "does not match the sha256 in its record" in caplog.text
    assert sha256_of(weights) == original and results_of(run_dir) == results

    # 3. A damaged record, a damaged target stage and a damaged evaluation are redone; results stay the same.
    (stage_dir_of(run_dir, "demo_squad2") / "stage.json").write_text('{"identity": "trunc', encoding="utf-8")
    target = sorted(p.parent for p in (run_dir / "stages").glob("*-demo_nli/stage.json"))[0]
    (target / "heads.safetensors").write_bytes(b"")
    evaluation = sorted((run_dir / "stages").glob("*-demo_nli/evaluations/test-x-lex.json"))[-1]
    evaluation.write_text("{not json", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summary = xstilts.run(config, progress=False)
    for damage in ("stage.json:1: damaged JSON", "heads.safetensors has 0 bytes", "x-lex.json:1: damaged JSON"):
        assert damage in caplog.text, caplog.text
    assert results_of(run_dir) == results and summary["chains"].keys() == {
        "k0-pretrained",
        "k1-demo_paraphrase",
        "k2-demo_paraphrase+demo_squad2",
    }


def test_damaged_run_files_are_skipped_by_report_and_status(tmp_path, tiny_encoder_dir, demo_tasks, caplog, capsys):
    config = xstilts.load_config(chain_config(tmp_path, tiny_encoder_dir, demo_tasks, chain=["demo_paraphrase"]))
    run_dir = tmp_path / "run"
    xstilts.run(config, progress=False)
    lost = run_dir / "results" / "k1-demo_paraphrase" / "demo_nli" / "test-x-lex.json"
    lost.write_text("{", encoding="utf-8")
    (run_dir / "summary.json").write_bytes(b"\xff\xfe")
    (run_dir / "latency.json").write_text("[1, 2", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "## Missing results (1)" in report and "| k1-demo_paraphrase | demo_nli | x-lex |" in report
    assert f"{lost}:1: damaged JSON" in caplog.text and "summary.json:1: invalid UTF-8" in caplog.text
    json.loads((run_dir / "results.json").read_text())  # still strict JSON
    stage_json = stage_dir_of(run_dir, "demo_paraphrase") / "stage.json"
    stage_json.write_text("", encoding="utf-8")
    assert main(["report", str(run_dir)]) == 0 and main(["status", str(run_dir)]) == 0
    assert "damaged" in capsys.readouterr().out
    (run_dir / "plan.json").write_text("null", encoding="utf-8")
    assert main(["report", str(run_dir)]) == 0, "the report lists what it found without the plan"
    assert main(["status", str(run_dir)]) == 2 and "plan.json is damaged" in capsys.readouterr().err


def test_every_json_written_is_strict(tmp_path):
    from xstilts.files import json_text, write_json_atomic

    write_json_atomic(tmp_path / "a.json", {"threshold": float("nan"), "scores": [1.0, float("inf"), -float("inf")]})
    assert json.loads(
        (tmp_path / "a.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")
    ) == {"threshold": None, "scores": [1.0, None, None]}
    assert "NaN" not in json_text({"x": float("nan")}) and not list(tmp_path.glob(".*tmp*"))


# --- full disks and unwritable directories ---------------------------------------------------------------


def test_an_unwritable_output_directory_is_a_config_error(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: a read-only file system stops it
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True
        ).returncode:
            pytest.skip("running as root without permission to mount a read-only tmpfs")
    else:
        read_only.chmod(0o555)
    try:
        path = chain_config(tmp_path, tiny_encoder_dir, demo_tasks)
        raw = yaml.safe_load(path.read_text())
        raw["output_dir"] = str(read_only / "run")
        path.write_text(yaml.safe_dump(raw))
        assert main(["run", "--no-progress", "-q", str(path)]) == 2
        assert f"output_dir: cannot write to {read_only}" in capsys.readouterr().err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "--lazy", str(read_only)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_fails_cleanly_and_the_run_resumes_when_space_is_freed(
    tmp_path, tiny_encoder_dir, demo_tasks, capsys
):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    reference = chain_config(tmp_path / "reference", tiny_encoder_dir, demo_tasks, checkpoint_every_steps=1)
    assert main(["run", "--no-progress", "-q", str(reference)]) == 0
    needed = sum(p.stat().st_size for p in (tmp_path / "reference" / "run").rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("no permission to mount a tmpfs")
    try:
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * (free - needed // 2))
        path = chain_config(disk / "study", tiny_encoder_dir, demo_tasks, checkpoint_every_steps=1)
        assert main(["run", "--no-progress", "-q", str(path)]) == 1
        err = capsys.readouterr().err
        assert (
            "No space left on device" in err
            and str(disk) in err
            and "the run resumes" in err
            and "Traceback" not in err
        )
        run_dir = disk / "study" / "run"
        store = StageStore(run_dir / "stages")
        for record in (run_dir / "stages").glob("*/stage.json"):
            identity, task = record.parent.name.split("-", 1)
            assert store.inspect(identity, task, full=True).status == "done", "every finished stage is intact"
        assert not list(run_dir.rglob(".*.tmp-*")), "no half-written files under final names or left aside"
        filler.unlink()
        assert main(["run", "--no-progress", "-q", str(path)]) == 0
        assert results_of(run_dir) == results_of(tmp_path / "reference" / "run")
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)  # lazy: weights may still be memory-mapped


def test_errors_keep_their_message_through_pickling():
    """Errors raised in Ray workers travel back to the driver pickled; they must print the same there."""
    import pickle

    from xstilts.errors import ConfigError, DataError, DataWarning

    for error in (
        DataError("a.tsv", "bad row", 3),
        DataWarning("b.tsv", "odd row"),
        ConfigError(["x.yaml:1: seed: bad", "x.yaml:2: name: bad"]),
        RunError("diverged"),
    ):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
    assert pickle.loads(pickle.dumps(ConfigError(["p1", "p2"]))).problems == ["p1", "p2"]
