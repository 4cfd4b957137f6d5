"""Aggregation the XTREME way (docs/protocol.md section 3).

A task's score is the unweighted mean over its languages; a QA task's is (mean EM + mean F1) / 2.
Sums run in a fixed order (XTREME's own script sums over a set, so its last digits vary).
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import fmean


def headline(metrics: Mapping[str, float], metric_family: str) -> float:
    """One language's headline value: accuracy, chunk F1, or (EM + F1) / 2 for QA."""
    if metric_family in ("squad", "mlqa"):
        return (metrics["exact_match"] + metrics["f1"]) / 2
    if metric_family in ("seqeval", "bucc_f1"):
        return metrics["f1"]
    return metrics["accuracy"]


def task_score(per_language: Mapping[str, Mapping[str, float]], metric_family: str) -> dict[str, float]:
    """Mean over languages of each metric, plus `score`, the task's headline number."""
    languages = sorted(per_language)
    if not languages:
        raise ValueError("no languages to average")
    names = sorted(set.intersection(*(set(per_language[lang]) for lang in languages)))
    means = {
        name: fmean(per_language[lang][name] for lang in languages)
        for name in names
        if isinstance(per_language[languages[0]][name], (int, float))
    }
    means["score"] = fmean(headline(per_language[lang], metric_family) for lang in languages)
    return means


# The nine XTREME tasks in a fixed order, their groups, and the languages each contributes to the
# XTREME score (later additions such as XQuAD ro or XTREME-R's Tatoeba languages are excluded).
XTREME_TASK_ORDER = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
XTREME_GROUPS = {
    "classification": ("xnli", "pawsx"),
    "structured_prediction": ("udpos", "panx"),
    "question_answering": ("xquad", "mlqa", "tydiqa"),
    "retrieval": ("bucc2018", "tatoeba"),
}
XTREME_SCORE_LANGUAGES = {
    "xquad": tuple("ar de el en es hi ru th tr vi zh".split()),
    "tatoeba": tuple(
        "af ar bg bn de el es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr nl pt ru sw ta te th tl tr ur vi zh".split()
    ),
}


def xtreme_score(task_scores: Mapping[str, float]) -> dict[str, object]:
    """The XTREME score and group scores from per-task scores (each already averaged over languages).

    With all nine tasks it is XTREME's number; with fewer, every mean is over the tasks present and the
    result says `partial: True` and lists what is missing, so it is never mistaken for the full score.
    """
    present = [task for task in XTREME_TASK_ORDER if task in task_scores]
    if not present:
        raise ValueError(f"no XTREME task among {sorted(task_scores)}")
    groups = {
        group: fmean(task_scores[t] for t in tasks if t in task_scores)
        for group, tasks in XTREME_GROUPS.items()
        if any(t in task_scores for t in tasks)
    }
    missing = [task for task in XTREME_TASK_ORDER if task not in task_scores]
    return {
        "score": fmean(task_scores[t] for t in present),
        "groups": groups,
        "tasks": {t: task_scores[t] for t in present},
        "partial": bool(missing),
        "missing": missing,
    }
