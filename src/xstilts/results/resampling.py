"""The test-sample level of every interval: a paired bootstrap over evaluation items, parallel items drawn whole.

Every model of a study is evaluated on the same test items, so one bootstrap draw picks the same items for
every model (a gain is the difference of two scores on the same draw). Where a test set holds the same items
in every language (XNLI, PAWS-X, XQuAD, MLQA: one item translated, see `TaskSpec.parallel`), an item that is
hard in English is hard everywhere, so a draw picks *items*, and a drawn item brings its version in every
language that has it. Languages whose units carry no item keys (UD-POS, PAN-X, TyDiQA, BUCC, Tatoeba: each
language its own sample) are drawn on their own. Treating parallel languages as independent samples
understates the uncertainty of every average over languages several times over (15 XNLI languages x 5,010
pairs are 5,010 items, not 75,150).

A draw is a vector of counts over the items (how often each was drawn: multinomial, as resampling with
replacement); a language's replicate score is computed from the count-weighted sums of its per-unit statistics
(`xstilts.metrics.units`), so a whole set of replicates is one matrix product.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from xstilts.metrics.units import STATISTICS, Units, score_sums

RESAMPLES = 2000
BATCH_ELEMENTS = 8_000_000  # bound on the count-matrix entries one batch of draws holds


def seeded(*parts: object) -> np.random.Generator:
    """A generator seeded from `parts` (target, split, ...): reports are reproducible."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _families(units: Mapping[str, Sequence[Units]]) -> list[list[str]]:
    """Languages drawn together: those whose units all carry unique item keys form one family (parallel
    items); every other language is a family of its own."""
    keyed = [lang for lang, per_model in units.items() if per_model and all(u.keys is not None for u in per_model)]
    return ([keyed] if keyed else []) + [[lang] for lang in units if lang not in keyed]


def item_replicates(
    units: Mapping[str, Sequence[Units]], resamples: int = RESAMPLES, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray]:
    """language -> (models, resamples) replicate scores of models evaluated on the same items.

    `units[language]` lists one `Units` per model, all on the same items of that language (the same keys in the
    same order, or the same number of units without keys). Parallel languages share draws: an item drawn once
    counts once in every language that holds it."""
    rng = rng if rng is not None else np.random.default_rng(0)
    result: dict[str, np.ndarray] = {}
    for family in _families(units):
        result.update(_family_replicates({lang: units[lang] for lang in family}, resamples, rng))
    return result


def _family_replicates(
    units: Mapping[str, Sequence[Units]], resamples: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    languages = list(units)
    for language, per_model in units.items():
        first = per_model[0]
        if any(len(u) != len(first) or u.statistic != first.statistic for u in per_model):
            raise ValueError(f"{language}: paired resampling needs every model evaluated on the same units")
        if first.keys is not None and any(not np.array_equal(u.keys, first.keys) for u in per_model):
            raise ValueError(f"{language}: the models' units hold different items")
    if len(languages) == 1 and units[languages[0]][0].keys is None:
        universe = len(units[languages[0]][0])
        rows = {languages[0]: np.arange(universe)}
    else:
        keys = sorted({str(k) for lang in languages for k in units[lang][0].keys})
        position = {key: i for i, key in enumerate(keys)}
        universe = len(keys)
        rows = {lang: np.array([position[str(k)] for k in units[lang][0].keys]) for lang in languages}
    # One (items, models x columns) table per language, zero where the language lacks an item.
    tables, present = {}, {}
    for language in languages:
        per_model = units[language]
        values = np.concatenate([u.values for u in per_model], axis=1)
        table = np.zeros((universe, values.shape[1]))
        table[rows[language]] = values
        tables[language] = table
        present[language] = np.bincount(rows[language], minlength=universe).astype(float)
    out = {lang: np.empty((len(units[lang]), resamples)) for lang in languages}
    if universe == 1:  # one unit: every draw is that unit
        for language in languages:
            out[language][:] = np.array([[u.score()] for u in units[language]])
        return out
    batch = max(1, BATCH_ELEMENTS // universe)
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        counts = rng.multinomial(universe, np.full(universe, 1.0 / universe), size=size).astype(float)
        for language in languages:
            per_model = units[language]
            statistic, columns = per_model[0].statistic, STATISTICS[per_model[0].statistic]
            sums = (counts @ tables[language]).reshape(size, len(per_model), columns)
            drawn = counts @ present[language]  # units of this language in each draw
            scores = score_sums(statistic, sums, np.maximum(drawn, 1.0)[:, None])
            # A draw without any of this language's items (possible only for a language holding few of the
            # family's items) has no score: it counts as the language's observed score.
            scores[drawn == 0] = [u.score() for u in per_model]
            out[language][:, start : start + size] = scores.T
    return out


def paired_replicates(units: Sequence[Units], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(models, resamples) scores of models evaluated on the same units of one language."""
    if not units:
        return np.zeros((0, resamples))
    return item_replicates({"": list(units)}, resamples, rng)[""]
