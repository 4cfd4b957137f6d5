"""Merged encoders as stages: one encoder built from a study's single-task stages, with no training.

A study already trains every pool task alone from the pretrained encoder (its k = 1 prefixes). A merge of any
set of them (`xstilts.train.merging`: task arithmetic, TIES, DARE) is then a stage like any other: it has an
identity (a hash of the base, the members' identities and the merge settings), a directory in the stage store
with its record and the sha256 of its files, it is built once (a second request finds it), and targets are
fine-tuned on its encoder as on any intermediate stage's. Its members must be intact stages of the full or the
lora-merged chain mode (a LoRA's task vector is its delta, merged into the base exactly; stacked adapters have
none): their weights are checked by sha256 before they are read.

A full-mode member is read one tensor at a time from its weight file, so the memory of a merge of full stages is
one model (the base) plus a tensor per member, whatever k is; a lora-merged member's encoder is rebuilt whole.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_NAME

from xstilts.chain_modes import FULL, chain_mode
from xstilts.errors import RunError, XstiltsError
from xstilts.files import writing
from xstilts.rundir.layout import PLAN_FILE
from xstilts.rundir.records import complete_stage_record
from xstilts.rundir.runs import RunDirectory
from xstilts.rundir.stage_directory import StageDirectory, inspect_stage_dir
from xstilts.rundir.store import StageStore
from xstilts.study.plan import encoder_identity
from xstilts.train.adapters import build_encoder
from xstilts.train.merging import merge_states
from xstilts.train.modeling import MultiTaskModel, load_encoder, load_tokenizer, save_encoder
from xstilts.train.request import EncoderRecipe, MergeRequest, MergeSettings

MERGE_ROLE = "merge"


def merge_in_run(
    run_dir: str | Path, tasks: list[str], settings: MergeSettings, seed: int = 0, mode: str = FULL
) -> tuple[Path, bool]:
    """Merge the single-task stages of `tasks` (trained under `seed` in chain mode `mode`) of a run into a merged
    stage of its store; returns the stage directory and whether it was built now (False: found intact)."""
    run = RunDirectory(run_dir)
    run.check_contained()
    plan = run.read_plan()
    if plan is None:
        raise XstiltsError(f"{run.root}: no {PLAN_FILE}; is this a run directory?")
    if len(set(tasks)) != len(tasks):
        raise XstiltsError(f"merge: each task once, got {', '.join(tasks)}")
    singles = {s.chain[0]: s for s in plan.stages if len(s.chain) == 1 and s.seed == seed and s.mode == mode}
    unknown = [task for task in tasks if task not in singles]
    if unknown:
        known = ", ".join(sorted(singles)) or "none"
        raise XstiltsError(
            f"{run.root}: no single-task stage of {', '.join(unknown)} under seed {seed} in {mode} chains "
            f"(single-task stages there: {known})"
        )
    members = tuple((singles[task].identity, task) for task in tasks)
    request = MergeRequest(plan.encoder, encoder_identity(plan.encoder), members, settings)
    return build_merged_stage(run.store, request)


def build_merged_stage(store: StageStore, request: MergeRequest) -> tuple[Path, bool]:
    """The merged stage's directory, and whether it was built now (False: found intact in the store)."""
    if not request.members:
        raise XstiltsError("a merge needs at least one stage")
    if store.record(request.identity, request.name) is not None:
        return store.stage_dir(request.identity, request.name), False
    started = time.perf_counter()
    with contextlib.ExitStack() as files:
        members = [_member_state(store, identity, task, files) for identity, task in request.members]
        encoder = load_encoder(request.base)
        encoder.load_state_dict(merge_states(encoder.state_dict(), members, request.settings))
    scratch = store.begin(request.identity, request.name)
    building = StageDirectory(scratch)
    with writing(scratch):
        save_encoder(MultiTaskModel(encoder, {}), load_tokenizer(request.base), building.encoder_dir, request.base)
    final = store.stage_dir(request.identity, request.name)
    record: dict[str, Any] = {
        "identity": request.identity,
        "role": MERGE_ROLE,
        "task": request.name,
        "kind": MERGE_ROLE,
        "chain": request.tasks,
        "parent": request.base,
        "parent_identity": request.base_identity,
        "seed": request.settings.seed,
        "mode": FULL,
        "settings": asdict(request.settings),
        "merge": {**asdict(request.settings), "members": [{"identity": i, "task": t} for i, t in request.members]},
        "steps": 0,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "encoder_recipe": EncoderRecipe(str(StageDirectory(final).encoder_dir)).to_json(store.root),
    }
    return store.commit(scratch, request.identity, request.name, record), True


def _member_state(
    store: StageStore, identity: str, task: str, files: contextlib.ExitStack
) -> Mapping[str, torch.Tensor]:
    """A member's encoder weights, after checking the whole stage by sha256: a full-mode stage's weight file, read
    one tensor at a time, or a lora-merged stage's encoder rebuilt (the base with its LoRA merged in, so its
    task vector is the LoRA's delta, exactly)."""
    directory = store.stage_dir(identity, task)
    state = inspect_stage_dir(directory, full=True, identity=identity)
    if state.status != "done":
        problem = state.problem or {"pruned": "its weights were pruned", "missing": "it was never trained"}.get(
            state.status, state.status
        )
        raise RunError(f"merge: the stage {directory.name} is not usable ({problem}); run the study again to train it")
    mode = chain_mode(complete_stage_record(state.record)["mode"])
    weights = StageDirectory(directory).encoder_dir / SAFE_WEIGHTS_NAME
    if not mode.trains_adapters:
        if not weights.is_file():
            raise XstiltsError(f"merge: the stage {directory.name} has no single weight file {weights.name} to read")
        return _WeightFile(files.enter_context(safe_open(str(weights), framework="pt")))
    if not mode.stacked:
        recipe = EncoderRecipe.from_json(state.record["encoder_recipe"], store.root)
        return build_encoder(recipe).state_dict()
    raise XstiltsError(
        f"merge: the stage {directory.name} ({mode.name} chains) has no weight delta to merge: stacked adapters stay "
        "separate modules; merge stages of the full or lora-merged chain modes"
    )


class _WeightFile(Mapping[str, torch.Tensor]):
    """A safetensors file as a read-only mapping that loads each tensor when it is asked for."""

    def __init__(self, handle: Any):
        self.handle = handle
        self.names = set(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.names:
            raise KeyError(key)
        return self.handle.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)
