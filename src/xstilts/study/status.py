"""`xstilts status RUN_DIR`: a run's progress read from its files (while it runs, on any executor).

Everything comes from plan.json and the stage store: no config is loaded, no data is hashed and no model
library is imported, so it works from any directory and on a moved or copied run directory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from xstilts.errors import XstiltsError
from xstilts.files import read_json_or_none
from xstilts.rundir.lock import describe_lock
from xstilts.rundir.records import RunPlan
from xstilts.rundir.runs import RunDirectory
from xstilts.terms import MIXTURE


def run_status(run_dir: str | Path) -> str:
    """Stages done / in progress (with their last checkpoint step) / waiting, and results found against expected."""
    run = RunDirectory(run_dir)
    plan = run.read_plan()
    if plan is None:
        if run.plan_file.is_file():
            raise XstiltsError(f"{run.plan_file} is damaged; `xstilts run` with the run's config writes it again")
        raise XstiltsError(f"{run.root}: no {run.plan_file.name}; is this a run directory?")
    lines, counts = [], {"done": 0, "pruned": 0, "damaged": 0, "in progress": 0, "waiting": 0}
    merges: Counter[str] = Counter()  # the combination study's merged encoders: built, not trained
    for stage in plan.stages:
        state = run.store.inspect(stage.identity, stage.task)
        progress = read_json_or_none(run.store.checkpoint(stage.identity, stage.task).progress, "checkpoint")
        if state.status in ("done", "pruned"):
            detail, status = _done_detail(state.record), state.status
        elif state.status == "damaged":
            status, detail = "damaged", f"{state.problem}; `xstilts run` retrains it"
        elif isinstance(progress, dict) and "step" in progress:
            status, detail = "in progress", f"checkpoint at step {progress['step']}"
        else:
            status, detail = "waiting", ""
        (merges if stage.combination and stage.combination["method"] != MIXTURE else counts)[status] += 1
        lines.append(f"  {status:<12} {stage.label:<50} {detail}")
    fine_tunes = {(e.stage, e.target) for e in plan.evaluations if e.stage is not None}
    finished = sum(run.store.record(identity, task) is not None for identity, task in fine_tunes)
    found = len(run.result_rows())
    header = [
        f"run {plan.name} at {run.root}: {describe_lock(run.root)}",
        "intermediate stages: " + ", ".join(f"{n} {state}" for state, n in counts.items() if state != "damaged" or n),
        *([f"merges: {merges['done']} built of {sum(merges.values())}"] if merges else []),
        f"target fine-tunes done: {finished} of {len(fine_tunes)}",
        f"results: {found} of {len(plan.expected())} (chain, target, language)",
        _time_left(run, plan),
        "stages:",
    ]
    return "\n".join(header + lines)


def _done_detail(record: dict) -> str:
    """ "120 steps, English dev accuracy 81.20"; a merge: its method, setting and seconds."""
    merge = record.get("merge")
    if merge:
        density = "" if merge.get("density") is None else f", density {merge['density']:g}"
        return (
            f"merged ({merge['method']}, lambda {merge['weight']:g}{density}) in {record.get('wall_seconds', 0):.1f} s"
        )
    score = record["dev_metrics"].get(record.get("primary_metric"))
    return f"{record.get('steps')} steps, English dev {record.get('primary_metric')} " + (
        f"{score:.2f}" if isinstance(score, (int, float)) else "?"
    )


def _time_left(run: RunDirectory, plan: RunPlan) -> str:
    """The measured rate (seconds per estimated training token of the finished stages and fine-tunes) and the time
    the rest takes at that rate: the measurement replaces `xstilts plan --device`'s estimate once a stage is done."""
    if not plan.estimated_tokens:
        return "time left: unknown (the plan holds no token estimates; runs of an older version)"
    names = {s.identity: s.task for s in plan.stages} | {e.stage: e.target for e in plan.evaluations if e.stage}
    done_seconds = done_tokens = left_tokens = left = finished = 0
    for identity, tokens in plan.estimated_tokens.items():
        record = run.store.record(identity, names.get(identity, ""))
        if record is not None and record.get("train_seconds") is not None:
            done_seconds, done_tokens, finished = (
                done_seconds + record["train_seconds"],
                done_tokens + tokens,
                finished + 1,
            )
        elif tokens:
            left_tokens, left = left_tokens + tokens, left + 1
    if not left:
        return f"time left: none to train ({finished} stages and fine-tunes done)"
    if not done_tokens:
        return f"time left: unknown until a stage finishes ({left} to train; `xstilts plan --device` estimates it)"
    rate = done_seconds / done_tokens
    return (
        f"time left: about {_duration(rate * left_tokens)} to train {left} stages and fine-tunes, at the rate measured "
        f"over the {finished} finished ({rate * 1e6:.2f} s per million planned tokens; evaluation not included)"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
