"""The study's graph on a Ray cluster: `xstilts run CONFIG --executor ray [--address ADDR]`.

Every stage of the plan and every target fine-tune (with its evaluations) becomes a Ray task with its
CPU/GPU request; a task takes its parent's task as an argument, so Ray starts it only when the parent
is done, and independent branches run in parallel. All tasks write into the run's stage store, which
must be a directory every node can see (local disk for one machine, a shared file system otherwise).

Nothing is lost or written twice when a worker dies: a stage is written aside and renamed into place,
its completion record last, and a retried task finds the stage done (and skips it) or resumes it from
its last mid-stage checkpoint. When every task has finished, the local executor assembles results,
summary and report from the store (it finds everything done and trains nothing).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from xstilts.config import ExperimentConfig
from xstilts.errors import XstiltsError
from xstilts.logs import run_log
from xstilts.tracking import stage_tracking

log = logging.getLogger(__name__)


def _train_stage(
    request: Any,
    store_root: str,
    checkpoint_every_steps: int | None,
    threads: int,
    tracking: tuple[list[str], str],
    *parents: Any,
) -> str:
    """Ray task: one stage of the plan (its parents are passed only so that Ray orders the tasks).
    `tracking` is (the config's trackers, the study's name)."""
    import torch

    from xstilts.rundir.store import StageStore
    from xstilts.study.stage import run_stage

    torch.set_num_threads(threads)
    run_root = Path(store_root).parent
    # the worker's lines join the driver's in RUN_DIR/run.log; its stage gets its own tracker runs
    with run_log(run_root), stage_tracking(tracking[0], run_root, tracking[1], request):
        run_stage(request, StageStore(Path(store_root)), progress=False, checkpoint_every_steps=checkpoint_every_steps)
    return request.identity


def _build_merge(request: Any, store_root: str, threads: int, *members: Any) -> str:
    """Ray task: one merged encoder of the combination study (its members are passed so Ray builds it after them)."""
    import torch

    from xstilts.rundir.store import StageStore
    from xstilts.study.merge import build_merged_stage

    torch.set_num_threads(threads)
    with run_log(Path(store_root).parent):
        build_merged_stage(StageStore(Path(store_root)), request)
    return request.identity


def _train_target(
    request: Any,
    store_root: str,
    checkpoint_every_steps: int | None,
    threads: int,
    tracking: tuple[list[str], str],
    splits: dict[str, tuple[str, ...]],
    *parents: Any,
) -> str:
    """Ray task: a target fine-tune after a prefix, then its zero-shot evaluation ({split: languages})."""
    import torch

    from xstilts.rundir.store import StageStore
    from xstilts.study.stage import evaluate_target, run_stage

    torch.set_num_threads(threads)
    store = StageStore(Path(store_root))
    run_root = Path(store_root).parent
    with run_log(run_root), stage_tracking(tracking[0], run_root, tracking[1], request):
        run_stage(request, store, progress=False, checkpoint_every_steps=checkpoint_every_steps)
        stage_dir = store.stage_dir(request.identity, request.spec.name)
        for split, languages in splits.items():
            evaluate_target(
                stage_dir, request.spec, split, list(languages), request.settings, progress=False, label=request.label
            )
    return request.identity


def run_on_ray(
    config: ExperimentConfig,
    address: str | None = None,
    progress: bool = True,
    gpus_per_stage: float | None = None,
    cpus_per_stage: int = 1,
    max_retries: int = 3,
) -> dict[str, Any]:
    """Run the plan's stages and target fine-tunes as Ray tasks, then assemble the run locally."""
    if config.study is not None and config.study.search is not None:
        raise XstiltsError("study.search runs round by round with the local executor; drop --executor ray")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise XstiltsError("--executor ray needs Ray: pip install 'xstilts[ray]'") from None
    from xstilts.rundir.lock import run_lock
    from xstilts.study.runner import run_once
    from xstilts.train.modeling import check_encoder_available

    check_encoder_available(config.encoder)  # before anything is written
    output_dir = Path(config.output_dir).resolve()
    config = config.model_copy(update={"output_dir": output_dir})
    output_dir.mkdir(parents=True, exist_ok=True)
    with (
        run_lock(output_dir),
        run_log(output_dir),
    ):  # the driver holds it for the whole job; the final assembly re-enters it
        _run_graph(config, output_dir, address, progress, gpus_per_stage, cpus_per_stage, max_retries)
        return run_once(config, progress=progress)


