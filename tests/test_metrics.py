"""Metrics pinned to known values of the official definitions (docs/protocol.md section 4)."""

from __future__ import annotations

import pytest

from xstilts.metrics.classification import accuracy
from xstilts.metrics.qa import exact_match, f1, normalize_answer, score_answers, squad_scores
from xstilts.metrics.tagging import get_entities, seqeval_scores
from xstilts.metrics.xtreme import headline, task_score


def test_accuracy():
    assert accuracy(["a", "b", "a", "c"], ["a", "b", "b", "c"]) == {"accuracy": 75.0}
    with pytest.raises(ValueError, match="3 predictions for 2 gold labels"):
        accuracy([1, 2, 3], [1, 2])


def test_squad_normalisation_and_token_f1():
    assert normalize_answer("The  Cat's hat!") == "cats hat"
    assert exact_match("an apple", "Apple.") == 1.0
    # prediction "red big book" vs gold "the big book": common {big, book} -> P = 2/3, R = 1 -> F1 = 0.8
    assert f1("red big book", "the big book") == pytest.approx(0.8)
    # both sides normalise to nothing: EM 1 but F1 0 (the official script's quirk)
    assert exact_match("the", "a") == 1.0 and f1("the", "a") == 0.0
    # no segmentation for CJK: one token without spaces
    assert f1("北京大学", "北京") == 0.0


def test_squad_scores_max_over_golds_and_missing_predictions():
    golds = {"q1": ["Paris", "the city of Paris"], "q2": ["blue"], "q3": ["x y"]}
    scores = squad_scores({"q1": "city of Paris", "q3": "x"}, golds)
    # q1: EM 1 (matches gold 2 after article removal), F1 1; q2 missing: 0; q3: EM 0, F1 = 2/3
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)


def test_unanswerable_questions_need_an_empty_prediction():
    assert score_answers(["", "x"], [[], []]) == {"exact_match": 50.0, "f1": 50.0}


def test_seqeval_readme_example():
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = seqeval_scores(predicted, gold)
    assert scores["f1"] == pytest.approx(50.0)
    assert scores["precision"] == pytest.approx(50.0) and scores["recall"] == pytest.approx(50.0)
    assert scores["token_accuracy"] == pytest.approx(100 * 8 / 10)  # positions 3 and 4 of sentence 1 differ


def test_seqeval_treats_upos_runs_as_one_chunk():
    # "NOUN" reads as prefix N, type NOUN: consecutive identical tags merge into one chunk.
    assert get_entities([["NOUN", "NOUN", "VERB"]]) == [("NOUN", 0, 1), ("VERB", 2, 2)]
    scores = seqeval_scores([["NOUN", "VERB", "VERB"]], [["NOUN", "NOUN", "VERB"]])
    assert scores["f1"] == 0.0 and scores["token_accuracy"] == pytest.approx(200 / 3)


def test_seqeval_iob_details_match_0_0_12():
    # I- after O starts a chunk; a type change inside I- splits it; sentences are separated by an O.
    assert get_entities([["O", "I-PER", "I-LOC"], ["I-LOC"]]) == [("PER", 1, 1), ("LOC", 2, 2), ("LOC", 4, 4)]
    assert get_entities([["B-PER", "I-PER", "E-PER", "S-LOC"]]) == [("PER", 0, 2), ("LOC", 3, 3)]


def test_seqeval_refuses_misaligned_sentences():
    with pytest.raises(ValueError, match="sentence 2: 1 predicted tags for 2 gold words"):
        seqeval_scores([["O"], ["O"]], [["O"], ["O", "O"]])


