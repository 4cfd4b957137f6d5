"""`xstilts score` on XTREME leaderboard formats."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xstilts.evaluate.scoring import score_directories, score_file
from xstilts.tasks import default_registry


def run_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xstilts", "score", *args], capture_output=True, text=True, timeout=120
    )


def test_qa_predictions_by_question_id(tmp_path):
    gold = tmp_path / "gold.json"
    gold.write_text(
        json.dumps(
            {
                "version": 1.0,
                "data": [
                    {
                        "paragraphs": [
                            {
                                "context": "Der Hund bellt laut.",
                                "qas": [
                                    {
                                        "id": "a",
                                        "question": "Wer?",
                                        "answers": [{"text": "Der Hund", "answer_start": 0}],
                                    },
                                    {"id": "b", "question": "Wie?", "answers": [{"text": "laut", "answer_start": 15}]},
                                    {
                                        "id": "a",
                                        "question": "Wer noch?",
                                        "answers": [{"text": "Hund", "answer_start": 4}],
                                    },
                                ],
                            }
                        ]
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"a": "Hund", "b": "sehr laut"}), encoding="utf-8")
    mlqa = score_file(default_registry().get("mlqa"), "de", gold, predictions)
    # MLQA de drops "der": a -> EM 1 twice; b: "sehr laut" vs "laut" -> EM 0, F1 2/3.
    assert mlqa["exact_match"] == pytest.approx(200 / 3) and mlqa["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 3)
    squad = score_file(default_registry().get("xquad"), "de", gold, predictions)
    # SQuAD rules keep "der": a (first) -> F1 2/3 against "Der Hund".
    assert squad["f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)


def test_cli_scores_labels_and_tag_directories(tmp_path):
    gold = tmp_path / "gold.tsv"
    gold.write_text('"A ""quoted"" one"\tB\t1\nC\tD\t0\nE\tF\t0\n', encoding="utf-8")
    predictions = tmp_path / "predictions.txt"
    predictions.write_text("1\n1\n0\n", encoding="utf-8")
    result = run_score("--task", "pawsx", "--lang", "de", "--gold", str(gold), "--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["accuracy"] == pytest.approx(200 / 3)

    gold_dir, predictions_dir = tmp_path / "g", tmp_path / "p"
    gold_dir.mkdir(), predictions_dir.mkdir()
    (gold_dir / "test-af.tsv").write_text(
        "Jan\tB-PER\nSmuts\tI-PER\nwoon\tO\n\nIn\tO\nPretoria\tB-LOC\n", encoding="utf-8"
    )
    (predictions_dir / "test-af.tsv").write_text("B-PER\nI-PER\nO\n\nO\nB-ORG\n", encoding="utf-8")
    (gold_dir / "test-de.tsv").write_text("Berlin\tB-LOC\n", encoding="utf-8")
    (predictions_dir / "test-de.tsv").write_text("B-LOC\n", encoding="utf-8")
    out = json.loads(
        run_score("--task", "panx", "--gold-dir", str(gold_dir), "--predictions-dir", str(predictions_dir)).stdout
    )
    assert out["languages"]["af"]["f1"] == pytest.approx(50.0) and out["languages"]["de"]["f1"] == 100.0
    assert out["average"]["score"] == pytest.approx(75.0) and "en" in out["missing_languages"]

    (predictions_dir / "test-af.tsv").write_text("B-PER\nI-PER\n\nO\nB-ORG\n", encoding="utf-8")
    refused = run_score("--task", "panx", "--gold-dir", str(gold_dir), "--predictions-dir", str(predictions_dir))
    assert refused.returncode == 2 and "sentence 1: 2 predicted tags for 3 gold words" in refused.stderr
    assert (
        run_score("--task", "panx", "--lang", "xx", "--gold", str(gold), "--predictions", str(predictions)).returncode
        == 2
    )


def test_directories_need_matching_files(tmp_path):
    from xstilts.errors import XstiltsError

    with pytest.raises(XstiltsError, match="no language of xnli has test-LANG"):
        score_directories(default_registry().get("xnli"), tmp_path, tmp_path)
