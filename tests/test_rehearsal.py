"""`xstilts run --rehearse`: the whole plan walked at a step and a few examples each, in scratch, with a table of what
would break. Each planted fault (a missing language file, a retrieval layer beyond the model's depth, a chain mode
whose target cannot be exported, memory over a stated limit) is found, and a clean study is found clean."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REAL_DATA
from fast_training import FAST

from xstilts.cli import app
from xstilts.config import TaskDefinition, parse_config
from xstilts.data.samples import STAND_IN_TAGS, stand_in_examples
from xstilts.rehearsal import format_findings, rehearse, would_break
from xstilts.tasks.catalogue import CATALOGUE
from xstilts.tasks.schema import validate_example

pytestmark = pytest.mark.slow

POOL = ["demo_paraphrase", "demo_squad2", "demo_swag"]


def _study(root: Path, encoder: Path, demo_tasks: dict, **changes) -> dict:
    tasks = {name: dict(definition) for name, definition in demo_tasks.items()}
    raw = {
        "name": "rehearsed",
        "encoder": str(encoder),
        "output_dir": str(root / "run"),
        "data_dir": str(root / "data"),
        "tasks": tasks,
        "study": {
            "pool": POOL,
            "orders": {"random": 3},
            "seeds": [0, 1],
            "combine": {"methods": ["ties"], "weights": [0.5, 1.0], "densities": [0.5, 0.8], "mixture": True},
        },
        "targets": [
            {"task": "demo_nli", "languages": ["en", "x-lex", "x-scr"]},
            "demo_qa",
            {"task": "demo_ner", "training": {"max_steps": 50, "batch_size": 4}},
        ],
        "training": {**FAST, "max_steps": 40},
        "diagnostics": {"probe_sentences": 50},
    }
    raw.update(changes)
    return raw


@pytest.fixture(scope="module")
def copied_tasks(tmp_path_factory, demo_tasks) -> dict:
    """The demo tasks in a folder of their own: a test may remove a file."""
    root = tmp_path_factory.mktemp("rehearsal-data")
    tasks = {}
    for name, definition in demo_tasks.items():
        shutil.copytree(definition["data_dir"], root / name)
        tasks[name] = {**definition, "data_dir": str(root / name)}
    return tasks


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_encoder_dir, copied_tasks):
    root = tmp_path_factory.mktemp("clean")
    config = parse_config(_study(root, tiny_encoder_dir, copied_tasks))
    return root, config, rehearse(config, examples=2, batch_size=2, progress=False)


def test_a_clean_study_is_walked_whole_and_nothing_breaks(clean):
    root, config, findings = clean
    kinds = {o.kind for o in findings.outcomes}
    assert not findings.failures, format_findings(findings)
    assert not findings.missing and not findings.refused
    assert {
        "intermediate classification (full)",
        "intermediate qa (full)",
        "intermediate multiple_choice (full)",
        "mixture stage",
        "merge (ties)",
        "target classification (full)",
        "target qa (full)",
        "target tagging (full)",
        "diagnostics",
        "export classification (full)",
        "export qa (full)",
        "export tagging (full)",
        "report",
    } <= kinds
    # deduplicated: each intermediate task trained once (+ one chain of two), one merge, targets after k = 1
    counts = {kind: sum(1 for o in findings.outcomes if o.kind == kind) for kind in kinds}
    assert counts["intermediate classification (full)"] + counts["intermediate qa (full)"] == 3  # 2 singles + k = 2
    assert counts["merge (ties)"] == 1
    tagging = [o.label for o in findings.outcomes if o.kind == "target tagging (full)"]
    # dev and test after k = 1, the merge and the mixture
    assert len(tagging) == 6 and len(set(tagging)) == 3, tagging
    assert not would_break(findings)
    assert not (root / "run").exists(), "the rehearsal writes no run"
    assert all(o.peak.bytes > 0 for o in findings.outcomes)
    table = format_findings(findings)
    assert "Would fail: nothing." in table and "Disk for the full run's store" in table


def test_a_missing_language_file_is_listed_and_the_rest_still_rehearsed(tmp_path, tiny_encoder_dir, copied_tasks):
    tasks = {name: dict(d) for name, d in copied_tasks.items()}
    data = tmp_path / "nli"
    shutil.copytree(tasks["demo_nli"]["data_dir"], data)
    (data / "test-x-scr.jsonl").unlink()
    tasks["demo_nli"]["data_dir"] = str(data)
    raw = _study(tmp_path, tiny_encoder_dir, tasks, study={"pool": POOL[:1], "orders": {"singles": True}})
    config = parse_config(raw, require_data=False)
    findings = rehearse(config, progress=False)
    assert [(m.task, m.split, m.language) for m in findings.missing] == [("demo_nli", "test", "x-scr")]
    assert not findings.failures, format_findings(findings)
    assert would_break(findings)
    assert "demo_nli        test   x-scr" in format_findings(findings)


@pytest.mark.skipif(not (REAL_DATA / "tatoeba").is_dir(), reason="needs ../shared/data/real/tatoeba")
def test_a_retrieval_layer_beyond_the_encoders_depth_is_refused_and_the_rest_rehearsed(
    tmp_path, tiny_encoder_dir, copied_tasks
):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tatoeba").symlink_to(REAL_DATA / "tatoeba")
    (tmp_path / "data" / "bucc2018").symlink_to(REAL_DATA / "bucc2018")
    raw = _study(tmp_path, tiny_encoder_dir, copied_tasks, study={"pool": POOL[:1], "orders": {"singles": True}})
    raw["targets"] = ["demo_nli", {"task": "tatoeba", "languages": ["de", "fr"]}, "bucc2018"]
    findings = rehearse(parse_config(raw, require_data=False), progress=False)
    assert not findings.failures and not findings.refused, format_findings(findings)
    retrieval = [o.label for o in findings.outcomes if o.kind == "retrieval"]
    assert set(retrieval) == {"tatoeba after k1-demo_paraphrase", "bucc2018 after k1-demo_paraphrase"}
    # the samples hold real files' first lines; BUCC's other languages have no files here: listed, left out
    assert {(m.task, m.language) for m in findings.missing} == {
        ("bucc2018", "de"),
        ("bucc2018", "fr"),
        ("bucc2018", "ru"),
    }

    raw["targets"][1]["embedding"] = {"layer": 7}  # the tiny encoder has 2 layers
    findings = rehearse(parse_config(raw, require_data=False), progress=False)
    assert len(findings.refused) == 1 and findings.refused[0].startswith("targets[1].embedding.layer"), findings.refused
    retrieval = {o.label for o in findings.outcomes if o.kind == "retrieval"}
    assert retrieval == {"bucc2018 after k1-demo_paraphrase"}  # tatoeba left out: the real run refuses it up front
    assert "target classification (full)" in {o.kind for o in findings.outcomes}
    assert would_break(findings)
    assert "refused before training: targets[1].embedding.layer" in format_findings(findings)


def test_a_chain_mode_whose_targets_cannot_be_exported_is_reported(tmp_path, tiny_encoder_dir, copied_tasks):
    raw = _study(
        tmp_path,
        tiny_encoder_dir,
        copied_tasks,
        study={"pool": POOL[:1], "orders": {"singles": True}},
        chain_modes=["full", "adapter-stacked"],
        diagnostics=None,
    )
    raw["targets"] = ["demo_nli"]
    findings = rehearse(parse_config(raw), progress=False)
    failed = {o.kind: o.error for o in findings.failures}
    assert set(failed) == {"export classification (adapter-stacked)"}, format_findings(findings)
    assert "export classification (full)" in {o.kind for o in findings.outcomes}
    assert "export classification (adapter-stacked)" in format_findings(findings)


def test_memory_over_a_stated_limit_is_marked(clean):
    _, _, findings = clean
    small = type(findings)(**{**findings.__dict__, "memory_limit": 1_000_000})
    assert small.over_memory() and would_break(small)
    assert "OVER" in format_findings(small)


def test_the_cli_prints_the_table_and_exits_1_when_something_would_break(tmp_path, tiny_encoder_dir, copied_tasks):
    from typer.testing import CliRunner

    raw = _study(tmp_path, tiny_encoder_dir, copied_tasks, study={"pool": POOL[:1], "orders": {"singles": True}})
    raw["targets"] = ["demo_nli"]
    raw.pop("diagnostics")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--rehearse", "--no-progress", "--memory-limit", "0.001"])
    assert result.exit_code == 1, result.output
    assert "OVER" in result.output and "Rehearsal of rehearsed" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, ["run", str(path), "--rehearse", "--no-progress", "--memory-limit", "1000"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("spec", [s for s in CATALOGUE if s.trainable], ids=lambda s: s.name)
def test_stand_ins_are_valid_examples_of_every_built_in_task(spec):
    if spec.open_label_set:  # CCG: its tags come from labels.txt; the rehearsal writes stand-in tags there
        spec = dataclasses.replace(spec, labels=STAND_IN_TAGS)
    examples = stand_in_examples(spec, 5, ["one two three four", "five six seven"], words=300)
    assert all(validate_example(example, spec) is None for example in examples)
    assert all(len(json.dumps(example)) > 300 for example in examples)


def test_stand_ins_follow_a_user_tasks_schema(demo_tasks):
    for name, definition in demo_tasks.items():
        spec = TaskDefinition(**definition).to_spec(name)
        if spec.kind != "retrieval":
            assert all(validate_example(e, spec) is None for e in stand_in_examples(spec, 3, ["a b c"], words=40))


def test_a_killed_rehearsals_scratch_is_removed_by_the_next(tmp_path, tiny_encoder_dir, copied_tasks):
    from xstilts.rehearsal import SCRATCH_PREFIX

    dead = tmp_path / "scratch" / f"{SCRATCH_PREFIX}{2**22 + 7}-abc"  # above Linux's largest process id
    alive = tmp_path / "scratch" / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    for directory in (dead, alive):
        (directory / "run").mkdir(parents=True)
    raw = _study(tmp_path, tiny_encoder_dir, copied_tasks, study={"pool": POOL[:1], "orders": {"singles": True}})
    raw["targets"] = ["demo_nli"]
    raw.pop("diagnostics")
    rehearse(parse_config(raw), progress=False, scratch_parent=tmp_path / "scratch")
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == [alive.name], "its own scratch is removed too"


def test_an_enclosing_piece_reports_the_highest_peak_of_the_pieces_inside_it(tmp_path):
    import numpy as np

    from xstilts.rehearsal import Rehearsal

    rehearsal = Rehearsal(None, tmp_path)
    with rehearsal.attempt("whole run", "outer"):
        with rehearsal.attempt("inner", "big"):
            block = np.ones(400_000_000 // 8)  # 400 MB touched
            del block
        with rehearsal.attempt("inner", "small"):
            pass
    inner_big, inner_small, outer = rehearsal.outcomes
    assert outer.peak.bytes >= inner_big.peak.bytes >= inner_small.peak.bytes
    if inner_big.peak.exact:  # Linux: each piece's own high-water mark
        assert inner_big.peak.bytes - inner_small.peak.bytes > 300_000_000


def test_a_failing_piece_is_recorded_and_the_rehearsal_goes_on(tmp_path):
    from xstilts.rehearsal import Rehearsal

    rehearsal = Rehearsal(None, tmp_path)
    with rehearsal.attempt("target qa (full)", "xquad after k1-mnli") as failed:
        raise OSError(28, "No space left on device")
    assert failed and rehearsal.outcomes[0].error == "OSError: [Errno 28] No space left on device"
    with pytest.raises(KeyboardInterrupt), rehearsal.attempt("stage", "k1"):
        raise KeyboardInterrupt
