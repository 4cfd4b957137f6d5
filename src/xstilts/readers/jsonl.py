"""JSON Lines: one JSON object per line (the canonical format of local task files and demo data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from xstilts.errors import DataError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None
    with handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, f"invalid JSON ({error.msg} at column {error.colno})", line_number) from None
            if not isinstance(record, dict):
                raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line_number)
            yield line_number, record


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
