"""The combination study: merges and a mixture of each task set of a study, beside its sequential orders.

A study with `study.combine` plans, per set and seed, the merges of its single-task stages over a grid and one
mixture stage; targets are fine-tuned on each; the report compares them with the orders, choosing merge settings
and the best order on dev only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fast_training import FAST

import xstilts
from xstilts.config import parse_config
from xstilts.errors import ConfigError
from xstilts.results import combination
from xstilts.results import statistics as st
from xstilts.rundir.layout import PARTIAL_PREFIX
from xstilts.rundir.runs import RunDirectory
from xstilts.settings import LatencySettings
from xstilts.study.plan import build_plan, count, run_plan

POOL = ["demo_paraphrase", "demo_swag"]


def _raw(root: Path, tiny_encoder_dir, demo_tasks, **combine) -> dict:
    return {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(root / "run"),
        "tasks": demo_tasks,
        "study": {
            "pool": POOL,
            "orders": {"explicit": [POOL, POOL[::-1]]},
            "seeds": [0, 1],
            "baseline_runs": 2,
            "combine": {"methods": ["task_arithmetic", "ties"], "weights": [0.5, 1.0], "densities": [0.5], **combine},
        },
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": FAST,
    }


@pytest.fixture(scope="module")
def combined_run(tmp_path_factory, tiny_encoder_dir, demo_tasks):
    root = tmp_path_factory.mktemp("combination")
    config = parse_config(_raw(root, tiny_encoder_dir, demo_tasks))
    summary = xstilts.run(config, progress=False)
    return config, summary, root / "run"


def test_the_plan_holds_each_sets_merges_over_the_grid_and_its_mixture(tmp_path, tiny_encoder_dir, demo_tasks):
    config = parse_config(_raw(tmp_path, tiny_encoder_dir, demo_tasks))
    registry = config.registry()
    run = RunDirectory(config.output_dir)
    plan = build_plan(config, registry, run.store)
    # one set ({paraphrase, swag}) x 2 seeds: task arithmetic at 2 weights, TIES at 2 weights x 1 density
    assert len(plan.merges) == 2 * (2 + 2)
    mixtures = [n for n in plan.stages if n.combination]
    assert len(mixtures) == 2 and all(n.tasks == tuple(sorted(POOL)) for n in mixtures)
    # merges are built from the chains' own k = 1 stages: no stage is added for them
    singles = {(n.tasks, n.seed): n.identity for n in plan.stages if n.chain_length == 1 and not n.combination}
    for merge in plan.merges:
        assert {(t,) for t in merge.tasks} == {(t,) for _, t in merge.merge.members}
        assert all(identity == singles[((t,), merge.seed)] for identity, t in merge.merge.members)
    counts = count(plan, config, registry)
    assert counts["merges to build"] == 8
    assert counts["combination stages to train"] == 2
    assert counts["target fine-tunes on merges and mixtures"] == 10
    record = run_plan(plan, config, registry, run)
    labels = {e.chain_label for e in record.evaluations if e.combination}
    assert "ties-w0.5-d0.5-k2-demo_paraphrase+demo_swag-seed1" in labels
    assert "mixture-k2-demo_paraphrase+demo_swag-seed0" in labels


def test_single_task_stages_the_chains_lack_are_added_for_the_merges(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = _raw(tmp_path, tiny_encoder_dir, demo_tasks)
    raw["study"]["orders"] = {"explicit": [POOL]}  # swag is never first: its single-task stage is not in a chain
    config = parse_config(raw)
    plan = build_plan(config, config.registry(), RunDirectory(config.output_dir).store)
    singles = {n.tasks for n in plan.stages if n.chain_length == 1 and not n.combination}
    assert singles == {("demo_paraphrase",), ("demo_swag",)}
    evaluated = {plan.nodes[i].tasks for i, _ in plan.combined}
    assert ("demo_swag",) not in evaluated  # added for the merges, not evaluated as a chain


@pytest.mark.parametrize(
    ("combine", "message"),
    [
        ({"sets": [["demo_paraphrase", "demo_nope"]]}, "'demo_nope' is not a task of the study's pool"),
        ({"sets": [["demo_paraphrase"]]}, "a set holds two or more different tasks"),
        ({"methods": ["magic"]}, "study.combine.methods[0]: Input should be 'task_arithmetic'"),
        ({"methods": [], "mixture": False}, "nothing to combine"),
        ({"densities": [1.5]}, "every value must be in (0, 1]"),
        ({"weights": [0.5, 0.5]}, "a value appears twice"),
    ],
)
def test_bad_combine_settings_are_named(tmp_path, tiny_encoder_dir, demo_tasks, combine, message):
    with pytest.raises(ConfigError) as error:
        parse_config(_raw(tmp_path, tiny_encoder_dir, demo_tasks, **combine))
    assert message in str(error.value)


def test_a_combined_run_evaluates_every_merge_and_reports_the_comparison(combined_run):
    config, summary, run_dir = combined_run
    run = RunDirectory(run_dir)
    rows = run.result_rows()
    combined = [r for r in rows if r.get("combination")]
    assert {r["combination"]["method"] for r in combined} == {"task_arithmetic", "ties", "mixture"}
    # the study's own analysis leaves them out: k = 2 holds the two orders x two seeds only
    test = summary["effects"]["full"]["test"]
    assert test["targets"]["demo_nli"]["runs"][2] == 4
    sets = test["combination"]["demo_nli"]
    assert [s["tasks"] for s in sets] == [sorted(POOL)]
    arms = {arm["method"]: arm for arm in sets[0]["arms"]}
    assert set(arms) == {combination.BEST_ORDER, combination.MEAN_ORDER, "task_arithmetic", "ties", "mixture"}
    assert arms[combination.MEAN_ORDER]["runs"] == 4 and arms["ties"]["runs"] == 2
    for arm in arms.values():
        assert arm["score"]["lower"] is not None and arm["gain"]["n"] == arm["runs"] + 2
    assert arms[combination.MEAN_ORDER]["vs_mean_order"]["estimate"] == pytest.approx(0.0, abs=1e-9)
    assert sets[0]["choices"]["ties"]["chosen"] in ("lambda 0.5, density 0.5", "lambda 1, density 0.5")
    assert sets[0]["orders"] == 2 and sets[0]["order_spread"] is not None
    merges = [json.loads(p.read_text()) for p in run.store.root.glob("*merge_*/stage.json")]
    assert len(merges) == 8 and all(m["role"] == "merge" for m in merges)


def test_a_killed_merge_is_built_again_and_nothing_else_is_retrained(combined_run, monkeypatch):
    import xstilts.study.merge as merge_module

    config, _, run_dir = combined_run
    store = RunDirectory(run_dir).store
    merge_dir = next(store.root.glob("*merge_ties"))
    shutil.rmtree(merge_dir)  # this merge has yet to be built when the run is killed
    before = {p.parent.name: p.stat().st_mtime_ns for p in store.root.glob("*/stage.json")}

    def killed(*args, **kwargs):  # dies after writing part of the merged encoder, before its record
        raise KeyboardInterrupt

    monkeypatch.setattr(merge_module, "save_encoder", killed)
    with pytest.raises(KeyboardInterrupt):
        xstilts.run(config, progress=False)
    assert not merge_dir.exists() and list(store.root.glob(f"{PARTIAL_PREFIX}{merge_dir.name}"))
    monkeypatch.undo()
    xstilts.run(config, progress=False)
    record = json.loads((merge_dir / "stage.json").read_text())
    assert record["role"] == "merge" and not list(store.root.glob(f"{PARTIAL_PREFIX}*"))
    after = {p.parent.name: p.stat().st_mtime_ns for p in store.root.glob("*/stage.json")}
    assert {name for name in before if after.get(name) != before[name]} == set(), "nothing else was rebuilt"


def _scores(labels, chains, seeds, points, replicates=None) -> st.ModelScores:
    points = np.asarray(points, dtype=float)
    replicates = points[:, None] + np.zeros((len(points), 50)) if replicates is None else replicates
    return st.ModelScores(list(labels), [tuple(c) for c in chains], list(seeds), points, replicates)


def test_merge_settings_and_the_best_order_are_chosen_on_dev_never_on_test():
    ab, ba = ("a", "b"), ("b", "a")
    study = dict(
        labels=["k0-s0", "k0-s1", "ab-s0", "ab-s1", "ba-s0", "ba-s1"],
        chains=[(), (), ab, ab, ba, ba],
        seeds=[0, 1, 0, 1, 0, 1],
    )
    merges = dict(labels=["w0.5-s0", "w0.5-s1", "w1-s0", "w1-s1"], chains=[ab] * 4, seeds=[0, 1, 0, 1])
    combos = {
        "w0.5-s0": {"method": "ties", "weight": 0.5, "density": 0.5},
        "w0.5-s1": {"method": "ties", "weight": 0.5, "density": 0.5},
        "w1-s0": {"method": "ties", "weight": 1.0, "density": 0.5},
        "w1-s1": {"method": "ties", "weight": 1.0, "density": 0.5},
    }
    # dev prefers order b → a and lambda 0.5; test plants the opposite (a → b and lambda 1 far better)
    dev = _scores(**study, points=[50, 50, 60, 60, 70, 70])
    test = _scores(**study, points=[50, 51, 90, 91, 60, 61])
    dev_merges = _scores(**merges, points=[65, 66, 55, 56])
    test_merges = _scores(**merges, points=[55, 56, 95, 96])
    (found,) = combination.analyse_target(test, test_merges, dev, dev_merges, combos)
    arms = {arm["method"]: arm for arm in found["arms"]}
    assert arms[combination.BEST_ORDER]["setting"] == "b → a"
    assert arms[combination.BEST_ORDER]["score"]["estimate"] == pytest.approx(60.5)
    assert found["choices"]["ties"]["chosen"] == "lambda 0.5, density 0.5"
    assert arms["ties"]["score"]["estimate"] == pytest.approx(55.5)
    assert arms["ties"]["vs_best_order"]["estimate"] == pytest.approx(-5.0)
    assert arms["ties"]["vs_mean_order"]["estimate"] == pytest.approx(55.5 - 75.5)
    assert found["order_spread"] == pytest.approx(np.std([90.5, 60.5], ddof=1))
    # without dev scores nothing is chosen, and the report says why
    (blind,) = combination.analyse_target(test, test_merges, None, None, combos)
    assert combination.BEST_ORDER not in {arm["method"] for arm in blind["arms"]}
    assert "never made on test" in blind["choices"]["ties"]["why_not"]


def test_the_report_shows_the_combination_table_costs_latency_and_plot(combined_run):
    from xstilts.analysis.report import write_report_files
    from xstilts.study.latency import measure_run

    _, _, run_dir = combined_run
    latency = measure_run(run_dir, LatencySettings(batch_sizes=[2], lengths=[16], repetitions=3, warmup=1), False)
    timed = [m for g in latency["groups"] for m in g["models"] if m.get("combination")]
    assert sorted(m["combination"] for m in timed) == ["mixture", "task_arithmetic", "ties"]  # one model per method
    written = write_report_files(run_dir)
    report = written.path.read_text()
    assert "## Other ways to combine the same tasks (test, full chains)" in report
    table = report.split("## Other ways to combine the same tasks")[1].split("\n## ")[0]
    assert "| demo_nli | demo_paraphrase+demo_swag (2) | ties |" in table
    assert "lambda" in table and "[" in table  # a setting chosen on dev, intervals
    ties_row = next(line for line in table.splitlines() if "| ties |" in line)
    cells = [cell.strip() for cell in ties_row.strip("|").split("|")]
    assert int(cells[9]) == 2 * 2  # the two single-task stages' two optimizer steps each; the merge trains nothing
    assert cells[11] != "-"  # its latency was measured
    assert RunDirectory(run_dir).plot_file("cost").is_file()
    assert "## How the combinations were chosen and what they cost (full chains)" in report


def test_a_combined_model_is_timed_but_left_out_of_the_chains_latency_slope():
    from xstilts.study.latency import TimedModel, summarize_models

    settings = LatencySettings(bootstrap=200)
    times = {0: 1.0, 1: 1.0, 2: 1.0}
    chain = [TimedModel(f"k{k}", k, f"k{k}", seconds=[times[k]] * 9 + [times[k] * 1.01]) for k in times]
    twin = TimedModel("k0 (twin)", 0, "k0", seconds=[1.0] * 10)
    slow = TimedModel("ties", 2, "ties-k2", seconds=[3.0] * 10, combination="ties")
    group = summarize_models([*chain, twin, slow], settings, 1, 8)
    assert group["slope_per_task"][0] == pytest.approx(0.0, abs=1e-9)
    ties = next(m for m in group["models"] if m["name"] == "ties")
    assert ties["combination"] == "ties" and ties["ratio_to_k0"] == pytest.approx(3.0, rel=0.02)


def test_an_export_of_a_merged_chain_reproduces_xstilts_predictions(combined_run, tmp_path, demo_registry, capsys):
    from transformers import pipeline

    from xstilts.cli import main
    from xstilts.data.examples import load_examples
    from xstilts.readers.jsonl import read_jsonl

    _, _, run_dir = combined_run
    label = "ties-w1-d0.5-k2-demo_paraphrase+demo_swag-seed1"
    out = tmp_path / "merged-nli"
    assert main(["export", str(run_dir), "--chain", label, "--target", "demo_nli", "-o", str(out)]) == 0
    assert f"after {label}" in capsys.readouterr().out
    (stage,) = (run_dir / "by-chain" / label).glob("demo_nli")
    classify = pipeline("text-classification", model=str(out), device=-1)
    spec = demo_registry.get("demo_nli")
    for language in ("en", "x-lex"):
        ours = [row["prediction"] for _, row in read_jsonl(stage.resolve() / "predictions" / f"test-{language}.jsonl")]
        examples = load_examples(spec, "test", language)
        theirs = [r["label"] for r in classify([{"text": e["text_a"], "text_pair": e["text_b"]} for e in examples])]
        assert theirs == ours, language


def test_status_counts_merges_apart_from_trained_stages(combined_run, capsys):
    from xstilts.cli import main

    _, _, run_dir = combined_run
    assert main(["status", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    # per seed: the two orders' k = 1 stages (the singles the merges use) and k = 2 stages, and a mixture
    assert "intermediate stages: 10 done" in printed and "merges: 8 built of 8" in printed
    assert "merged (ties, lambda 0.5, density 0.5)" in printed


def test_a_study_of_single_tasks_must_name_its_sets(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = _raw(tmp_path, tiny_encoder_dir, demo_tasks)
    raw["study"]["orders"] = {"singles": True}
    raw["study"]["max_chain_length"] = 1
    with pytest.raises(ConfigError, match=r"shorter than 2 tasks: name the sets to combine \(combine.sets\)"):
        parse_config(raw)
    raw["study"]["combine"]["sets"] = [POOL]
    config = parse_config(raw)  # the paper's design: singles, merged by name
    plan = build_plan(config, config.registry(), RunDirectory(config.output_dir).store)
    assert len(plan.merges) == 2 * 4 and not [n for n in plan.stages if n.chain_length == 2 and not n.combination]
