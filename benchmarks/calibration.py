"""Calibration of every interval and verdict the report prints, on simulated studies with a known answer.

For each design (orders x seeds, chain length K, languages, null or real gains; `xstilts.results.simulate`)
the script simulates whole studies at the item level (parallel items across languages, item-level
heterogeneity, seed noise for every model including k = 0, order effects, stage noise), runs the report's own
analysis on them (`xstilts.results.effects.analyse`: the same function on the same units a real run writes),
and counts:

- coverage: how often each kind of 95% interval (score, gain at k, step k vs k - 1, each further task; for a
  target and for the average over targets) holds the true value; intervals that leave training noise out
  ("test sample only") carry no verdict and are counted apart;
- the family-wise false-positive rate of the verdicts under the null (any target or the average called);
- the A/A controls' family-wise false-alarm rate;
- power: how often the first task's gain is called when it is +1 or +3 points, and the median minimum
  detectable effect the report prints.

    python benchmarks/calibration.py                  # 1,000 studies per design (under an hour on 2 cores)
    python benchmarks/calibration.py --studies 100    # a quick look

The record goes to benchmarks/results/calibration-<date>-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import scipy

from xstilts.results.effects import analyse
from xstilts.results.simulate import (
    Design,
    SimulatedTarget,
    a_a_alarm,
    detected_first,
    false_calls,
    simulate_rows,
    summarize_coverage,
)

ROOT = Path(__file__).resolve().parents[1]
RESAMPLES = 1000  # bootstrap draws per study (the report uses 2000; coverage does not depend on it)


def diminishing(first: float, length: int) -> tuple[float, ...]:
    """True gains at k = 0..K: `first` at k = 1, each further task half the one before."""
    return tuple(2 * first * (1 - 0.5**k) for k in range(length + 1))


def fifteen_and_four(items: int = 300, parallel_languages: int = 15) -> tuple[SimulatedTarget, ...]:
    return (
        SimulatedTarget("parallel", parallel_languages, items, True),
        SimulatedTarget("independent", 4, items, False),
    )


DESIGNS = [
    Design("K=2, 3 orders x 1 seed, null", seeds=1),
    Design("K=2, 3 orders x 2 seeds, null (the demo's design)", seeds=2),
    Design("K=2, 3 orders x 2 seeds, null, 4 parallel languages", seeds=2, targets=fifteen_and_four(300, 4)),
    Design("K=2, 3 orders x 3 seeds, +1 first", seeds=3, gains=diminishing(1.0, 2)),
    Design("K=2, 3 orders x 5 seeds, +3 first", seeds=5, gains=diminishing(3.0, 2)),
    Design(
        "K=2, 3 orders x 3 seeds, +3 first, training noise dominates",
        seeds=3,
        gains=diminishing(3.0, 2),
        seed_sd=2.0,
        targets=fifteen_and_four(1000),
    ),
    Design("K=2, 9 orders x 2 seeds (a pool of 9), +1 first", seeds=2, orders=9, pool=9, gains=diminishing(1.0, 2)),
    Design("K=2, 9 orders x 2 seeds (a pool of 9), +3 first", seeds=2, orders=9, pool=9, gains=diminishing(3.0, 2)),
    Design("K=9, 3 orders x 1 seed, null", seeds=1, max_length=9, pool=9, gains=diminishing(0.0, 9)),
    Design("K=9, 3 orders x 2 seeds, +1 first", seeds=2, max_length=9, pool=9, gains=diminishing(1.0, 9)),
    Design("K=9, 3 orders x 3 seeds, +3 first", seeds=3, max_length=9, pool=9, gains=diminishing(3.0, 9)),
]


def run_chunk(args: tuple[int, int, int]) -> dict:
    """Simulate and analyse `count` studies of design `index`, seeded by (index, chunk)."""
    index, chunk, count = args
    design = DESIGNS[index]
    rng = np.random.default_rng([index, chunk])
    covered: dict[str, list[bool]] = defaultdict(list)
    found_calls, alarms, detected, detectable, unjudged = [], [], [], [], 0
    for _ in range(count):
        study = simulate_rows(design, rng)
        found = analyse(study.rows, study.load, splits=("test",), resamples=RESAMPLES)["full"]["test"]
        for kind, values in summarize_coverage(found, design, study).items():
            covered[kind] += values
        found_calls.append(false_calls(found))
        alarm = a_a_alarm(found)
        if alarm is not None:
            alarms.append(alarm)
        detected.append(detected_first(found, "parallel"))
        mde = found["targets"]["parallel"]["detectable"]["first"]
        if mde is None:
            unjudged += 1
        else:
            detectable.append(mde)
    return {
        "index": index,
        "covered": dict(covered),
        "calls": found_calls,
        "alarms": alarms,
        "detected": detected,
        "detectable": detectable,
        "unjudged": unjudged,
    }


def summarise(design: Design, chunks: list[dict], seconds: float) -> dict:
    covered: dict[str, list[bool]] = defaultdict(list)
    for chunk in chunks:
        for kind, values in chunk["covered"].items():
            covered[kind] += values
    calls = [c for chunk in chunks for c in chunk["calls"]]
    alarms = [a for chunk in chunks for a in chunk["alarms"]]
    detected = [d for chunk in chunks for d in chunk["detected"]]
    detectable = [d for chunk in chunks for d in chunk["detectable"]]
    null = max(design.gains) == 0
    return {
        "design": design.name,
        "settings": {
            "orders": design.orders,
            "seeds": design.seeds,
            "k0_runs": max(design.seeds, design.baseline_runs),
            "max_length": design.max_length,
            "pool": design.pool,
            "gains": list(design.gains),
            "targets": [t.__dict__ for t in design.targets],
            "seed_sd": design.seed_sd,
            "stage_sd": design.stage_sd,
            "order_sd": design.order_sd,
            "language_correlation": design.language_correlation,
            "model_correlation": design.model_correlation,
        },
        "studies": len(calls),
        "seconds": round(seconds, 1),
        "coverage": {kind: {"rate": float(np.mean(v)), "intervals": len(v)} for kind, v in sorted(covered.items())},
        "coverage_pooled_over_k": grouped(
            {kind: {"rate": float(np.mean(v)), "intervals": len(v)} for kind, v in covered.items()}
        ),
        "family_wise_false_positive": float(np.mean(calls)) if null else None,
        "a_a_false_alarm": float(np.mean(alarms)) if alarms else None,
        "power_first_task": None if null else float(np.mean(detected)),
        "median_detectable_first_task": float(np.median(detectable)) if detectable else None,
        "studies_without_a_judged_first_gain": sum(chunk["unjudged"] for chunk in chunks),
    }


def grouped(coverage: dict[str, dict]) -> dict[str, dict]:
    """Coverage per (scope, interval family) pooled over k, with the lowest and highest k's rate:
    "parallel: gain at k = 3" and the other k belong to "parallel: gain at k"."""
    families: dict[str, list[dict]] = defaultdict(list)
    for kind, entry in coverage.items():
        family = kind.split(" = ")[0] if " = " in kind else kind
        families[family.replace("step k", "step k vs k - 1")].append(entry)
    return {
        family: {
            "rate": sum(e["rate"] * e["intervals"] for e in entries) / sum(e["intervals"] for e in entries),
            "intervals": sum(e["intervals"] for e in entries),
            "lowest": min(e["rate"] for e in entries),
            "highest": max(e["rate"] for e in entries),
            "kinds": len(entries),
        }
        for family, entries in sorted(families.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per design (default 1000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--designs", type=str, default="", help="comma-separated design numbers (default: all)")
    parser.add_argument("--no-record", action="store_true", help="print only, write no JSON record")
    args = parser.parse_args()
    chosen = [int(i) for i in args.designs.split(",")] if args.designs else list(range(len(DESIGNS)))
    chunk = 50
    jobs = [
        (index, start // chunk, min(chunk, args.studies - start))
        for index in chosen
        for start in range(0, args.studies, chunk)
    ]
    began = time.perf_counter()
    results: dict[int, list[dict]] = defaultdict(list)
    with Pool(args.workers) as pool:
        for result in pool.imap_unordered(run_chunk, jobs):
            results[result["index"]].append(result)
    seconds = time.perf_counter() - began
    summaries = [summarise(DESIGNS[i], results[i], seconds * len(results[i]) / len(jobs)) for i in chosen]
    for summary in summaries:
        print(f"\n{summary['design']} ({summary['studies']} studies)")
        for family, entry in grouped(summary["coverage"]).items():
            spread = f" (over k: {entry['lowest']:.3f} to {entry['highest']:.3f})" if entry["kinds"] > 1 else ""
            print(f"  {family:<32} coverage {entry['rate']:.3f}{spread}, {entry['intervals']} intervals")
        print(
            f"  family-wise false positives {summary['family_wise_false_positive']}, A/A false alarms "
            f"{summary['a_a_false_alarm']}, power (first task) {summary['power_first_task']}, median detectable "
            f"first-task gain {summary['median_detectable_first_task']}"
        )
    print(f"\n{len(chosen)} designs x {args.studies} studies in {seconds:.0f} s on {args.workers} workers")
    if args.no_record:
        return
    record = {
        "benchmark": "calibration",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {"numpy": np.__version__, "scipy": scipy.__version__},
        "resamples": RESAMPLES,
        "seconds": round(seconds, 1),
        "results": summaries,
    }
    path = ROOT / "benchmarks" / "results" / f"calibration-{time.strftime('%Y%m%d')}-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
