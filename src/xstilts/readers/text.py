"""Plain text as examples: one example per non-blank line (masked-LM corpora).

Decoding (UTF-8, line by line, a bad byte named by file and line) lives in `xstilts.files`, under every
reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xstilts.files import read_lines


def read_text_examples(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Plain text, one example per non-blank line, as (line number, {"text": line}) (masked-LM corpora)."""
    for number, line in read_lines(path):
        if line.strip():
            yield number, {"text": line}