def test_xtreme_aggregation():
    per_language = {"en": {"exact_match": 60.0, "f1": 80.0}, "de": {"exact_match": 40.0, "f1": 60.0}}
    assert headline(per_language["en"], "squad") == 70.0
    assert task_score(per_language, "squad") == {"exact_match": 50.0, "f1": 70.0, "score": 60.0}
    assert task_score({"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}}, "accuracy")["score"] == 75.0


def test_mlqa_normalisation_quirks():
    from xstilts.metrics.qa import mlqa_exact_match, mlqa_f1, mlqa_normalize

    # Arabic: every "ال" goes, inside words too.
    assert mlqa_normalize("الكتاب الجميل", "ar") == "كتاب جميل"
    assert mlqa_normalize("فالولد", "ar") == "ف ولد"
    # Chinese: one token per character in U+4E00-U+9FA5 only; U+3400 (extension A) stays glued.
    assert mlqa_normalize("北京大学", "zh") == "北 京 大 学"
    assert mlqa_normalize("㐀㐁", "zh") == "㐀㐁"
    assert mlqa_f1("北京", "北京大学", "zh") == pytest.approx(2 * 1 * 0.5 / 1.5)
    # Unicode punctuation (category P*) is removed, not only ASCII.
    assert mlqa_normalize("«Hola»", "es") == "hola" and normalize_answer("«Hola»") == "«hola»"
    # Spanish articles: an answer that is only an article normalises to nothing: EM 1, F1 0.
    assert mlqa_exact_match("una", "una", "es") == 1.0 and mlqa_f1("una", "una", "es") == 0.0
    assert mlqa_normalize("der Hund", "de") == "hund" and mlqa_normalize("the dog", "hi") == "the dog"
    with pytest.raises(ValueError, match="no normalisation for language 'fr'"):
        mlqa_normalize("le chien", "fr")


def test_xtreme_score_groups_and_partial_summaries():
    from xstilts.metrics.xtreme import xtreme_score

    full = {
        "xnli": 79.2,
        "pawsx": 86.4,
        "udpos": 73.8,
        "panx": 65.4,
        "xquad": (76.6 + 60.8) / 2,
        "mlqa": (71.6 + 53.2) / 2,
        "tydiqa": (65.1 + 45.0) / 2,
        "bucc2018": 66.0,
        "tatoeba": 57.3,
    }
    result = xtreme_score(full)
    assert result["partial"] is False and result["missing"] == []
    assert result["score"] == pytest.approx(sum(full.values()) / 9)
    assert result["groups"]["classification"] == pytest.approx((79.2 + 86.4) / 2)
    assert result["groups"]["question_answering"] == pytest.approx((68.7 + 62.4 + 55.05) / 3)
    partial = xtreme_score({"xnli": 80.0, "panx": 60.0, "my_task": 10.0})
    assert partial["partial"] is True and partial["score"] == 70.0
    assert partial["missing"] == ["pawsx", "udpos", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba"]
    assert set(partial["groups"]) == {"classification", "structured_prediction"}


def test_run_summary_marks_xtreme_partial_by_task_and_language():
    from xstilts.results.aggregate import summarize

    def row(target, language, metrics, metric):
        return {
            "chain": [],
            "chain_length": 0,
            "chain_label": "k0-pretrained",
            "target": target,
            "language": language,
            "metric": metric,
            "metrics": metrics,
            "english_dev": {},
        }

    rows = [
        row("xnli", "en", {"accuracy": 80.0}, "accuracy"),
        row("xnli", "de", {"accuracy": 70.0}, "accuracy"),
        row("xquad", "ro", {"exact_match": 10.0, "f1": 20.0}, "squad"),
        row("xquad", "en", {"exact_match": 60.0, "f1": 80.0}, "squad"),
    ]
    chain = summarize("t", rows)["chains"]["k0-pretrained"]
    xtreme = chain["xtreme"]
    assert xtreme["tasks"] == {"xnli": 75.0, "xquad": 70.0}, "XQuAD ro is not part of the XTREME score"
    xquad = chain["targets"]["xquad"]
    assert xquad["average"]["score"] == 70.0 and xquad["extra_languages"] == ["ro"], "ro is kept apart, not averaged in"
    assert xquad["average_all_languages"]["score"] == 42.5 and xquad["scores"]["ro"] == 15.0
    assert (
        xtreme["partial"] is True
        and len(xtreme["missing_languages"]["xnli"]) == 13
        and "ro" not in xtreme["missing_languages"]["xquad"]
    )
