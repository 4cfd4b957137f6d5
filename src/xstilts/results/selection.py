"""Choices made on dev and reported on test: the best chain length, intermediate task or model per target.

A choice reads dev scores only; test scores are looked up afterwards, for the chosen candidate and, to show
how much choosing on test would flatter the result, for the candidate that test itself would pick.

Rules (`selection:` in the config): `dev` scores a candidate by the target's mean over its dev languages
(as the paper); `dev-en` by its English dev score only (strictly zero-shot). A target with no dev score at
all (Tatoeba has no dev split; BUCC has no English dev), or whose dev files are its test files (XTREME's
TyDiQA-GoldP), is chosen by the mean dev score of the other targets.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from xstilts.results.aggregate import split_chains
from xstilts.terms import DEV, TEST

Scores = Mapping[Hashable, Mapping[str, float]]  # candidate -> target -> score


@dataclass(frozen=True)
class Choice:
    """What `rule` chose for one target, and what choosing on test would have chosen."""

    target: str
    chosen: Hashable
    by_other_targets: bool  # the target has no dev score of its own: the other targets' mean chose
    dev: float | None  # the chosen candidate's dev score (None when chosen by the other targets)
    test: float | None  # the chosen candidate's test score
    test_choice: Hashable | None  # the candidate with the best test score
    test_choice_score: float | None

    @property
    def optimism(self) -> float | None:
        """How much higher the test score looks when the choice itself is made on test."""
        if self.test is None or self.test_choice_score is None:
            return None
        return self.test_choice_score - self.test


def dev_is_test(targets: Sequence[str]) -> set[str]:
    """The built-in targets whose dev split is read from their test files: their dev score must not choose."""
    from xstilts.tasks import default_registry

    registry = default_registry()
    return {target for target in targets if target in registry and registry.get(target).dev_is_test}


def choose(targets: Sequence[str], dev: Scores, test: Scores) -> dict[str, Choice]:
    """For each target, the candidate with the best dev score (ties: the first candidate in `dev`'s order)."""
    candidates = list(dev) or list(test)
    not_own = dev_is_test(sorted(set(targets) | {t for scores in dev.values() for t in scores}))
    choices = {}
    for target in targets:
        scored = [
            (candidate, dev[candidate][target])
            for candidate in candidates
            if target in dev.get(candidate, {}) and target not in not_own
        ]
        by_others = not scored
        if by_others:  # no usable dev score for this target: the other targets decide (never one read from test)
            others = {c: [v for t, v in dev.get(c, {}).items() if t != target and t not in not_own] for c in candidates}
            scored = [(c, fmean(values)) for c, values in others.items() if values]
        if not scored:
            continue
        chosen, dev_score = max(scored, key=lambda item: item[1])  # max keeps the first of equal scores
        on_test = [(c, test[c][target]) for c in candidates if target in test.get(c, {})]
        test_choice, test_best = max(on_test, key=lambda item: item[1]) if on_test else (None, None)
        choices[target] = Choice(
            target,
            chosen,
            by_others,
            None if by_others else dev_score,
            test.get(chosen, {}).get(target),
            test_choice,
            test_best,
        )
    return choices


def target_scores(chains: Mapping[str, Any], selection: str, split: str) -> dict[str, dict[str, float]]:
    """chain label -> target -> the score a choice compares: the target's average over languages, or for
    `dev-en` on dev its English score only."""
    english_only = selection == "dev-en" and split == DEV
    scores: dict[str, dict[str, float]] = {}
    for label, chain in chains.items():
        for target, entry in chain["targets"].items():
            value = entry["scores"].get("en") if english_only else entry["average"]["score"]
            if value is not None:
                scores.setdefault(label, {})[target] = value
    return scores


def by_label(
    summary: Mapping[str, Any], selection: str
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(dev, test) scores per chain label, for choosing a model per target."""
    return target_scores(split_chains(summary, DEV), selection, DEV), target_scores(
        split_chains(summary, TEST), selection, TEST
    )


def by_length(
    dev_table: Mapping[str, Any], test_table: Mapping[str, Any], selection: str
) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    """(dev, test) scores per chain length from the report's tables (`aggregate.by_chain_length` of each split:
    means over the chains of each length, targets with every planned language), for choosing the best k."""

    def targets(table: Mapping[str, Any]) -> dict[int, dict[str, float]]:
        return {
            length: {t: stats[0] for t, stats in columns.items() if not t.startswith(("XTREME", "group:"))}
            for length, columns in table["scores"].items()
        }

    dev = targets(dev_table)
    if selection == "dev-en":
        dev = {}
        for (length, target, language), stats in dev_table["languages"].items():
            if language == "en":
                dev.setdefault(length, {})[target] = stats[0]
    return dev, targets(test_table)
