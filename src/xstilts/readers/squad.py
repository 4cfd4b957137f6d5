"""SQuAD-format JSON: SQuAD v1.1/v2.0, XQuAD, MLQA (whose `version` is a number) and TyDiQA-GoldP.

Question ids are kept but never used as keys: TyDiQA-GoldP files from the XTREME script repeat them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xstilts.errors import DataError
from xstilts.files import read_text


def read_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """Flatten data -> paragraphs -> qas into QA records in the Hugging Face `squad` layout.

    SQuAD v2.0 questions marked `is_impossible` get empty answer lists (their `plausible_answers`
    are not gold answers). Every level is type-checked, so a malformed file names the record at fault.
    """
    path = Path(path)
    try:
        document = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", error.lineno) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(path, 'expected a SQuAD-format object with a "data" list')
    records = []
    for a, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(path, f"data[{a}]: expected an object with a 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            questions = paragraph.get("qas", []) if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not isinstance(questions, list):
                raise DataError(path, f"data[{a}].paragraphs[{p}]: expected a string 'context' and a 'qas' list")
            for q, qa in enumerate(questions):
                records.append(_qa_record(path, f"data[{a}].paragraphs[{p}].qas[{q}]", qa, context))
    if not records:
        raise DataError(path, "no questions in the file")
    return records


def _qa_record(path: Path, where: str, qa: Any, context: str) -> dict[str, Any]:
    if not isinstance(qa, dict) or not isinstance(qa.get("question"), str) or not isinstance(qa.get("id"), (str, int)):
        raise DataError(path, f"{where}: expected 'id' and a string 'question'")
    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(answer, dict) for answer in answers):
        raise DataError(path, f"{where}: 'answers' must be a list of objects")
    texts, starts = [], []
    for answer in answers:
        start = answer.get("answer_start")
        if not isinstance(answer.get("text"), str) or not isinstance(start, int) or isinstance(start, bool):
            raise DataError(path, f"{where}: every answer needs a string 'text' and an integer 'answer_start'")
        if not 0 <= start <= len(context):
            raise DataError(path, f"{where}: answer_start {start} lies outside the context (0..{len(context)})")
        texts.append(answer["text"])
        starts.append(start)
    return {
        "id": str(qa["id"]),
        "question": qa["question"],
        "context": context,
        "answers": {"text": texts, "answer_start": starts},
    }
