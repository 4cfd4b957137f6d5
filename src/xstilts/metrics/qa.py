"""Extractive QA metrics: the SQuAD v1.1 evaluation script's EM and F1 (used by XQuAD and TyDiQA-GoldP).

Per question: the maximum over gold answers of exact match and token F1, averaged over all questions,
x100; a question without a prediction scores 0. SQuAD v2.0 no-answer questions have no gold text:
the empty prediction is the correct one (the v2.0 script's rule).
"""

from __future__ import annotations

import collections
import re
import string
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence

_ASCII_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, replace a/an/the by a space, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens overlap; no common token gives 0, also when both sides normalise to nothing."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def answer_scores(
    predictions: Sequence[str | None],
    golds: Sequence[Sequence[str]],
    em: Callable[[str, str], float] = exact_match,
    token_f1: Callable[[str, str], float] = f1,
) -> list[tuple[float, float]]:
    """(EM, F1) in 0..1 of each question's prediction against its gold answer texts.

    A missing prediction (None) scores 0. A question whose gold list is empty is unanswerable
    (SQuAD v2.0): it scores 1 when the prediction is empty and 0 otherwise.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    scores = []
    for prediction, answers in zip(predictions, golds):
        if prediction is None:
            scores.append((0.0, 0.0))
        elif not answers:
            scores.append((float(prediction == ""), float(prediction == "")))
        else:
            scores.append(
                (max(em(prediction, gold) for gold in answers), max(token_f1(prediction, gold) for gold in answers))
            )
    return scores


def score_answers(
    predictions: Sequence[str | None],
    golds: Sequence[Sequence[str]],
    em: Callable[[str, str], float] = exact_match,
    token_f1: Callable[[str, str], float] = f1,
) -> dict[str, float]:
    """EM and F1 x100 over the questions (`answer_scores` per question)."""
    scores = answer_scores(predictions, golds, em, token_f1)
    if not golds:
        raise ValueError("QA scores of an empty evaluation set are undefined")
    total_em = total_f1 = 0.0
    for question_em, question_f1 in scores:  # summed in order, as the official script
        total_em += question_em
        total_f1 += question_f1
    return {"exact_match": 100.0 * total_em / len(golds), "f1": 100.0 * total_f1 / len(golds)}


def mlqa_measures(language: str) -> tuple[Callable[[str, str], float], Callable[[str, str], float]]:
    """MLQA's EM and F1 for contexts and questions in `language`."""
    return (lambda p, g: mlqa_exact_match(p, g, language), lambda p, g: mlqa_f1(p, g, language))


def squad_scores(predictions: Mapping[str, str], gold_answers: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """The official script's interface: question id -> prediction, question id -> gold texts."""
    ids = list(gold_answers)
    return score_answers([predictions.get(i) for i in ids], [gold_answers[i] for i in ids])


# --- MLQA (mlqa_evaluation_v1.py) --------------------------------------------------------------------

MLQA_PUNCTUATION = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")} | set(
    string.punctuation
)
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),  # as the official script: in effect every "ال", inside words too
}
_MLQA_NO_ARTICLES = ("hi", "zh")
_MLQA_WHITESPACE = ("en", "es", "hi", "vi", "de", "ar")
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _mixed_segmentation(text: str) -> list[str]:
    """zh: every character in U+4E00-U+9FA5 (and every punctuation mark) is its own token."""
    tokens, pending = [], ""
    for char in text:
        if _CJK.search(char) or char in MLQA_PUNCTUATION:
            tokens += pending.split()
            pending = ""
            tokens.append(char)
        else:
            pending += char
    return tokens + pending.split()


def mlqa_normalize(text: str, language: str) -> str:
    """Lower-case, drop Unicode (P*) and ASCII punctuation, drop the language's articles, re-tokenise."""
    if language not in _MLQA_ARTICLES and language not in _MLQA_NO_ARTICLES:
        raise ValueError(f"MLQA has no normalisation for language {language!r}; expected one of en es de vi ar hi zh")
    text = "".join(ch for ch in text.lower() if ch not in MLQA_PUNCTUATION)
    if language in _MLQA_ARTICLES:
        text = _MLQA_ARTICLES[language].sub(" ", text)
    tokens = text.split() if language in _MLQA_WHITESPACE else _mixed_segmentation(text)
    return " ".join(token for token in tokens if token.strip())


def mlqa_exact_match(prediction: str, gold: str, language: str) -> float:
    return float(mlqa_normalize(prediction, language) == mlqa_normalize(gold, language))


def mlqa_f1(prediction: str, gold: str, language: str) -> float:
    prediction_tokens = mlqa_normalize(prediction, language).split()
    gold_tokens = mlqa_normalize(gold, language).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(prediction_tokens), num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def mlqa_scores(predictions: Sequence[str | None], golds: Sequence[Sequence[str]], language: str) -> dict[str, float]:
    """MLQA EM and F1 x100; `language` is that of the context and question."""
    return score_answers(predictions, golds, *mlqa_measures(language))
