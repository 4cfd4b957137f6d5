"""Per-unit statistics: their sums give the official score exactly, for the whole set and for any resample."""

from __future__ import annotations

import random

import numpy as np
import pytest

from xstilts.metrics.classification import accuracy, correct_per_example
from xstilts.metrics.qa import answer_scores, mlqa_measures, mlqa_scores, score_answers
from xstilts.metrics.retrieval import bucc_counts_per_source, bucc_scores_from_pairs
from xstilts.metrics.tagging import chunk_counts_per_sentence, seqeval_scores
from xstilts.metrics.units import Units, score_sums
from xstilts.metrics.xtreme import headline
from xstilts.rundir.units import read_units, units_file, write_units


def resampled_score(units: Units, indices: list[int]) -> float:
    return float(score_sums(units.statistic, units.values[indices].sum(axis=0), len(indices)))


def random_tags(rng: random.Random, length: int) -> list[str]:
    return [rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]) for _ in range(length)]


@pytest.mark.parametrize("seed", range(20))
def test_a_tagging_resample_keeps_whole_sentences(seed):
    """Units are sentences: the F1 of any resample of sentence units is seqeval's F1 on those sentences."""
    rng = random.Random(seed)
    golds = [random_tags(rng, rng.randint(1, 8)) for _ in range(30)]
    predictions = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC"]) for t in s] for s in golds]
    units = Units("f1", chunk_counts_per_sentence(predictions, golds))
    assert len(units) == len(golds)
    assert units.score() == pytest.approx(seqeval_scores(predictions, golds)["f1"], abs=1e-9)
    indices = [rng.randrange(len(golds)) for _ in golds]  # with repeats, as a bootstrap draws
    expected = seqeval_scores([predictions[i] for i in indices], [golds[i] for i in indices])["f1"]
    assert resampled_score(units, indices) == pytest.approx(expected, abs=1e-9)


def test_accuracy_units_are_examples():
    predictions, golds = ["a", "b", "c", "a"], ["a", "c", "c", "c"]
    units = Units("mean", correct_per_example(predictions, golds))
    assert units.values[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert units.score() == accuracy(predictions, golds)["accuracy"] == 50.0
    assert resampled_score(units, [0, 0, 2, 1]) == 75.0


@pytest.mark.parametrize("metric", ["squad", "mlqa"])
def test_qa_units_mean_is_the_headline(metric):
    predictions = ["the Eiffel tower", "Paris", None, "", "1889 and 1890", "der Turm"]
    golds = [["Eiffel Tower"], ["in Paris", "Paris"], ["x"], [], ["1889"], ["Turm"]]
    measures = mlqa_measures("de") if metric == "mlqa" else ()
    metrics = mlqa_scores(predictions, golds, "de") if metric == "mlqa" else score_answers(predictions, golds)
    units = Units("mean", [(em + f1) / 2 for em, f1 in answer_scores(predictions, golds, *measures)])
    assert units.score() == pytest.approx(headline(metrics, metric), abs=1e-9)
    assert units.values[2, 0] == 0.0 and units.values[3, 0] == 1.0  # missing answer; correct "no answer"


def test_bucc_units_are_source_sentences():
    gold = {("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-9")}
    predicted = {("de-1", "en-1"), ("de-2", "en-3"), ("de-4", "en-4")}
    sources = ["de-1", "de-2", "de-3", "de-4", "de-5"]
    units = Units("f1", bucc_counts_per_source(sources, predicted, gold))
    assert units.values.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert units.score() == pytest.approx(bucc_scores_from_pairs(predicted, gold)["f1"])
    with pytest.raises(ValueError, match="'de-7' is not one of the source sentences"):
        bucc_counts_per_source(sources, {("de-7", "en-1")}, gold)


def test_units_round_trip_and_mismatch(tmp_path):
    units = Units("f1", [[1, 2, 3], [0, 1, 0]])
    path = units_file(tmp_path / "test-de.json")
    assert path.name == "test-de.units.npy"
    write_units(path, units)
    loaded = read_units(path, "f1", 2)
    assert loaded is not None and np.array_equal(loaded.values, units.values)
    assert read_units(path, "f1", 3) is None, "a units file that does not match its record is not used"
    assert read_units(tmp_path / "missing.units.npy", "f1", 2) is None
    assert read_units(path, "mean", 2) is None
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert read_units(path, "f1", 1) is None, "object arrays (pickles) are never loaded"
    with pytest.raises(ValueError, match="f1 units need 3 columns"):
        Units("f1", [[1, 2]])
    assert Units("f1", [[0, 0, 0]]).score() == 0.0
