"""Line-oriented text files: the line iterator the other readers build on, and plain-text corpora."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from xstilts.errors import DataError


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending); an unreadable file raises DataError."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\n").rstrip("\r")


def read_text_examples(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Plain text, one example per non-blank line, as (line number, {"text": line}) (masked-LM corpora)."""
    for number, line in read_lines(path):
        if line.strip():
            yield number, {"text": line}
