"""A study that searches the space of chains instead of enumerating it (`study.search` in the config).

Greedy or beam search grows chains one task at a time from the pool: each round extends the kept prefixes
by every pool task not in them yet, trains the new stages, fine-tunes and evaluates the targets after them,
and keeps the `width` best new prefixes by dev score (greedy: the one best). A prefix whose dev score is
below the best found so far beyond its paired 95% interval is not extended. The search stops at K tasks, at
the stage budget, or when no prefix is left to extend.

Every round is an ordinary run of the same run directory whose explicit orders are the chains explored so
far: the plan, the stage store and the evaluations are the study's own, so shared prefixes are trained once,
a killed search resumes, and a later exhaustive study of the same pool reuses every stage the search
trained. `RUN_DIR/search.json` records the rounds, what each candidate scored, the chain found and its cost.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xstilts.config import ExperimentConfig, OrdersConfig
from xstilts.results.effects import units_loader
from xstilts.results.search import Chain, against, chain_name, chain_names, dev_scores, exhaustive_stage_count
from xstilts.rundir.runs import RunDirectory
from xstilts.study.runner import run_once

log = logging.getLogger(__name__)


def run_search(config: ExperimentConfig, progress: bool = True) -> dict[str, Any]:
    """Search the chains of `config.study.pool`; returns (and writes) the search record."""
    study, search = config.study, config.study.search
    limit = study.max_chain_length if study.max_chain_length is not None else len(study.pool)
    width = 1 if search.strategy == "greedy" else search.width
    run = RunDirectory(config.output_dir)
    explored: list[Chain] = [()]
    beam: list[Chain] = [()]
    rounds: list[dict[str, Any]] = []
    affordable = prefix_budget(config)
    while beam and len(beam[0]) < limit:
        candidates = [prefix + (task,) for prefix in beam for task in study.pool if task not in prefix]
        candidates = [c for c in dict.fromkeys(candidates) if c not in explored]
        if affordable is not None:
            candidates = candidates[: max(0, affordable - (len(explored) - 1))]
        if not candidates:
            break
        explored += candidates
        by_estimate = search.guide == "estimate"  # then only k = 0 is fine-tuned until the chain is found
        run_once(_round_config(config, explored, limit, [[]] if by_estimate else None), progress=progress)
        judge = _judge_by_estimate if by_estimate else _judge_round
        beam, record = judge(candidates, explored, width, run, config)
        rounds.append(record)
        log.info(
            "search round %d: kept %s (best so far: %s)",
            len(rounds),
            chain_names(beam),
            chain_name(tuple(record["best_so_far"])),
        )
    if search.guide == "estimate":
        ranked = estimate_scores(run.read_diagnostics(), config)
        found = max(explored, key=lambda chain: ranked.get(chain, -math.inf))
        run_once(_round_config(config, explored, limit, [[], list(found)]), progress=progress)
    scores = dev_scores(run.result_rows(), config)
    if search.guide == "dev":
        found = max(explored, key=lambda chain: scores.get(chain, -math.inf))
    record = {
        "strategy": search.strategy,
        "width": width,
        "budget": search.budget,
        "guide": search.guide,
        "pool": list(study.pool),
        "max_chain_length": limit,
        "rounds": rounds,
        "found": list(found),
        "found_dev_score": scores.get(found),
        **_costs(config, len(explored) - 1, exhaustive_stage_count(len(study.pool), limit)),
    }
    if search.guide == "estimate":  # the fine-tunes: k = 0 and the chain found, not every explored prefix
        runs = len(study.seeds) * len(config.chain_modes)
        record["target_fine_tunes"] = (1 + bool(found)) * _trainable_targets(config) * runs
        record["estimator"] = config.diagnostics.estimators[0]
    run.write_search(record)
    return record


def _judge_round(
    candidates: Sequence[Chain], explored: Sequence[Chain], width: int, run: RunDirectory, config: ExperimentConfig
) -> tuple[list[Chain], dict[str, Any]]:
    """The prefixes to extend next (the `width` best by dev score among those not below the best beyond their
    interval) and the round's record."""
    rows = run.result_rows()
    scores = dev_scores(rows, config)
    best = max(explored, key=lambda chain: scores.get(chain, -math.inf))
    judged = {c: against(c, best, rows, units_loader(run.root), config) for c in candidates}
    alive = [c for c in candidates if judged[c] is None or judged[c][1] >= 0]  # upper bound of (c - best) >= 0
    beam = sorted(alive, key=lambda c: scores.get(c, -math.inf), reverse=True)[:width]
    return beam, _round_record(candidates, scores, judged, beam, best)


