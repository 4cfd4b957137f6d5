"""The diagnostics of a run summarised against chain length, and the estimators judged by measured results.

Input: the per-prefix records of `RUN_DIR/diagnostics/` and the result rows. Control prefixes (A/A refits,
positive controls) are left out: they are not points of the study. Every mean over prefixes carries its
number of prefixes and a t interval over them (`statistics.mean_interval`); an estimator's Kendall tau
and regret carry an interval from resampling the (estimate, measured score) pairs (`paired_statistic`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from xstilts.results.statistics import mean_interval, paired_statistic, seeded
from xstilts.rundir.records import ResultRow, complete_record, complete_rows
from xstilts.terms import TEST

Key = tuple[tuple[str, ...], int, str]  # (chain, seed, mode): one prefix of one run


def _key(item: Mapping[str, Any]) -> Key:
    """Of a completed record or row (`complete_record`, `complete_rows`: every public function completes its input)."""
    return tuple(item["chain"]), int(item["seed"]), str(item["mode"])


def measured_scores(rows: Sequence[ResultRow], split: str = TEST) -> dict[str, dict[Key, float]]:
    """target -> prefix -> the mean score over its languages on `split` (study rows only)."""
    scores: dict[str, dict[Key, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in complete_rows(rows):
        if row["split"] == split and not row.get("control"):
            scores[row["target"]][_key(row)].append(float(row["score"]))
    return {target: {key: float(np.mean(v)) for key, v in by_key.items()} for target, by_key in scores.items()}


def study_records(records: Sequence[Mapping[str, Any]], rows: Sequence[ResultRow]) -> list[Mapping[str, Any]]:
    """The records of the study's own prefixes (not those only control rows use), in chain order: identities
    (file names) depend on where the encoder lives, and the bootstrap draws must not."""
    rows = complete_rows(rows)
    controls = {_key(row) for row in rows if row.get("control")}
    study = {_key(row) for row in rows if not row.get("control")}
    kept = [record for record in map(complete_record, records) if _key(record) not in controls - study]
    return sorted(kept, key=_chain_order)


def _chain_order(record: Mapping[str, Any]) -> tuple:
    chain, seed, mode = _key(record)
    return mode, len(chain), chain, seed


def summarise(records: Sequence[Mapping[str, Any]], rows: Sequence[ResultRow]) -> dict[str, Any]:
    """{"by_length": {mode: {k: measures}}, "alignment_layers": {mode: {k: [per layer]}}, "estimates": {...}}."""
    records = study_records(records, rows)
    by_mode: dict[str, dict[int, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_mode[record["mode"]][int(record["chain_length"])].append(record)
    by_length: dict[str, dict[int, dict[str, Any]]] = {}
    layers: dict[str, dict[int, list[float]]] = {}
    for mode, by_k in by_mode.items():
        by_length[mode], layers[mode] = {}, {}
        for k, group in sorted(by_k.items()):
            by_length[mode][k] = {
                "prefixes": len(group),
                "cka_pretrained_last": _mean([r["drift"].get("pretrained", [None])[-1] for r in group]),
                "cka_parent_last": _mean([r["drift"].get("parent", [None])[-1] for r in group]),
                "alignment_best": _mean([max(r["alignment"]["mean"]) for r in group if "alignment" in r]),
                "alignment_last": _mean([r["alignment"]["mean"][-1] for r in group if "alignment" in r]),
            }
            curves = [r["alignment"]["mean"] for r in group if "alignment" in r]
            if curves:
                layers[mode][k] = [float(v) for v in np.mean(curves, axis=0)]
    return {
        "by_length": by_length,
        "alignment_layers": layers,
        "forgetting": forgetting_by_distance(records),
        "estimates": judge_estimates(records, rows),
    }


def forgetting_by_distance(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """mode -> tasks trained since (0, 1, ...) -> the earlier tasks' English dev scores, own head and probe, and
    their change since the task's own stage (each paired with the same chain's record right after that stage)."""
    records = [complete_record(record) for record in records]
    by_key = {_key(record): record for record in records}
    pairs: dict[str, dict[int, list[tuple[dict[str, Any], dict[str, Any]]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        chain, seed, mode = _key(record)
        for entry in record.get("forgetting", []):
            position = int(entry["trained_at"])
            at_own_stage = by_key.get((chain[:position], seed, mode), {})
            reference = next((e for e in at_own_stage.get("forgetting", []) if int(e["trained_at"]) == position), None)
            if reference is not None:
                pairs[mode][len(chain) - position].append((entry, reference))
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for mode, by_distance in pairs.items():
        found[mode] = {}
        for distance, group in sorted(by_distance.items()):
            found[mode][distance] = {"pairs": len(group)}
            for measure in ("own_head", "probe"):
                now = [
                    (e[measure], r[measure])
                    for e, r in group
                    if e.get(measure) is not None and r.get(measure) is not None
                ]
                found[mode][distance][measure] = _mean([a for a, _ in now])
                found[mode][distance][f"{measure}_change"] = _mean([a - b for a, b in now]) if distance else None
    return found


def _mean(values: Sequence[float | None]) -> dict[str, Any] | None:
    present = np.array([v for v in values if v is not None], dtype=float)
    return mean_interval(present).to_json() if len(present) else None


def judge_estimates(records: Sequence[Mapping[str, Any]], rows: Sequence[ResultRow]) -> dict[str, dict[str, Any]]:
    """target -> estimator -> Kendall tau between the estimate and the measured test score over prefixes, and
    regret@1 / regret@3: how far the best measured score of the estimator's top 1 / top 3 prefixes falls below
    the best measured score of all, in points and relative to the best (in %, the form of Poth et al. 2021 and
    Renggli et al. 2022). Intervals draw whole chains (prefixes that share a first task share their stages)."""
    measured = measured_scores(rows)
    judged: dict[str, dict[str, Any]] = {}
    for target, scores in sorted(measured.items()):
        for estimator in ("logme", "knn"):
            found = [
                (record["estimates"][target][estimator], scores[_key(record)], _chain_cluster(record))
                for record in map(complete_record, records)
                if _key(record) in scores and estimator in record.get("estimates", {}).get(target, {})
            ]
            if len(found) < 2:
                continue
            estimates, values = (np.array([item[i] for item in found], dtype=float) for i in (0, 1))
            clusters = [item[2] for item in found]
            rng = seeded("estimates", target, estimator)
            judged.setdefault(target, {})[estimator] = {
                "prefixes": len(found),
                "kendall_tau": _tau_entry(estimates, values, rng, clusters),
                **{
                    name: paired_statistic(estimates, values, function, rng, clusters).to_json()
                    for name, function in (
                        ("regret_at_1", _regret(1)),
                        ("regret_at_3", _regret(3)),
                        ("relative_regret_at_1", _regret(1, relative=True)),
                        ("relative_regret_at_3", _regret(3, relative=True)),
                    )
                },
            }
    return judged


def _chain_cluster(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The cluster a prefix's record belongs to: its first task (k = 0 alone), as the report's runs are grouped."""
    return tuple(record["chain"][:1])


def _tau_entry(
    estimates: np.ndarray, values: np.ndarray, rng: np.random.Generator, clusters: Sequence[Any]
) -> dict[str, Any]:
    """Kendall tau with its interval, or why it is undefined (no ranking to compare)."""
    for name, column in (("estimates", estimates), ("measured scores", values)):
        if len(np.unique(column)) < 2:
            return {"estimate": None, "n": len(column), "undefined": f"the {name} are all equal"}
    return paired_statistic(estimates, values, _tau, rng, clusters).to_json()


def _tau(estimates: np.ndarray, values: np.ndarray) -> float:
    return float(kendalltau(estimates, values).statistic)


def _regret(top: int, relative: bool = False):
    def regret(estimates: np.ndarray, values: np.ndarray) -> float:
        chosen = np.argsort(-estimates, kind="stable")[:top]
        lost = float(values.max() - values[chosen].max())
        if not relative:
            return lost
        best = float(values.max())
        return 100.0 * lost / best if best > 0 else float("nan")

    return regret
