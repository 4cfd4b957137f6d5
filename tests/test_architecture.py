"""The shape of the package: no import cycles, light commands stay light, one owner of the run directory,
and readers that work on a copied run from any directory."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from module_map import imports_anywhere, module_name, room_graph

from xstilts.rundir import layout

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "xstilts"


def _modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _top_level_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """xstilts modules imported when `path` is imported (module level, outside `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    body = [node for node in tree.body if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))]
    for node in body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("xstilts")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("xstilts"):
            for alias in node.names:  # `from pkg import submodule` imports the submodule; anything else, the module
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module)
    return {name for name in found if name in modules}


def test_no_import_cycles_inside_the_package():
    modules = _modules()
    assert len(modules) > 50, "the package was found"
    graph = {name: _top_level_imports(path, modules) for name, path in modules.items()}
    cycles = []

    def visit(name: str, stack: list[str], done: set[str]) -> None:
        if name in stack:
            cycles.append(stack[stack.index(name) :] + [name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, stack + [name], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_packages_form_a_directed_acyclic_graph_at_module_and_function_level():
    """Rooms import downwards only: no two packages import each other, directly or round a loop, even inside a
    function. (`__main__` and `cli` are the top; nothing imports them.)"""
    rooms = room_graph()
    order: list[str] = []
    remaining = {room: set(imported) for room, imported in rooms.items()}
    while remaining:
        leaves = sorted(room for room, imported in remaining.items() if not imported - set(order))
        if not leaves:
            loop = {room: sorted(imported - set(order)) for room, imported in remaining.items()}
            raise AssertionError(f"packages that import each other (room -> what it still needs): {loop}")
        order += leaves
        for room in leaves:
            del remaining[room]
    assert {"metrics", "rundir", "runtime", "results", "analysis"} <= set(order)
    assert order.index("rundir") < order.index("train") < order.index("evaluate") < order.index("study")
    assert order.index("metrics") < order.index("tasks") and order.index("results") < order.index("analysis")
    assert not {"study", "train", "evaluate"} & rooms["analysis"], "reading a run back never trains or evaluates"
    assert not any("cli" in imported for room, imported in rooms.items() if room != "__main__")


def test_no_module_imports_one_that_imports_it_back_even_inside_a_function():
    modules = _modules()
    imports = {name: imports_anywhere(path, name, modules) for name, path in modules.items()}
    mutual = sorted(
        f"{a} <-> {b}" for a, imported in imports.items() for b in imported if a < b and a in imports.get(b, set())
    )
    assert not mutual, f"modules that import each other: {mutual}"


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _joins_a_path(node: ast.AST, names: set[str]) -> bool:
    """`x / NAME`, `x / "name"`, `run.root / x`, `store.stage_dir(...) / x`, `run.file(NAME)`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        for side in (node.left, node.right):
            if isinstance(side, ast.Name) and side.id in names:
                return True
            if isinstance(side, ast.Attribute) and (side.attr in names or side.attr == "root"):
                return True
            if isinstance(side, ast.Call) and isinstance(side.func, ast.Attribute):
                if side.func.attr in ("stage_dir", "checkpoint_dir", "retrieval_dir"):
                    return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "file":
        return any(isinstance(arg, ast.Name) and arg.id in names for arg in node.args)
    return False


def test_only_the_run_directory_package_names_a_file_inside_a_run_or_stage():
    """Outside xstilts.rundir no code builds a path inside a run or stage directory: no literal file name (docstrings
    may mention them), no join with a layout name, a run's root or a stage directory. Readers go through
    RunDirectory, StageStore and StageDirectory, and so through their integrity checks."""
    names = {name for name, value in vars(layout).items() if name.isupper() and isinstance(value, str)}
    literal_files = {getattr(layout, name) for name in names if "." in getattr(layout, name)}
    assert {"stage.json", "plan.json", "summary.json", "heads.safetensors", ".xstilts.lock"} <= literal_files
    offences = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "rundir"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and any(name in node.value for name in literal_files)
            ):
                offences.append(f"{where}:{node.lineno}: {node.value!r}")
            if _joins_a_path(node, names):
                offences.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, "paths inside a run built outside xstilts.rundir:\n" + "\n".join(offences)


def test_the_path_rule_sees_what_it_forbids():
    """The rule above, on code that breaks it (so that it cannot pass by seeing nothing)."""
    names = {"RECORD_FILE", "HEADS_FILE"}
    forbidden = [
        "read_json(stage_dir / RECORD_FILE)",
        "model_dir / layout.HEADS_FILE",
        "run.root / 'x'",
        "store.stage_dir(a, b) / 'x'",
        "run.file(RECORD_FILE)",
    ]
    allowed = ["StageDirectory(stage_dir).record_file", "run.config_file", "data_dir / 'train.jsonl'"]
    assert all(any(_joins_a_path(n, names) for n in ast.walk(ast.parse(code))) for code in forbidden)
    assert not any(_joins_a_path(n, names) for code in allowed for n in ast.walk(ast.parse(code)))


LIGHT = """
import json, sys
from xstilts.cli import main
status = main(json.loads(sys.argv[1]))
heavy = sorted(m for m in ("torch", "transformers", "accelerate", "faiss", "datasets", "peft") if m in sys.modules)
print(json.dumps({"status": status, "heavy": heavy}), file=sys.stderr)
"""


def _light(args: list[str], cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", LIGHT, json.dumps(args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_readers_work_on_a_copied_run_from_another_directory_without_torch(tmp_path, tiny_encoder_dir, demo_tasks):
    import xstilts

    config = {
        "name": "copied",
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": ["demo_paraphrase"],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "evaluate_every_prefix": True,
        "training": {"max_steps": 2, "batch_size": 8, "eval_every_steps": 2, "eval_examples": 8, "max_length": 64},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    xstilts.run(xstilts.load_config(tmp_path / "config.yaml"), progress=False)
    xstilts.write_report(tmp_path / "run")
    original = (tmp_path / "run" / "report.md").read_text()
    copied = tmp_path / "elsewhere" / "copy-of-run"
    shutil.copytree(tmp_path / "run", copied, symlinks=True)
    shutil.rmtree(tmp_path / "run")  # nothing may still point into the original
    somewhere = tmp_path / "somewhere"
    somewhere.mkdir()
    for command in (
        ["status", str(copied)],
        ["report", str(copied)],
        ["--help"],
        [
            "score",
            "--task",
            "pawsx",
            "--lang",
            "de",
            "--gold",
            str(copied / "results.csv"),
            "--predictions",
            str(copied / "results.csv"),
        ],
        ["data", "check", str(somewhere)],
        ["plan", str(tmp_path / "config.yaml")],
    ):
        outcome = _light(command, somewhere)
        assert outcome["heavy"] == [], f"xstilts {command[0]} imported {outcome['heavy']}"
        refused = command[0] == "score" or command[:2] == ["data", "check"]  # bad gold file; a dir with no task files
        assert outcome["status"] == (2 if refused else 0), command
    assert (copied / "report.md").read_text() == original, "the same report from the copy"
    status = subprocess.run(
        [sys.executable, "-m", "xstilts", "status", str(copied)],
        capture_output=True,
        text=True,
        cwd=somewhere,
        timeout=120,
    )
    assert (
        "intermediate stages: 1 done" in status.stdout
        and "target fine-tunes done: 2 of 2" in status.stdout
        and "results: 8 of 8" in status.stdout  # dev and test
    )
    stage_record = json.loads(next(copied.glob("stages/*-demo_nli/stage.json")).read_text())
    assert not Path(stage_record["encoder_recipe"]["base"]).is_absolute(), (
        "paths inside a run are recorded relative to it"
    )


def test_summary_csv_and_report_agree_on_a_run_with_missing_languages_and_tasks(tmp_path):
    """One aggregation: the XTREME score and its partial flag, and every language's score, are the same in
    summary.json, results.csv and report.md."""
    import csv

    from xstilts.analysis.report import write_report
    from xstilts.metrics.xtreme import headline
    from xstilts.results.aggregate import summarize
    from xstilts.rundir.records import PlannedEvaluation, RunPlan
    from xstilts.rundir.runs import RunDirectory

    run = RunDirectory(tmp_path / "run")
    planned = [
        PlannedEvaluation("k0-pretrained", (), "full", 0, "root", "xnli", "accuracy", ("en", "de", "fr")),
        PlannedEvaluation("k0-pretrained", (), "full", 0, "root", "mlqa", "mlqa", ("en", "de")),
        PlannedEvaluation("k1-mnli", ("mnli",), "full", 0, "a1", "xnli", "accuracy", ("en", "de", "fr")),
        PlannedEvaluation("k1-mnli", ("mnli",), "full", 0, "a1", "mlqa", "mlqa", ("en", "de")),
    ]
    run.write_plan(RunPlan("agreement", "enc", [], planned))
    scores = {
        ("k0-pretrained", "xnli", "en"): 80.0,
        ("k0-pretrained", "xnli", "de"): 71.5,
        ("k0-pretrained", "xnli", "fr"): 73.25,
        ("k0-pretrained", "mlqa", "en"): (60.0, 75.0),
        ("k0-pretrained", "mlqa", "de"): (40.0, 55.5),
        ("k1-mnli", "xnli", "en"): 82.0,
        ("k1-mnli", "xnli", "de"): 74.0,  # fr missing
        ("k1-mnli", "mlqa", "en"): (61.0, 76.0),
    }  # de missing
    rows = []
    for (label, target, language), value in scores.items():
        metric = "accuracy" if target == "xnli" else "mlqa"
        metrics = {"accuracy": value} if metric == "accuracy" else {"exact_match": value[0], "f1": value[1]}
        row = {
            "chain": [] if label.startswith("k0") else ["mnli"],
            "chain_length": 0 if label.startswith("k0") else 1,
            "chain_label": label,
            "mode": "full",
            "seed": 0,
            "target": target,
            "language": language,
            "metric": metric,
            "metrics": metrics,
            "score": headline(metrics, metric),
            "examples": 10,
            "split": "test",
            "english_dev": {},
            "target_stage": None,
        }
        run.write_result(row)
        rows.append(row)
    run.write_summary(summarize("agreement", rows))
    report = write_report(run.root).read_text()
    summary = json.loads((run.root / "summary.json").read_text())

    for label in ("k0-pretrained", "k1-mnli"):
        xtreme = summary["chains"][label]["xtreme"]
        assert xtreme["partial"] is True and "pawsx" in xtreme["missing"], "seven XTREME tasks are missing"
        expected = (
            sum(s for (chain, t, _), s in scores.items() if chain == label and t == "xnli")
            / len([k for k in scores if k[0] == label and k[1] == "xnli"])
            + sum(sum(s) / 2 for (chain, t, _), s in scores.items() if chain == label and t == "mlqa")
            / len([k for k in scores if k[0] == label and k[1] == "mlqa"])
        ) / 2
        assert xtreme["score"] == pytest.approx(expected)
    assert summary["chains"]["k1-mnli"]["xtreme"]["missing_languages"]["xnli"][:1] == ["ar"]
    table = report.split("## Score against chain length")[1].split("##")[0]
    assert "XTREME (partial)" in table
    assert "| 0 | " in table and f"{summary['chains']['k0-pretrained']['xtreme']['score']:.1f}" in table.splitlines()[4]
    assert f"{summary['chains']['k1-mnli']['xtreme']['score']:.1f}" in table.splitlines()[5]
    with (run.root / "results.csv").open(newline="") as handle:
        csv_scores = {(r["chain_label"], r["target"], r["language"]): float(r["score"]) for r in csv.DictReader(handle)}
    for label, chain in summary["chains"].items():
        for target, entry in chain["targets"].items():
            for language, score in entry["scores"].items():
                assert csv_scores[(label, target, language)] == pytest.approx(score)
                assert f"{score:.1f}" in report.split(f"## {target} by language")[1].split("##")[0]
    assert (
        "## Missing results (2)" in report
        and "| k1-mnli | xnli | fr |" in report
        and "| k1-mnli | mlqa | de |" in report
    )


def test_a_registered_report_section_is_rendered_in_its_place_and_answers_when_it_says_so(tmp_path):
    """A throw-away section, registered with one decorator before the languages, appears in report.md and HTML in
    that place; marked as part of the answer, it is in the terminal summary too."""
    from xstilts.analysis.render import Section
    from xstilts.analysis.report import write_report_files
    from xstilts.analysis.sections import REPORT_SECTIONS, report_section, unregister_section
    from xstilts.rundir.records import PlannedEvaluation, RunPlan
    from xstilts.rundir.runs import RunDirectory

    run = RunDirectory(tmp_path / "run")
    run.write_plan(
        RunPlan(
            "sections", "enc", [], [PlannedEvaluation("k0-pretrained", (), "full", 0, "r", "xnli", "accuracy", ("en",))]
        )
    )
    for language, accuracy in (("en", 80.0),):
        run.write_result(
            {
                "chain": [],
                "chain_length": 0,
                "chain_label": "k0-pretrained",
                "mode": "full",
                "seed": 0,
                "target": "xnli",
                "language": language,
                "metric": "accuracy",
                "metrics": {"accuracy": accuracy},
                "score": accuracy,
                "examples": 10,
                "split": "test",
                "english_dev": {},
                "target_stage": None,
            }
        )

    @report_section("rows counted", before="languages")
    def rows_counted(inputs):
        return [Section("Rows counted", [f"{len(inputs.rows)} result rows"], answer=True)]

    try:
        written = write_report_files(run.root)
    finally:
        unregister_section("rows counted")
    assert "rows counted" not in [section.name for section in REPORT_SECTIONS]
    report = written.path.read_text()
    assert "## Rows counted\n\n1 result rows" in report
    assert report.index("## Rows counted") < report.index("## Languages"), "registered before the languages"
    assert "<h2>Rows counted</h2>" in run.html_file.read_text()
    assert "## Rows counted" in written.headline, "an answer section is in the terminal summary"
    assert "## Languages" not in written.headline


def test_no_function_is_longer_than_a_screenful_and_a_half():
    """Functions over 120 lines hide their steps; split them into named ones."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 120:
                long.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                )
    assert not long, long


def test_record_defaults_are_filled_by_the_record_types_only():
    """`.get("mode", "full")` and its kind re-apply a record's defaults at every reader; the record types fill them
    once (xstilts.rundir.records), and readers index the field."""
    from xstilts.rundir.records import ROW_DEFAULTS, STAGE_DEFAULTS

    defaulted = {**ROW_DEFAULTS, **STAGE_DEFAULTS}

    offences = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "rundir" / "records.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        readers = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "from_json"]
        inside_a_type = {id(node) for reader in readers for node in ast.walk(reader)}  # a type reading its JSON
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and id(node) not in inside_a_type
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in defaulted
            ):
                offences.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, offences


def test_the_readme_module_map_is_the_tree():
    from module_map import END, START, render

    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, "README.md has the generated module map"
    found = readme[readme.index(START) : readme.index(END) + len(END)]
    assert found == render(), "README's module map is stale: paste the output of `python tests/module_map.py`"
