"""`xstilts export-predictions`: the test predictions of the model chosen on dev for each target, in the layout
of an XTREME leaderboard submission (one folder per task, `test-LANG.*` files in XTREME's formats).

`xstilts score --gold-dir GOLD --predictions-dir OUT/<task>` on the exported files gives back the run's own
test scores: the files hold exactly the predictions the run scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xstilts.errors import XstiltsError
from xstilts.files import atomic_writer, json_text
from xstilts.readers.jsonl import read_jsonl
from xstilts.results.aggregate import summarize
from xstilts.results.selection import by_label, choose
from xstilts.rundir.layout import predictions_file, retrieval_predictions_file
from xstilts.rundir.records import PlannedEvaluation
from xstilts.rundir.runs import RunDirectory
from xstilts.terms import TEST


def export_predictions(
    run_dir: str | Path, output_dir: str | Path, selection: str | None = None
) -> dict[str, dict[str, Any]]:
    """Write OUT/<target>/test-<lang>.<ext> for every target; returns {target: {"chain", "files"}}."""
    run = RunDirectory(run_dir)
    run.check_contained()
    plan = run.read_plan()
    if plan is None:
        raise XstiltsError(f"{run.root}: no {run.plan_file.name}; is this a run directory?")
    rule = selection or plan.selection
    dev, test = by_label(summarize(plan.name, run.result_rows()), rule)
    targets = sorted({e.target for e in plan.evaluations if e.split == TEST})
    choices = choose(targets, dev, test)
    planned = {(e.chain_label, e.target): e for e in plan.evaluations if e.split == TEST}
    exported: dict[str, dict[str, Any]] = {}
    for target, choice in sorted(choices.items()):
        evaluation = planned.get((choice.chosen, target))
        if evaluation is None:
            continue
        files = [_write(run, evaluation, language, Path(output_dir) / target) for language in evaluation.languages]
        exported[target] = {
            "chain": choice.chosen,
            "by_other_targets": choice.by_other_targets,
            "files": [str(f) for f in files],
        }
    if not exported:
        raise XstiltsError(f"{run.root}: no test predictions to export (has the run evaluated any target?)")
    return exported


def _write(run: RunDirectory, evaluation: PlannedEvaluation, language: str, directory: Path) -> Path:
    """One language's predictions in XTREME's submission format for the evaluation's metric."""
    if evaluation.stage is None:
        source = retrieval_predictions_file(run.recorded(evaluation.retrieval), TEST, language)
    else:
        source = predictions_file(run.store.stage_dir(evaluation.stage, evaluation.target), TEST, language)
    if not source.is_file():
        raise XstiltsError(
            f"{source}: the predictions of {evaluation.target} {language} after {evaluation.chain_label} are gone"
        )
    rows = [record for _, record in read_jsonl(source)]
    if evaluation.metric in ("squad", "mlqa"):
        path = directory / f"test-{language}.json"
        text = json_text({str(row["id"]): row["prediction"] for row in rows}) + "\n"
    elif evaluation.metric == "seqeval":
        path = directory / f"test-{language}.tsv"
        text = "".join("".join(f"{tag}\n" for tag in row["prediction"]) + "\n" for row in rows)
    elif evaluation.metric == "bucc_f1":
        path = directory / f"test-{language}.tsv"
        text = "".join(f"{row['prediction'][0]}\t{row['prediction'][1]}\n" for row in rows)
    else:  # classification labels, multiple-choice and Tatoeba indices: one per line
        path = directory / f"test-{language}.tsv"
        text = "".join(f"{row['prediction']}\n" for row in rows)
    with atomic_writer(path) as handle:
        handle.write(text)
    return path
