"""The errors and warnings a user sees, and how the command line reports them.

Every command catches these at its boundary (`xstilts.cli.main`) and prints one plain line per problem:
exit status 2 for bad input (a config, a data file, an argument), 1 for a run that failed for another
reason (training diverged, the run directory is held by another run, the disk is full). A traceback is
printed only with `--debug` or `XSTILTS_DEBUG=1`.
"""

from __future__ import annotations

import errno

BAD_INPUT = 2
RUN_FAILED = 1


class XstiltsError(Exception):
    """Base class: the message alone must tell the user what is wrong and where. Bad input (exit status 2)."""

    exit_status = BAD_INPUT


class ConfigError(XstiltsError):
    """One or more problems in an experiment config, each already formatted as `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self) -> tuple:
        return type(self), (self.problems,)


class _Located:
    """`path[:line]: message`, with the path and line kept for callers that group problems by file."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")  # type: ignore[call-arg]

    def __reduce__(self) -> tuple:  # picklable (errors raised in Ray workers travel back to the driver)
        return type(self), (self.path, self.message, self.line)


class DataError(_Located, XstiltsError):
    """Malformed input data. Always names the file and, where there is one, the line or record."""


class RunError(XstiltsError):
    """A run that could not go on although its input is valid (exit status 1): what happened, where, what to try."""

    exit_status = RUN_FAILED


class DataWarning(_Located, UserWarning):
    """Input that is legal but suspicious (an extra column, a duplicate id). `xstilts data check` lists them."""


def describe_os_error(error: OSError) -> str:
    """One line for an I/O error: the path, the system's reason, and for a full disk what to do next."""
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "(no path given by the system)"
    message = f"{where}: {error.strerror or error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        message += "; free some space and run the same command again: finished stages are kept and the run resumes"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        message += "; choose a directory you can write to (output_dir in the config, or --output-dir)"
    return message
