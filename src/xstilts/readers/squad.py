"""SQuAD-format JSON: SQuAD v1.1/v2.0, XQuAD, MLQA (whose `version` is a number) and TyDiQA-GoldP.

Question ids are kept but never used as keys: TyDiQA-GoldP files from the XTREME script repeat them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xstilts.errors import DataError


def read_squad_json(path: str | Path) -> list[dict[str, Any]]:
    """Flatten data -> paragraphs -> qas into QA records in the Hugging Face `squad` layout.

    SQuAD v2.0 questions marked `is_impossible` get empty answer lists (their `plausible_answers`
    are not gold answers).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(path, f"invalid JSON ({error.msg})", error.lineno) from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(path, 'expected a SQuAD-format object with a "data" list')
    records = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(path, f"data[{a}].paragraphs[{p}]: expected a string 'context'")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa.get("question"), str) or "id" not in qa:
                    raise DataError(path, f"{where}: expected 'id' and a string 'question'")
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                try:
                    texts = [answer["text"] for answer in answers]
                    starts = [int(answer["answer_start"]) for answer in answers]
                except (KeyError, TypeError, ValueError):
                    raise DataError(path, f"{where}: every answer needs 'text' and an integer 'answer_start'") from None
                records.append(
                    {
                        "id": str(qa["id"]),
                        "question": qa["question"],
                        "context": context,
                        "answers": {"text": texts, "answer_start": starts},
                    }
                )
    return records