def _judge_by_estimate(
    candidates: Sequence[Chain], explored: Sequence[Chain], width: int, run: RunDirectory, config: ExperimentConfig
) -> tuple[list[Chain], dict[str, Any]]:
    """The `width` best candidates by transfer estimate (no fine-tune, so no interval: nothing is dropped early)."""
    scores = estimate_scores(run.read_diagnostics(), config)
    best = max(explored, key=lambda chain: scores.get(chain, -math.inf))
    beam = sorted(candidates, key=lambda c: scores.get(c, -math.inf), reverse=True)[:width]
    record = _round_record(candidates, {}, {c: None for c in candidates}, beam, best)
    for entry in record["candidates"]:
        entry["estimate_score"] = scores.get(tuple(entry["chain"]))
    return beam, record


def estimate_scores(records: Sequence[Mapping[str, Any]], config: ExperimentConfig) -> dict[Chain, float]:
    """chain -> the mean over targets of its estimate's rank among the diagnosed chains, scaled to 0..1 (1: the
    highest); estimates of different targets are on different scales, ranks are not. Seeds are averaged."""
    estimator = config.diagnostics.estimators[0]
    values: dict[str, dict[Chain, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record["mode"] != config.chain_modes[0]:
            continue
        for target, estimate in record.get("estimates", {}).items():
            if estimator in estimate:
                values[target][tuple(record["chain"])].append(float(estimate[estimator]))
    ranks: dict[Chain, list[float]] = defaultdict(list)
    for by_chain in values.values():
        means = {chain: float(np.mean(v)) for chain, v in by_chain.items()}
        ordered = sorted(means, key=means.get)
        for position, chain in enumerate(ordered):
            ranks[chain].append(position / (len(ordered) - 1) if len(ordered) > 1 else 0.5)
    return {chain: float(np.mean(r)) for chain, r in ranks.items()}


def runs_per_prefix(config: ExperimentConfig) -> int:
    """Stages one prefix costs: it is trained under every seed in every chain mode. The budget counts these."""
    return len(config.study.seeds) * len(config.chain_modes)


def prefix_budget(config: ExperimentConfig) -> int | None:
    """How many prefixes the stage budget pays for (None: no budget)."""
    budget = config.study.search.budget
    return None if budget is None else budget // runs_per_prefix(config)


def _costs(config: ExperimentConfig, prefixes: int, exhaustive_prefixes: int) -> dict[str, int]:
    """Stages and target fine-tunes of the search and of the exhaustive study (every seed and chain mode)."""
    runs = runs_per_prefix(config)
    targets = _trainable_targets(config)
    return {
        "stages_trained": prefixes * runs,
        "target_fine_tunes": (prefixes + 1) * targets * runs,
        "exhaustive_stages": exhaustive_prefixes * runs,
        "exhaustive_target_fine_tunes": (exhaustive_prefixes + 1) * targets * runs,
    }


def most_stages(pool: int, limit: int, width: int, budget: int | None) -> int:
    """The most prefixes a search can train (each costs `runs_per_prefix` stages): round k extends `width` prefixes
    (1 in round 1) by the pool tasks not in them, within a budget of `budget` prefixes and never beyond the
    exhaustive study."""
    total = sum(min(math.perm(pool, k), (1 if k == 1 else width) * (pool - k + 1)) for k in range(1, limit + 1))
    total = min(total, exhaustive_stage_count(pool, limit))
    return min(total, budget) if budget is not None else total


def _round_config(
    config: ExperimentConfig, explored: Sequence[Chain], limit: int, evaluate_on: list[list[str]] | None
) -> ExperimentConfig:
    """The study of every chain explored so far (each maximal chain once; its prefixes come with it), its targets
    fine-tuned after every prefix or only after the `evaluate_on` chains."""
    maximal = [list(c) for c in explored if c and not any(o != c and o[: len(c)] == c for o in explored)]
    update = {"orders": OrdersConfig(explicit=maximal), "search": None, "max_chain_length": limit}
    study = config.study.model_copy(update={**update, "evaluate_on": evaluate_on})
    return config.model_copy(update={"study": study})


def _trainable_targets(config: ExperimentConfig) -> int:
    registry = config.registry()
    return sum(registry.get(target.task).trainable for target in config.targets)


def _round_record(
    candidates: Sequence[Chain],
    scores: Mapping[Chain, float],
    judged: Mapping[Chain, tuple[float, float] | None],
    beam: Sequence[Chain],
    best: Chain,
) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "chain": list(c),
                "dev_score": scores.get(c),
                "against_best": None if judged[c] is None else {"lower": judged[c][0], "upper": judged[c][1]},
                "kept": c in beam,
            }
            for c in candidates
        ],
        "best_so_far": list(best),
    }
