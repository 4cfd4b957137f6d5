"""A study that searches: greedy and beam search over a pool, reusing the store, judged against exhaustive."""

from __future__ import annotations

import json
import math

import pytest
import yaml

import xstilts
from xstilts.config import ConfigError, load_config, parse_config
from xstilts.results.search import exhaustive_stage_count

pytestmark = pytest.mark.slow
POOL = ["task1", "task2", "task3"]
TRAINING = {"max_steps": 3, "batch_size": 8, "eval_every_steps": 3, "eval_examples": 8, "max_length": 64}


def search_config(tmp_path, encoder, demo_tasks, targets=None, seeds=None, **search) -> dict:
    tasks = {name: {**demo_tasks["demo_paraphrase"]} for name in POOL}
    tasks["demo_nli"] = demo_tasks["demo_nli"]
    study = {"pool": POOL, "max_chain_length": 2, "search": search, "baseline_runs": 1}
    return {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": tasks,
        "targets": targets or [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": {**TRAINING, "learning_rate": 1e-3},
        "study": {**study, "seeds": list(seeds)} if seeds is not None else study,
    }


def stage_dirs(run) -> set[str]:
    return {p.name for p in (run / "stages").iterdir() if p.name.split("-", 1)[1] in POOL}


def test_exhaustive_counts_and_search_bounds(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    from xstilts.cli import main
    from xstilts.study.search import most_stages

    assert exhaustive_stage_count(3, 2) == 3 + 6
    assert exhaustive_stage_count(4, 3) == 4 + 12 + 24
    assert exhaustive_stage_count(9, 9) == sum(math.perm(9, k) for k in range(1, 10))
    assert most_stages(4, 3, width=1, budget=None) == 4 + 3 + 2
    assert most_stages(4, 3, width=2, budget=None) == 4 + 6 + 4
    assert most_stages(4, 3, width=2, budget=13) == 13
    assert most_stages(3, 2, width=5, budget=None) == 9, "never more than the exhaustive study"
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="greedy")))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stages to train, at most                 5" in out and "stages of the exhaustive study            9" in out


def test_greedy_search_then_exhaustive_reuses_its_stages(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="greedy")
    xstilts.run(parse_config(raw), progress=False)
    run = tmp_path / "run"
    record = json.loads((run / "search.json").read_text())
    first, second = record["rounds"]
    assert [c["chain"] for c in first["candidates"]] == [[t] for t in POOL]
    kept = [c["chain"] for c in first["candidates"] if c["kept"]]
    assert len(kept) == 1, "greedy keeps one prefix"
    best_first = max(first["candidates"], key=lambda c: c["dev_score"])
    assert kept == [best_first["chain"]], "the best dev score is kept"
    assert [c["chain"][:1] for c in second["candidates"]] == [kept[0]] * 2 and len(second["candidates"]) == 2
    assert record["stages_trained"] == 3 + 2 == len(stage_dirs(run))
    assert record["exhaustive_stages"] == 9 and record["target_fine_tunes"] == (1 + 5) * 1
    explored = [c for r in record["rounds"] for c in r["candidates"]]
    found = max([*explored, {"chain": [], "dev_score": None}], key=lambda c: c["dev_score"] or -1)
    assert record["found"] == found["chain"] or record["found"] == [], "the best dev score of all explored"

    before = {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    xstilts.run(parse_config(raw), progress=False)  # again: nothing is trained twice
    assert {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()} == before

    exhaustive = {**raw, "study": {**raw["study"], "orders": {"all": True}}}
    del exhaustive["study"]["search"]
    xstilts.run(parse_config(exhaustive), progress=False)
    assert len(stage_dirs(run)) == 9 and before.keys() <= {p.name for p in (run / "stages").iterdir()}
    report = xstilts.write_report(run).read_text()
    assert "## Search" in report and "cost: 5 intermediate stages and 6 target fine-tunes, against 9 and 10" in report
    assert "exhaustive study present (10 chains): its best chain chosen on dev is" in report


def test_beam_search_keeps_width_prefixes_and_respects_the_budget(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="beam", width=2, budget=6)
    xstilts.run(parse_config(raw), progress=False)
    record = json.loads((tmp_path / "run" / "search.json").read_text())
    first = record["rounds"][0]
    kept = [c for c in first["candidates"] if c["kept"]]
    assert 1 <= len(kept) <= 2
    assert record["stages_trained"] == 6 == len(stage_dirs(tmp_path / "run")), "3, then 3 of the 4 children"
    assert len(record["rounds"][1]["candidates"]) == 3


def test_search_config_errors(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="beam")
    raw["study"]["orders"] = {"random": 2}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="a searching study grows its own chains: remove `orders` or `search`"):
        load_config(path)
    raw["study"]["orders"] = {}
    raw["study"]["search"] = {"strategy": "annealing"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="study.search.strategy: Input should be 'greedy' or 'beam'"):
        load_config(path)
    raw["study"] = {"pool": [f"t{i}" for i in range(9)], "orders": {"all": True}}
    raw["tasks"].update({f"t{i}": raw["tasks"]["task1"] for i in range(9)})
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="every ordering of 9 of 9 tasks is 362880 chains"):
        load_config(path)


def test_estimate_guided_search_fine_tunes_targets_only_for_the_chain_found(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="greedy", guide="estimate")
    raw["diagnostics"] = {"probe_sentences": 20, "estimate_examples": 40, "forgetting": False, "max_length": 64}
    xstilts.run(parse_config(raw), progress=False)
    run = tmp_path / "run"
    record = json.loads((run / "search.json").read_text())
    assert record["guide"] == "estimate" and record["estimator"] == "logme"
    scores = [c["estimate_score"] for c in record["rounds"][0]["candidates"]]
    assert all(0.0 <= s <= 1.0 for s in scores) and record["stages_trained"] == 5
    kept = [c["chain"] for c in record["rounds"][0]["candidates"] if c["kept"]]
    assert kept == [max(record["rounds"][0]["candidates"], key=lambda c: c["estimate_score"])["chain"]]
    fine_tuned = [p for p in (run / "stages").iterdir() if p.name.endswith("-demo_nli")]
    assert len(fine_tuned) == record["target_fine_tunes"] == (2 if record["found"] else 1), "k = 0 and the chain found"
    assert record["found_dev_score"] is not None, "the chain found is measured on dev"
    assert "transfer estimates (logme)" in xstilts.write_report(run).read_text()

    raw["diagnostics"] = None
    with pytest.raises(ConfigError, match="guide: estimate ranks by the diagnostics' estimates"):
        parse_config(raw)


def test_evaluate_on_limits_the_target_fine_tunes(tmp_path, tiny_encoder_dir, demo_tasks):
    from xstilts.rundir.store import StageStore
    from xstilts.study.plan import build_plan, evaluated_prefixes

    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks)
    raw["study"] = {
        "pool": POOL,
        "orders": {"all": True},
        "max_chain_length": 2,
        "evaluate_on": [[], ["task2", "task1"]],
    }
    config = parse_config(raw)
    plan = build_plan(config, config.registry(), StageStore(tmp_path / "stages"))
    assert len(plan.stages) == 9
    assert sorted(plan.nodes[i].tasks for i, _ in evaluated_prefixes(plan, config)) == [
        (),
        (),
        (),
        ("task2", "task1"),
    ], "k = 0 under three seeds (study.baseline_runs), and the one chain asked for"
    raw["study"]["evaluate_on"] = [["task9"]]
    with pytest.raises(ConfigError, match="study.evaluate_on\\[0\\]\\[0\\]: 'task9' is not in the study's pool"):
        parse_config(raw)