def _run_graph(
    config: ExperimentConfig,
    output_dir: Path,
    address: str | None,
    progress: bool,
    gpus_per_stage: float | None,
    cpus_per_stage: int,
    max_retries: int,
) -> None:
    """Submit every stage and target fine-tune of the plan as Ray tasks and wait for all of them."""
    import ray

    from xstilts.rundir.runs import RunDirectory
    from xstilts.study.plan import build_plan, evaluated_prefixes, evaluation_languages, target_request
    from xstilts.terms import EVALUATION_SPLITS

    registry = config.registry()
    store = RunDirectory(output_dir).store
    plan = build_plan(config, registry, store)
    env = {key: os.environ[key] for key in ("XSTILTS_CACHE", "HF_HOME", "HF_HUB_OFFLINE") if key in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=False,
            include_dashboard=False,
        )
    try:
        gpus = (
            gpus_per_stage
            if gpus_per_stage is not None
            else (1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0)
        )
        options = {"num_cpus": cpus_per_stage, "num_gpus": gpus, "max_retries": max_retries}
        train_stage = ray.remote(_train_stage).options(**options)
        train_target = ray.remote(_train_target).options(**options)
        store_root = str(store.root)
        tracking = (list(config.trackers), config.name)
        refs: dict[str, Any] = {}
        names: dict[Any, str] = {}
        for node in plan.stages:  # parents first
            parent = refs.get(node.stage.parent_identity)
            refs[node.identity] = train_stage.remote(
                node.stage,
                store_root,
                config.checkpoint_every_steps,
                cpus_per_stage,
                tracking,
                *([parent] if parent else []),
            )
            names[refs[node.identity]] = f"stage {node.label}"
        build_merge = ray.remote(_build_merge).options(**options)
        for node in plan.merges:
            members = [refs[identity] for identity, _ in node.merge.members if identity in refs]
            refs[node.identity] = build_merge.remote(node.merge, store_root, cpus_per_stage, *members)
            names[refs[node.identity]] = f"merge {node.label}"
        targets = []
        for identity, seed in evaluated_prefixes(plan, config) + plan.combined:
            prefix = replace(plan.nodes[identity], seed=seed)
            for target in config.targets:
                spec = registry.get(target.task)
                if not spec.trainable:
                    continue  # retrieval evaluations run in the assembly step (inference only)
                request = target_request(config, registry, prefix, target)
                parent = refs.get(identity)
                requested = config.target_languages(target, registry)
                splits = {split: evaluation_languages(spec, split, requested) for split in EVALUATION_SPLITS}
                ref = train_target.remote(
                    request,
                    store_root,
                    config.checkpoint_every_steps,
                    cpus_per_stage,
                    tracking,
                    {split: languages for split, languages in splits.items() if languages},
                    *([parent] if parent else []),
                )
                names[ref] = f"target {target.task} after {prefix.label}"
                targets.append(ref)
        pending = list(refs.values()) + targets
        log.info(
            "submitted %d stages and %d target fine-tunes to Ray (%s)", len(refs), len(targets), ray.cluster_resources()
        )
        began = time.perf_counter()
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done)  # raises the task's error, if any (after Ray's retries)
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, XstiltsError):  # a user-facing error inside a stage: show it as it is
                    raise cause from None
                raise
            if progress:
                print(
                    f"[{time.perf_counter() - began:7.1f} s] done: {names[done[0]]} ({len(refs) + len(targets) - len(pending)}/{len(refs) + len(targets)})",
                    flush=True,
                )
    finally:
        if started_here:
            ray.shutdown()
