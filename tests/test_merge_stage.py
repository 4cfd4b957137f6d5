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
from xstilts.errors import RunError
from xstilts.rundir.stage_directory import StageDirectory, inspect_stage_dir
from xstilts.rundir.store import StageStore
from xstilts.study.merge import MergeRequest, build_merged_stage
from xstilts.study.plan import encoder_identity
from xstilts.train.merging import MergeSettings, merge_states
from xstilts.train.modeling import load_encoder


@pytest.fixture(scope="module")
def single_task_stages(tmp_path_factory, tiny_encoder_dir, demo_tasks) -> tuple[Path, list[tuple[str, str]]]:
    """A study of two orders of length 1: the two single-task stages a merge is built from."""
    root = tmp_path_factory.mktemp("merge")
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
    }
    xstilts.run(parse_config(raw), progress=False)
    stages = root / "run" / "stages"
    members = []
    for record_file in sorted(stages.glob("*/stage.json")):
        record = json.loads(record_file.read_text())
        if record["role"] == "intermediate":
            members.append((record["identity"], record["task"]))
    assert sorted(task for _, task in members) == ["demo_paraphrase", "demo_swag"]
    return stages, members


def _request(tiny_encoder_dir, members, **settings) -> MergeRequest:
    return MergeRequest(
        str(tiny_encoder_dir), encoder_identity(str(tiny_encoder_dir)), tuple(members), MergeSettings(**settings)
    )


def test_a_merge_is_a_stage_with_the_merged_weights(single_task_stages, tiny_encoder_dir):
    from transformers import AutoModel

    stages, members = single_task_stages
    store = StageStore(stages)
    request = _request(tiny_encoder_dir, members, method="ties", weight=1.0, density=0.5)
    built = build_merged_stage(store, request)
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
    assert build_merged_stage(store, request) == built and (built / "stage.json").stat().st_mtime_ns == before
    other = _request(tiny_encoder_dir, members, method="task_arithmetic", weight=0.5)
    assert other.identity != request.identity and build_merged_stage(store, other) != built


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
