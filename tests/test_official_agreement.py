"""xstilts' scorers against the official definitions on every real sample, gold and imperfect (1e-9).

QA is checked against transcriptions of the official scripts (reference_scorers.py); tagging against
seqeval 0.0.12 itself (installed without its Keras requirement: only its metrics module is used).
"""

from __future__ import annotations

import json
import random

import pytest
import reference_scorers as official
from conftest import REAL_DATA

from xstilts.evaluate.scoring import score_file
from xstilts.tasks import default_registry

pytestmark = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data samples not found at {REAL_DATA}")


def imperfect_answer(rng: random.Random, context: str, answer: str) -> str:
    """Gold-like predictions with the usual errors: a word dropped or added, empty, elsewhere."""
    words = answer.split()
    choice = rng.randrange(6)
    if choice == 0:
        return answer
    if choice == 1 and len(words) > 1:
        return " ".join(words[1:])
    if choice == 2:
        start = context.find(answer)
        return context[max(0, start - 12) : start + len(answer)]
    if choice == 3:
        return ""
    if choice == 4:
        return answer[: max(1, len(answer) // 2)]
    start = rng.randrange(max(1, len(context) - 20))
    return context[start : start + rng.randrange(1, 20)]


QA_FILES = [
    ("xquad", lang, REAL_DATA / "xquad" / f"xquad.{lang}.json")
    for lang in "ar de el en es hi ro ru th tr vi zh".split()
]
QA_FILES += [
    ("mlqa", lang, REAL_DATA / "mlqa" / f"dev-context-{lang}-question-{lang}.json")
    for lang in "ar de en es hi vi zh".split()
]
QA_FILES += [("tydiqa", "en", REAL_DATA / "tydiqa" / "tydiqa.goldp.en.train.json")]


@pytest.mark.parametrize("task, language, path", QA_FILES, ids=[f"{t}-{lang}" for t, lang, _ in QA_FILES])
def test_qa_scores_match_the_official_scripts(tmp_path, task, language, path):
    dataset = json.loads(path.read_text(encoding="utf-8"))["data"]
    rng = random.Random(f"{task}{language}")
    gold, imperfect = {}, {}
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]["text"]
                gold[qa["id"]] = answer
                if rng.random() < 0.9:  # some questions get no prediction at all
                    imperfect[qa["id"]] = imperfect_answer(rng, paragraph["context"], answer)
    spec = default_registry().get(task)
    for predictions in (gold, imperfect):
        predictions_path = tmp_path / "predictions.json"
        predictions_path.write_text(json.dumps(predictions, ensure_ascii=False), encoding="utf-8")
        ours = score_file(spec, language, path, predictions_path)
        reference = (
            official.mlqa_evaluate(dataset, predictions, language)
            if task == "mlqa"
            else official.squad_evaluate(dataset, predictions)
        )
        assert ours["exact_match"] == pytest.approx(reference["exact_match"], abs=1e-9)
        assert ours["f1"] == pytest.approx(reference["f1"], abs=1e-9)
    assert ours["f1"] < 90, "the imperfect predictions really are imperfect"


TAG_FILES = [("udpos", p) for p in sorted((REAL_DATA / "udpos").glob("*.tsv"))] + [
    ("panx", REAL_DATA / "panx" / "af" / "test")
]


@pytest.mark.parametrize("task, path", TAG_FILES, ids=[p.name if t == "udpos" else "panx-af" for t, p in TAG_FILES])
def test_tagging_scores_match_seqeval_0_0_12(tmp_path, task, path):
    seqeval = pytest.importorskip(
        "seqeval.metrics", reason="reference seqeval 0.0.12 not installed (pip install --no-deps seqeval==0.0.12)"
    )
    from xstilts.readers.conll import read_word_tag

    sentences = read_word_tag(path, strip_language_prefix=task == "panx")
    golds = [s["tags"] for s in sentences]
    labels = sorted({t for g in golds for t in g})
    rng = random.Random(path.name)
    imperfect = [[t if rng.random() < 0.85 else rng.choice(labels) for t in g] for g in golds]
    gold_path = tmp_path / "gold.tsv"
    gold_path.write_text(
        "\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s["tokens"], s["tags"])) for s in sentences) + "\n",
        encoding="utf-8",
    )
    for predicted in (golds, imperfect):
        predictions_path = tmp_path / "predictions.txt"
        predictions_path.write_text("\n\n".join("\n".join(p) for p in predicted) + "\n", encoding="utf-8")
        ours = score_file(default_registry().get(task), "en", gold_path, predictions_path)
        assert ours["f1"] == pytest.approx(100 * seqeval.f1_score(golds, predicted), abs=1e-9)
        assert ours["precision"] == pytest.approx(100 * seqeval.precision_score(golds, predicted), abs=1e-9)
        assert ours["recall"] == pytest.approx(100 * seqeval.recall_score(golds, predicted), abs=1e-9)
        assert ours["token_accuracy"] == pytest.approx(100 * seqeval.accuracy_score(golds, predicted), abs=1e-9)
    assert ours["f1"] < 95
