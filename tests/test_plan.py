"""The planner: chains of a study compile into a graph where identical prefixes are one node."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import yaml

import xstilts
from xstilts.config import parse_config
from xstilts.rundir.store import StageStore
from xstilts.study.plan import build_plan, count, expand_chains

POOL = [f"task{i}" for i in range(1, 10)]


def study_config(tmp_path: Path, encoder: Path, demo_tasks: dict, **study) -> dict:
    nli = demo_tasks["demo_nli"]
    tasks = {name: {**demo_tasks["demo_paraphrase"]} for name in POOL}
    tasks["demo_nli"] = nli
    return {
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": tasks,
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "study": {"pool": POOL, **study},
    }


def test_three_random_orders_of_nine_tasks(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = study_config(
        tmp_path, tiny_encoder_dir, demo_tasks, orders={"random": 3, "random_seed": 11}, max_chain_length=9
    )
    config = parse_config(raw)
    registry = config.registry()
    plan = build_plan(config, registry, StageStore(tmp_path / "run" / "stages"))
    orders = [order for _, order, _ in plan.chains]
    rng = random.Random(11)
    assert orders == [tuple(rng.sample(POOL, 9)) for _ in range(3)], "the study's seeded permutations"
    distinct_prefixes = {order[:k] for order in orders for k in range(1, 10)}
    numbers = count(plan, config, registry)
    assert numbers["stages to train"] == len(distinct_prefixes) == len(plan.stages)
    assert numbers["stages a naive per-chain run trains"] == 3 * 45
    assert numbers["prefixes evaluated"] == 3 + len(distinct_prefixes), (
        "k = 0 under three seeds (study.baseline_runs), then every distinct prefix"
    )
    assert numbers["target fine-tunes"] == numbers["prefixes evaluated"]
    assert numbers["evaluations (target x language)"] == 2 * numbers["prefixes evaluated"]
    assert numbers["examples x epochs, stages"] == len(distinct_prefixes) * 48 * 3, "48 examples x 3 epochs per stage"
    assert not (tmp_path / "run").exists(), "planning writes nothing"


def test_identity_rules(tmp_path, tiny_encoder_dir, demo_tasks):
    orders = {"explicit": [["task1", "task2", "task3"], ["task1", "task2", "task4"], ["task2", "task1"]]}
    config = parse_config(study_config(tmp_path, tiny_encoder_dir, demo_tasks, orders=orders, seeds=[0, 1]))
    plan = build_plan(config, config.registry(), StageStore(tmp_path / "stages"))
    by_seed = {seed: [prefixes for s, _, prefixes in plan.chains if s == seed] for seed in (0, 1)}
    first, second, swapped = by_seed[0]
    assert first[:3] == second[:3] and first[3] != second[3], "same prefix, same node; different task, different node"
    assert swapped[1] != first[1] and swapped[2] != first[2], "order matters"
    assert all(a != b for a, b in zip(by_seed[0][0][1:], by_seed[1][0][1:])), "a different seed makes different nodes"
    assert by_seed[0][0][0] == by_seed[1][0][0], "the pretrained encoder is one node for all seeds"
    assert len(plan.stages) == 2 * (3 + 1 + 2)

    raw = study_config(tmp_path, tiny_encoder_dir, demo_tasks, orders=orders)
    raw["tasks"]["task3"] = {**raw["tasks"]["task3"], "training": {"learning_rate": 2e-5}}
    changed = build_plan(parse_config(raw), parse_config(raw).registry(), StageStore(tmp_path / "stages"))
    before = build_plan(
        parse_config(study_config(tmp_path, tiny_encoder_dir, demo_tasks, orders=orders)),
        config.registry(),
        StageStore(tmp_path / "stages"),
    )
    assert changed.chains[0][2][:3] == before.chains[0][2][:3] and changed.chains[0][2][3] != before.chains[0][2][3], (
        "only the changed node and its descendants change"
    )


def test_orders_singles_and_cli(tmp_path, tiny_encoder_dir, demo_tasks):
    raw = study_config(
        tmp_path,
        tiny_encoder_dir,
        demo_tasks,
        orders={"singles": True, "explicit": [["task9", "task1"]]},
        max_chain_length=2,
    )
    config = parse_config(raw)
    chains = [tuple(s.task for s in stages) for _, stages in expand_chains(config)]
    assert chains == [("task9", "task1")] + [(t,) for t in POOL]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, "-m", "xstilts", "plan", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^stages to train +10$", result.stdout, re.M)
    assert re.search(r"^stages a naive per-chain run trains +12$", result.stdout, re.M)
    assert "└─ task9" in result.stdout and "  └─ task1" in result.stdout

    raw["chain"] = ["task1"]
    raw["study"]["orders"] = {"explicit": [["task1", "nope"]]}
    path.write_text(yaml.safe_dump(raw))
    bad = subprocess.run(
        [sys.executable, "-m", "xstilts", "plan", str(path)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2
    assert (
        "chain: give either `chain` or `study`, not both" in bad.stderr
        and "study.orders.explicit[0][1]: 'nope' is not in the study's pool" in bad.stderr
    )


def test_a_small_study_runs_each_shared_prefix_once(tmp_path, tiny_encoder_dir, demo_tasks):
    import json

    raw = study_config(
        tmp_path, tiny_encoder_dir, demo_tasks, orders={"explicit": [["task1", "task2"], ["task1", "task3"]]}
    )
    raw["training"] = {"max_steps": 2, "batch_size": 8, "eval_every_steps": 2, "eval_examples": 8, "max_length": 48}
    raw["study"]["baseline_runs"] = 1  # k = 0 once: this test counts the shared prefixes
    summary = xstilts.run(parse_config(raw), progress=False)
    assert sorted(summary["chains"]) == ["k0-pretrained", "k1-task1", "k2-task1+task2", "k2-task1+task3"]
    stages = [json.loads(p.read_text()) for p in (tmp_path / "run" / "stages").glob("*/stage.json")]
    assert sorted(s["task"] for s in stages if s["role"] == "intermediate") == ["task1", "task2", "task3"], (
        "task1 trained once"
    )
    assert len([s for s in stages if s["role"] == "target"]) == 4
