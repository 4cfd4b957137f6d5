"""`xstilts status RUN_DIR`: a run's progress read from its files (while it runs, on any executor).

Everything comes from plan.json and the stage store: no config is loaded, no data is hashed and no model
library is imported, so it works from any directory and on a moved or copied run directory.
"""

from __future__ import annotations

from pathlib import Path

from xstilts.errors import XstiltsError
from xstilts.files import read_json_or_none
from xstilts.rundir.lock import describe_lock
from xstilts.rundir.runs import RunDirectory


def run_status(run_dir: str | Path) -> str:
    """Stages done / in progress (with their last checkpoint step) / waiting, and results found against expected."""
    run = RunDirectory(run_dir)
    plan = run.read_plan()
    if plan is None:
        if run.plan_file.is_file():
            raise XstiltsError(f"{run.plan_file} is damaged; `xstilts run` with the run's config writes it again")
        raise XstiltsError(f"{run.root}: no {run.plan_file.name}; is this a run directory?")
    lines, counts = [], {"done": 0, "pruned": 0, "damaged": 0, "in progress": 0, "waiting": 0}
    for stage in plan.stages:
        state = run.store.inspect(stage.identity, stage.task)
        progress = read_json_or_none(run.store.checkpoint(stage.identity, stage.task).progress, "checkpoint")
        if state.status in ("done", "pruned"):
            record = state.record
            score = record["dev_metrics"].get(record.get("primary_metric"))
            detail = f"{record.get('steps')} steps, English dev {record.get('primary_metric')} " + (
                f"{score:.2f}" if isinstance(score, (int, float)) else "?"
            )
            status = state.status
        elif state.status == "damaged":
            status, detail = "damaged", f"{state.problem}; `xstilts run` retrains it"
        elif isinstance(progress, dict) and "step" in progress:
            status, detail = "in progress", f"checkpoint at step {progress['step']}"
        else:
            status, detail = "waiting", ""
        counts[status] += 1
        lines.append(f"  {status:<12} {stage.label:<50} {detail}")
    fine_tunes = {(e.stage, e.target) for e in plan.evaluations if e.stage is not None}
    finished = sum(run.store.record(identity, task) is not None for identity, task in fine_tunes)
    found = len(run.result_rows())
    header = [
        f"run {plan.name} at {run.root}: {describe_lock(run.root)}",
        "intermediate stages: " + ", ".join(f"{n} {state}" for state, n in counts.items() if state != "damaged" or n),
        f"target fine-tunes done: {finished} of {len(fine_tunes)}",
        f"results: {found} of {len(plan.expected())} (chain, target, language)",
        "stages:",
    ]
    return "\n".join(header + lines)
