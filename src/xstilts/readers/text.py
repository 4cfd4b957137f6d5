"""Text files as every reader sees them: UTF-8 decoded line by line, so a bad byte names its file and line.

The other readers build on these three functions; none of them opens a text file itself. Lines are
split on "\\n" only (a "\\r" before it is dropped by `read_lines`), so a stray carriage return inside a
field never splits a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xstilts.errors import DataError


def _open_binary(path: Path) -> Any:
    try:
        return path.open("rb")
    except IsADirectoryError:
        raise DataError(path, "expected a file, found a directory") from None
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from None


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            path,
            f"invalid UTF-8 (byte {error.object[error.start]:#04x} at column {error.start + 1}); files must be UTF-8 encoded",
            line,
        ) from None


def decoded_lines(path: str | Path) -> Iterator[str]:
    """Every line of the file, decoded, with its line ending kept (what `csv.reader` expects)."""
    path = Path(path)
    with _open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                yield _decode(raw, path, number)
        except OSError as error:
            raise DataError(path, f"cannot read: {error.strerror}") from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending)."""
    for number, line in enumerate(decoded_lines(path), start=1):
        yield number, line.rstrip("\n").rstrip("\r")


def read_text(path: str | Path) -> str:
    """The whole file as one string (JSON documents, YAML configs)."""
    return "".join(decoded_lines(path))


def read_text_examples(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Plain text, one example per non-blank line, as (line number, {"text": line}) (masked-LM corpora)."""
    for number, line in read_lines(path):
        if line.strip():
            yield number, {"text": line}
