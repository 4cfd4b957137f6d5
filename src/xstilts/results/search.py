"""How a searched chain compares: the dev scores that rank chains, a chain against the best so far (test
sample only: the search prunes on it), and the regret of the chain found against the exhaustive study's best.

`xstilts.study.search` runs the search; the report reads its record back through `regret` here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xstilts.config import ExperimentConfig
from xstilts.results.effects import TargetDraws, UnitsLoader
from xstilts.results.resampling import RESAMPLES
from xstilts.results.selection import dev_is_test
from xstilts.results.statistics import percentile_interval
from xstilts.rundir.records import ResultRow, complete_rows, is_study_row
from xstilts.terms import DEV, TEST

Chain = tuple[str, ...]


def chain_name(chain: Chain) -> str:
    return "+".join(chain) or "pretrained"


def chain_names(chains: Sequence[Chain]) -> str:
    return ", ".join(chain_name(c) for c in chains) or "nothing"


def exhaustive_stage_count(pool: int, limit: int) -> int:
    """Distinct prefixes of every ordering of `limit` tasks from a pool of `pool`: sum over k of pool!/(pool-k)!."""
    return sum(math.perm(pool, k) for k in range(1, limit + 1))


def dev_scores(rows: Sequence[ResultRow], config: ExperimentConfig, split: str = DEV) -> dict[Chain, float]:
    """chain -> the mean over targets (those that can choose on dev) of the target's score on `split` (dev: the mean
    over its dev languages, or English only with `selection: dev-en`; test: always every language, zero-shot),
    averaged over seeds; the chain's study rows only."""
    by_chain: dict[Chain, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    blind = dev_is_test([t.task for t in config.targets])
    for row in _dev_rows(rows, config, blind, split):
        by_chain[tuple(row["chain"])][row["target"]].append(float(row["score"]))
    return {chain: float(np.mean([np.mean(v) for v in by_target.values()])) for chain, by_target in by_chain.items()}


def _dev_rows(
    rows: Sequence[ResultRow], config: ExperimentConfig, blind: set[str], split: str = DEV
) -> list[ResultRow]:
    """The rows that rank chains: `split`, study rows of the first chain mode, targets that may choose."""
    return [
        row
        for row in complete_rows(rows)
        if row["split"] == split
        and is_study_row(row)
        and row["mode"] == config.chain_modes[0]
        and row["target"] not in blind
        and (config.selection == "dev" or split != DEV or row["language"] == "en")
    ]


def against(
    chain: Chain,
    best: Chain,
    rows: Sequence[ResultRow],
    load: UnitsLoader,
    config: ExperimentConfig,
    split: str = DEV,
) -> tuple[float, float] | None:
    """95% interval of (chain's score - best's) on `split` over the test sample only (their seeds' mean scores;
    paired over the same items, parallel items drawn in every language at once); None without units."""
    if chain == best:
        return None
    rows = _dev_rows(rows, config, dev_is_test([t.task for t in config.targets]), split)
    by_target: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if tuple(row["chain"]) in (chain, best):
            by_target[row["target"]].append(row)
    differences = []
    for target, target_rows in sorted(by_target.items()):
        labels = {c: sorted({r["chain_label"] for r in target_rows if tuple(r["chain"]) == c}) for c in (chain, best)}
        per_model = [
            {r["language"] for r in target_rows if r["chain_label"] == label} for label in sum(labels.values(), [])
        ]
        languages = sorted(set.intersection(*per_model)) if per_model else []
        draws = TargetDraws(target_rows, load, RESAMPLES, key=("search", target, *chain, "vs", *best))
        mine, theirs = (draws.mean_of(labels[c], languages) for c in (chain, best))
        if mine is None or theirs is None:
            return None
        differences.append(mine.mean(axis=0) - theirs.mean(axis=0))
    if not differences:
        return None
    return percentile_interval(np.mean(differences, axis=0))


def regret(
    rows: Sequence[ResultRow], load: UnitsLoader, config: ExperimentConfig, record: Mapping[str, Any]
) -> dict[str, Any] | None:
    """When the rows hold every chain of the exhaustive study (run in the same directory, or merged in with
    `xstilts report SEARCH EXHAUSTIVE -o OUT`): the exhaustive best chosen on dev, and the test score the
    search's chain loses against it, with its paired interval."""
    dev, test = dev_scores(rows, config), dev_scores(rows, config, TEST)
    lengths = [len(c) for c in dev if c]
    if len([c for c in dev if c]) < exhaustive_stage_count(len(record["pool"]), record["max_chain_length"]):
        return None
    best = max(dev, key=lambda chain: dev[chain])
    found = tuple(record["found"])
    interval = against(found, best, rows, load, config, TEST)
    return {
        "exhaustive_best": list(best),
        "chains": len(dev),
        "longest": max(lengths, default=0),
        "regret_test": test[best] - test[found] if found in test and best in test else None,
        "found_minus_best_test": None if interval is None else {"lower": interval[0], "upper": interval[1]},
    }
