"""`xstilts status RUN_DIR`: a run's progress read from its files (works while it runs, on any executor)."""

from __future__ import annotations

import json
from pathlib import Path

from xstilts.errors import XstiltsError


def run_status(run_dir: str | Path) -> str:
    """Stages done / in progress (with their last checkpoint step) / waiting, and results found against expected."""
    from xstilts.config import load_config
    from xstilts.plan import build_plan
    from xstilts.runner import PLAN_FILE, RESULTS_DIR, STAGES_DIR
    from xstilts.store import StageStore

    run_dir = Path(run_dir)
    config_path = run_dir / "config.resolved.yaml"
    if not config_path.is_file():
        raise XstiltsError(f"{run_dir}: no config.resolved.yaml; is this a run directory?")
    config = load_config(config_path)
    store = StageStore(run_dir / STAGES_DIR)
    plan = build_plan(config, config.registry(), store)
    lines, counts = [], {"done": 0, "pruned": 0, "in progress": 0, "waiting": 0}
    for node in plan.stages:
        record = store.record(node.identity, node.stage.name)
        checkpoint = store.root / ".checkpoints" / f"{node.identity}-{node.stage.name}" / "progress.json"
        if record is not None:
            state = "pruned" if record.get("pruned") else "done"
            detail = f"{record['steps']} steps, English dev {record['primary_metric']} {record['dev_metrics'].get(record['primary_metric'], float('nan')):.2f}"
        elif checkpoint.is_file():
            state, detail = "in progress", f"checkpoint at step {json.loads(checkpoint.read_text())['step']}"
        else:
            state, detail = "waiting", ""
        counts[state] += 1
        lines.append(f"  {state:<12} {node.label:<50} {detail}")
    expected = json.loads((run_dir / PLAN_FILE).read_text())["expected"] if (run_dir / PLAN_FILE).is_file() else []
    found = len(list((run_dir / RESULTS_DIR).rglob("*.json"))) if (run_dir / RESULTS_DIR).is_dir() else 0
    targets = [p for p in store.root.glob("*/stage.json") if json.loads(p.read_text()).get("role") == "target"] if store.root.is_dir() else []
    header = [
        f"run {config.name} at {run_dir}",
        "intermediate stages: " + ", ".join(f"{n} {state}" for state, n in counts.items()),
        f"target fine-tunes done: {len(targets)}",
        f"results: {found} of {len(expected)} (chain, target, language)",
        "stages:",
    ]
    return "\n".join(header + lines)
