"""A merged encoder is a stage: built from a study's single-task stages, stored with its record and sha256, found
again instead of rebuilt, loadable by AutoModel, and refused when a member is damaged, pruned or not full."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fast_training import FAST
from safetensors.torch import load_file

import xstilts
from xstilts.config import parse_config
from xstilts.errors import RunError, XstiltsError
from xstilts.rundir.stage_directory import StageDirectory, inspect_stage_dir
from xstilts.rundir.store import StageStore
from xstilts.study.merge import build_merged_stage
from xstilts.study.plan import encoder_identity
from xstilts.train.merging import merge_states
from xstilts.train.modeling import load_encoder
from xstilts.train.request import MergeRequest, MergeSettings


def _single_task_study(root: Path, tiny_encoder_dir, demo_tasks, modes=("full",)) -> Path:
    """A study of two orders of length 1 in each chain mode: the single-task stages a merge is built from."""
    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(root / "run"),
        "tasks": demo_tasks,
        "study": {
            "pool": ["demo_paraphrase", "demo_swag"],
            "orders": {"explicit": [["demo_paraphrase"], ["demo_swag"]]},
            "seeds": [0],
            "baseline_runs": 1,
        },
        "targets": [{"task": "demo_nli", "languages": ["en"]}],
        "training": FAST,
        "chain_modes": list(modes),
    }
    xstilts.run(parse_config(raw), progress=False)
    return root / "run" / "stages"


def _members(stages: Path, mode: str) -> list[tuple[str, str]]:
    members = []
    for record_file in sorted(stages.glob("*/stage.json")):
        record = json.loads(record_file.read_text())
        if record["role"] == "intermediate" and record.get("mode", "full") == mode:
            members.append((record["identity"], record["task"]))
    assert sorted(task for _, task in members) == ["demo_paraphrase", "demo_swag"]
    return members


@pytest.fixture(scope="module")
def single_task_stages(tmp_path_factory, tiny_encoder_dir, demo_tasks) -> tuple[Path, list[tuple[str, str]]]:
    stages = _single_task_study(tmp_path_factory.mktemp("merge"), tiny_encoder_dir, demo_tasks)
    return stages, _members(stages, "full")


def _request(tiny_encoder_dir, members, **settings) -> MergeRequest:
    return MergeRequest(
        str(tiny_encoder_dir), encoder_identity(str(tiny_encoder_dir)), tuple(members), MergeSettings(**settings)
    )


def test_a_merge_is_a_stage_with_the_merged_weights(single_task_stages, tiny_encoder_dir):
    from transformers import AutoModel

    stages, members = single_task_stages
    store = StageStore(stages)
    request = _request(tiny_encoder_dir, members, method="ties", weight=1.0, density=0.5)
    built, fresh = build_merged_stage(store, request)
    assert fresh
    state = inspect_stage_dir(built, full=True, identity=request.identity)
    assert state.status == "done" and state.record["role"] == "merge"
    assert state.record["chain"] == [task for _, task in members] and state.record["merge"]["density"] == 0.5
    base = load_encoder(tiny_encoder_dir).state_dict()
    tuned = [
        load_file(str(StageDirectory(store.stage_dir(i, t)).encoder_dir / "model.safetensors")) for i, t in members
    ]
    expected = merge_states(base, tuned, request.settings)
    loaded = AutoModel.from_pretrained(StageDirectory(built).encoder_dir).state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, msg=key)
    assert any(not torch.equal(loaded[k], base[k]) for k in base if base[k].is_floating_point()), "it changed"

    before = (built / "stage.json").stat().st_mtime_ns
    assert build_merged_stage(store, request) == (built, False) and (built / "stage.json").stat().st_mtime_ns == before
    other = _request(tiny_encoder_dir, members, method="task_arithmetic", weight=0.5)
    assert other.identity != request.identity and build_merged_stage(store, other)[0] != built


def test_a_merge_refuses_a_damaged_or_pruned_member(single_task_stages, tiny_encoder_dir, tmp_path):
    stages, members = single_task_stages
    copy = tmp_path / "stages"
    shutil.copytree(stages, copy, symlinks=True)
    store = StageStore(copy)
    identity, task = members[0]
    weights = StageDirectory(store.stage_dir(identity, task)).encoder_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other content: only the sha256 sees it
    weights.write_bytes(bytes(data))
    request = _request(tiny_encoder_dir, members, method="dare_linear", density=0.5)
    with pytest.raises(RunError, match=f"the stage {identity}-{task} is not usable"):
        build_merged_stage(store, request)
    assert not store.stage_dir(request.identity, request.name).exists(), "nothing is committed"
    store.prune(*members[1])
    with pytest.raises(RunError, match="weights were pruned"):
        build_merged_stage(store, _request(tiny_encoder_dir, members[1:], method="task_arithmetic"))


def test_lora_stages_merge_their_deltas_and_stacked_ones_are_refused(tmp_path, tiny_encoder_dir, demo_tasks):
    """A lora-merged stage's task vector is its LoRA's delta (the base with the LoRA merged in, minus the base);
    a lora-stacked stage keeps its LoRA a separate module: no delta to merge, refused by name."""
    from xstilts.train.adapters import build_encoder
    from xstilts.train.request import EncoderRecipe

    stages = _single_task_study(tmp_path, tiny_encoder_dir, demo_tasks, ("lora-merged", "lora-stacked"))
    store = StageStore(stages)
    members = _members(stages, "lora-merged")
    request = _request(tiny_encoder_dir, members, method="dare_ties", density=0.5, seed=2)
    built, _ = build_merged_stage(store, request)
    base = load_encoder(tiny_encoder_dir).state_dict()
    tuned = [
        build_encoder(EncoderRecipe.from_json(store.record(i, t)["encoder_recipe"], stages)).state_dict()
        for i, t in members
    ]
    expected = merge_states(base, tuned, request.settings)
    merged = load_encoder(StageDirectory(built).encoder_dir).state_dict()
    changed = [k for k in base if base[k].is_floating_point() and not torch.equal(tuned[0][k], base[k])]
    assert changed and all("query" in k or "key" in k or "value" in k or "dense" in k for k in changed), "LoRA's layers"
    for key in base:
        torch.testing.assert_close(merged[key], expected[key], msg=key)
    stacked = _members(stages, "lora-stacked")
    with pytest.raises(XstiltsError, match="lora-stacked chains\\) has no weight delta to merge"):
        build_merged_stage(store, _request(tiny_encoder_dir, stacked, method="task_arithmetic"))


def test_xstilts_merge_builds_from_a_run_and_names_what_is_missing(single_task_stages, capsys, tmp_path, demo_tasks):
    from transformers import AutoModel

    from xstilts.cli import main

    stages, _ = single_task_stages
    run = tmp_path / "run"
    shutil.copytree(stages.parent, run, symlinks=True)
    args = ["merge", str(run), "--tasks", "demo_paraphrase,demo_swag", "--method", "ties", "--density", "0.3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("merged demo_paraphrase+demo_swag (ties): ") and printed.strip().endswith("/encoder")
    encoder = Path(printed.strip().split(": ", 1)[1])
    assert encoder.is_relative_to(run / "stages") and AutoModel.from_pretrained(encoder) is not None
    # ... then train C on the merge: the merged encoder is the encoder of an ordinary config
    on_top = {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "on-top"),
        "tasks": {"demo_nli": demo_tasks["demo_nli"]},
        "chain": [],
        "targets": [{"task": "demo_nli", "languages": ["en"]}],
        "training": FAST,
    }
    summary = xstilts.run(parse_config(on_top), progress=False)
    assert summary["chains"]["k0-pretrained"]["targets"]["demo_nli"]["scores"]
    assert main(args) == 0 and capsys.readouterr().out.startswith("already merged demo_paraphrase+demo_swag")
    assert main(["merge", str(run), "--tasks", "demo_paraphrase,demo_pos"]) == 2
    err = capsys.readouterr().err
    assert "no single-task stage of demo_pos under seed 0 in full chains" in err
    assert "(single-task stages there: demo_paraphrase, demo_swag)" in err
    assert main(["merge", str(run), "--tasks", "demo_paraphrase", "--method", "ties"]) == 2
    assert "density must be in (0, 1]" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "nowhere"), "--tasks", "demo_paraphrase"]) == 2
    assert "no such directory" in capsys.readouterr().err
