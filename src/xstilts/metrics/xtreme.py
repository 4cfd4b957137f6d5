"""Aggregation the XTREME way (protocol.md section 3).

A task's score is the unweighted mean over its languages; a QA task's is (mean EM + mean F1) / 2.
Sums run in a fixed order (XTREME's own script sums over a set, so its last digits vary).
"""

from __future__ import annotations

from statistics import fmean
from typing import Mapping

# The single number each metric family contributes to a task score.
QA_METRICS = ("exact_match", "f1")


def headline(metrics: Mapping[str, float], metric_family: str) -> float:
    """One language's headline value: accuracy, chunk F1, or (EM + F1) / 2 for QA."""
    if metric_family in ("squad", "mlqa"):
        return (metrics["exact_match"] + metrics["f1"]) / 2
    if metric_family == "seqeval":
        return metrics["f1"]
    return metrics["accuracy"]


def task_score(per_language: Mapping[str, Mapping[str, float]], metric_family: str) -> dict[str, float]:
    """Mean over languages of each metric, plus `score`, the task's headline number."""
    languages = sorted(per_language)
    if not languages:
        raise ValueError("no languages to average")
    names = sorted(set.intersection(*(set(per_language[lang]) for lang in languages)))
    means = {name: fmean(per_language[lang][name] for lang in languages) for name in names}
    if metric_family in ("squad", "mlqa"):
        means["score"] = (means["exact_match"] + means["f1"]) / 2
    else:
        means["score"] = means["f1"] if metric_family == "seqeval" else means["accuracy"]
    return means
