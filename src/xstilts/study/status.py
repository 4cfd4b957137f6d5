"""`xstilts status RUN_DIR`: a run's progress read from its files (works while it runs, on any executor)."""

from __future__ import annotations

from pathlib import Path

from xstilts.errors import XstiltsError


def run_status(run_dir: str | Path) -> str:
    """Stages done / in progress (with their last checkpoint step) / waiting, and results found against expected."""
    from xstilts.config import load_config
    from xstilts.study.plan import build_plan
    from xstilts.study.runner import PLAN_FILE, RESULTS_DIR, STAGES_DIR
    from xstilts.files import read_json_or_none
    from xstilts.study.lock import describe_lock
    from xstilts.results.store import RECORD_FILE, StageStore

    run_dir = Path(run_dir)
    config_path = run_dir / "config.resolved.yaml"
    if not config_path.is_file():
        raise XstiltsError(f"{run_dir}: no config.resolved.yaml; is this a run directory?")
    config = load_config(config_path)
    store = StageStore(run_dir / STAGES_DIR)
    plan = build_plan(config, config.registry(), store)
    lines, counts = [], {"done": 0, "pruned": 0, "damaged": 0, "in progress": 0, "waiting": 0}
    for node in plan.stages:
        state = store.inspect(node.identity, node.stage.name)
        progress = read_json_or_none(store.checkpoint_dir(node.identity, node.stage.name) / "progress.json", "checkpoint")
        if state.status in ("done", "pruned"):
            record = state.record
            score = record.get("dev_metrics", {}).get(record.get("primary_metric"))
            detail = f"{record.get('steps')} steps, English dev {record.get('primary_metric')} " + (f"{score:.2f}" if isinstance(score, (int, float)) else "?")
            status = state.status
        elif state.status == "damaged":
            status, detail = "damaged", f"{state.problem}; `xstilts run` retrains it"
        elif isinstance(progress, dict) and "step" in progress:
            status, detail = "in progress", f"checkpoint at step {progress['step']}"
        else:
            status, detail = "waiting", ""
        counts[status] += 1
        lines.append(f"  {status:<12} {node.label:<50} {detail}")
    plan_record = read_json_or_none(run_dir / PLAN_FILE, "plan")
    expected = plan_record.get("expected", []) if isinstance(plan_record, dict) else []
    found = sum(read_json_or_none(p, "result") is not None for p in (run_dir / RESULTS_DIR).rglob("*.json")) if (run_dir / RESULTS_DIR).is_dir() else 0
    records = [read_json_or_none(p, "stage record") for p in store.root.glob(f"*/{RECORD_FILE}")] if store.root.is_dir() else []
    targets = [r for r in records if isinstance(r, dict) and r.get("role") == "target"]
    header = [
        f"run {config.name} at {run_dir}: {describe_lock(run_dir)}",
        "intermediate stages: " + ", ".join(f"{n} {state}" for state, n in counts.items() if state != "damaged" or n),
        f"target fine-tunes done: {len(targets)}",
        f"results: {found} of {len(expected)} (chain, target, language)",
        "stages:",
    ]
    return "\n".join(header + lines)
