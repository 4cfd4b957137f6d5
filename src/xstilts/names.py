"""Names that become paths: task, variant, mixture, head and language names.

They name stage directories (`stages/<identity>-<task>`), result files (`results/<chain>/<task>/<lang>.json`),
data files (`{split}-{language}.jsonl`) and model modules, so they must be plain identifiers: letters,
digits, `_` and `-`, not starting with `-`, at most 64 characters. No path separator, no dot, nothing a
shell or a file system reads specially. The config checks them with their key path; the task registry
and the stage store check them again, so a name that bypassed the config still cannot leave the run
directory.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, '_' and '-' only, not starting with '-', at most 64 characters (names become directory and file names)"


def name_problem(value: object) -> str | None:
    """Why `value` is not a valid name, or None when it is."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        return f"invalid name {value!r}: use {NAME_RULE}"
    return None


def _checked(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Name = Annotated[str, AfterValidator(_checked)]
"""A str field of a config that must be a valid name (validated with the key path)."""
