"""Errors a user can fix. The CLI prints them as plain lines (no traceback) and exits with status 2."""

from __future__ import annotations


class XstiltsError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class ConfigError(XstiltsError):
    """One or more problems in an experiment config, each already formatted as `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(XstiltsError):
    """Malformed input data. Always names the file and, where there is one, the line or record."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
