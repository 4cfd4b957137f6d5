"""`RunDirectory`: the one owner of a run directory, its paths and the typed reading and writing of its records.

The runner writes through it; the report, `xstilts status`, the latency harness and any other reader read
through it. Everything it writes goes through `xstilts.files` (aside, fsynced, renamed; strict JSON) and lies
inside the run directory; a damaged file is never trusted (see each reader). Paths recorded inside a run are
relative to it, so a moved or copied run directory reads the same.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import read_json, read_json_or_none, write_json_atomic, write_text_atomic
from xstilts.rundir import layout
from xstilts.rundir.records import (
    Evaluation,
    ResultRow,
    RunPlan,
    complete_record,
    complete_rows,
    is_evaluation,
    is_result_row,
)
from xstilts.rundir.store import StageStore, content_identity

log = logging.getLogger(__name__)


class RunDirectory:
    """A run's directory (it need not exist yet)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def file(self, name: str) -> Path:
        """A top-level file of the run (one of the names in `xstilts.rundir.layout`)."""
        return layout.inside(self.root, self.root / name)

    # The run's top-level files, by what they hold (the names live in `layout`).

    @property
    def config_file(self) -> Path:
        return self.file(layout.CONFIG_FILE)

    @property
    def plan_file(self) -> Path:
        return self.file(layout.PLAN_FILE)

    @property
    def log_file(self) -> Path:
        return self.file(layout.RUN_LOG)

    @property
    def trackers_dir(self) -> Path:
        return self.file(layout.TRACKERS_DIR)

    @property
    def report_file(self) -> Path:
        return self.file(layout.REPORT_FILE)

    @property
    def html_file(self) -> Path:
        return self.file(layout.HTML_FILE)

    @property
    def results_csv(self) -> Path:
        return self.file(layout.RESULTS_CSV)

    @property
    def results_json(self) -> Path:
        return self.file(layout.RESULTS_JSON)

    def recorded(self, relative: str) -> Path:
        """A path a record holds relative to the run (a retrieval directory, a units file), checked to lie inside it."""
        return layout.inside(self.root, self.root / relative)

    def plot_file(self, plot: str) -> Path:
        """A plot's PNG (its SVG beside it): `plot` is one of `layout.PLOTS` ("gain", "heatmap", "tradeoff", "latency")."""
        return self.file(layout.PLOTS[plot])

    @functools.cached_property
    def store(self) -> StageStore:
        return StageStore(self.root / layout.STAGES_DIR)

    def check_contained(self) -> None:
        """No symbolic link inside leads outside (`layout.check_contained`); every command that opens a run calls it."""
        layout.check_contained(self.root)

    def looks_like_a_run(self) -> bool:
        return layout.is_run_directory(self.root)

    # --- the resolved config ---------------------------------------------------------------------------

    def write_config(self, text: str) -> None:
        write_text_atomic(self.file(layout.CONFIG_FILE), text)

    # --- plan.json -----------------------------------------------------------------------------------------

    def write_plan(self, plan: RunPlan) -> None:
        write_json_atomic(self.file(layout.PLAN_FILE), plan.to_json())

    def read_plan(self) -> RunPlan | None:
        """The plan, or None when there is none or it is damaged (a warning says so)."""
        data = read_json_or_none(self.root / layout.PLAN_FILE, "plan")
        if not isinstance(data, dict):
            return None
        try:
            return RunPlan.from_json(data)
        except (KeyError, TypeError) as error:
            log.warning("%s does not hold a plan (%s); ignoring it", self.root / layout.PLAN_FILE, error)
            return None

    # --- results/<chain>/<target>/<lang>.json --------------------------------------------------------------

    def result_file(self, chain_label: str, target: str, split: str, language: str) -> Path:
        return layout.inside(
            self.root,
            self.root / layout.RESULTS_DIR / layout.folder_name(chain_label) / target / f"{split}-{language}.json",
        )

    def write_result(self, row: ResultRow) -> None:
        write_json_atomic(self.result_file(row["chain_label"], row["target"], row["split"], row["language"]), row)

    def result_rows(self) -> list[ResultRow]:
        """Every intact result row, in path order (a damaged file is skipped with a warning and counts as missing)."""
        directory = self.root / layout.RESULTS_DIR
        rows = (
            [
                read_json_or_none(path, "result (it is reported as missing)")
                for path in sorted(directory.rglob("*.json"))
            ]
            if directory.is_dir()
            else []
        )
        return complete_rows(row for row in rows if is_result_row(row))

    def write_chain_links(self, rows: list[ResultRow]) -> None:
        """Readable names for the hash-named stage folders, rebuilt from the result rows:
        `by-chain/<chain label>/<target>` is the target's fine-tuned stage and `by-chain/<chain label>/encoder`
        the last intermediate stage of the chain (relative links, so a moved run keeps them).
        """
        links: dict[Path, Path] = {}
        # one per fine-tuned model (rows repeat it for every split and language)
        models = sorted({(r["chain_label"], r["target"], r["target_stage"]) for r in rows if r.get("target_stage")})
        for label, target, identity in models:
            folder = Path(layout.folder_name(label))  # a label names the chain mode and seed when the run has several
            links[folder / target] = self.store.stage_dir(identity, target)
            record = self.store.record(identity, target)
            parent = (self.store.root / record["parent"]) if record and record.get("parent") else None
            if parent is not None and parent.resolve().is_relative_to(self.store.root.resolve()):
                relative = parent.resolve().relative_to(self.store.root.resolve())
                links[folder / "encoder"] = self.store.root / relative.parts[0]
        top = layout.inside(self.root, self.root / layout.BY_CHAIN_DIR)
        if top.is_dir() and not top.is_symlink():
            shutil.rmtree(top)  # links and the folders holding them only: rmtree never follows a link
        try:
            for name, target in sorted(links.items()):
                link = layout.inside(self.root, top / name)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
        except OSError as error:  # a file system without symbolic links: the run is complete without them
            log.warning("%s: cannot link stages by chain (%s); stages/ holds them by identity", top, error)

    # --- search.json -------------------------------------------------------------------------------------------

    def write_search(self, record: Mapping[str, Any]) -> None:
        write_json_atomic(self.file(layout.SEARCH_FILE), record)

    def read_search(self) -> dict[str, Any] | None:
        record = read_json_or_none(self.root / layout.SEARCH_FILE, "search record")
        return record if isinstance(record, dict) and "found" in record else None

    # --- diagnostics/<prefix identity>.json --------------------------------------------------------------------

    def diagnostics_file(self, identity: str) -> Path:
        return layout.inside(self.root, self.root / layout.DIAGNOSTICS_DIR / f"{identity}.json")

    def write_diagnostics(self, identity: str, record: Mapping[str, Any]) -> None:
        write_json_atomic(self.diagnostics_file(identity), record)

    def read_diagnostics(self) -> list[dict[str, Any]]:
        """Every intact prefix diagnostics record (a damaged one is skipped with a warning)."""
        directory = self.root / layout.DIAGNOSTICS_DIR
        records = [read_json_or_none(p, "diagnostics record") for p in sorted(directory.glob("*.json"))]
        return [complete_record(r) for r in records if isinstance(r, dict) and "identity" in r]

    # --- summary.json ----------------------------------------------------------------------------------------

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json_atomic(self.file(layout.SUMMARY_FILE), summary)

    def read_summary(self) -> dict[str, Any]:
        path = self.root / layout.SUMMARY_FILE
        if not path.is_file():
            raise XstiltsError(f"{path}: no summary; has the run finished?")
        return read_json(path)

    def wall_seconds(self) -> float | None:
        """The run's wall time from summary.json, if there is an intact one."""
        summary = read_json_or_none(self.root / layout.SUMMARY_FILE, "summary")
        wall = summary.get("wall_seconds") if isinstance(summary, dict) else None
        return wall if isinstance(wall, (int, float)) else None

    # --- latency.json ---------------------------------------------------------------------------------------

    def write_latency(self, latency: Mapping[str, Any]) -> None:
        write_json_atomic(self.file(layout.LATENCY_FILE), latency)

    def read_latency(self) -> dict[str, Any] | None:
        latency = read_json_or_none(self.root / layout.LATENCY_FILE, "latency record")
        return latency if isinstance(latency, dict) and isinstance(latency.get("groups"), list) else None

    # --- evaluations (stages/<id>-<task>/evaluations/, retrieval/<...>/) ---------------------------------------

    def retrieval_dir(self, prefix_identity: str, task: str, embedding: Mapping[str, Any]) -> Path:
        """Where the retrieval evaluations of the encoder after a prefix live (one per embedding setting)."""
        return layout.inside(
            self.root,
            self.root / layout.RETRIEVAL_DIR / f"{prefix_identity}-{task}-{content_identity(dict(embedding))}",
        )

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()


def read_evaluation(path: Path) -> Evaluation | None:
    """An intact evaluation, or None when it is missing or damaged (damage is logged; the evaluation is redone)."""
    evaluation = read_json_or_none(path, "evaluation (it is computed again)")
    return evaluation if is_evaluation(evaluation) else None


def write_evaluation(path: Path, evaluation: Evaluation) -> None:
    write_json_atomic(path, evaluation)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The summary a finished run wrote (`xstilts.read_results`)."""
    return RunDirectory(run_dir).read_summary()
