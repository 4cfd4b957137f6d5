"""Files as the project reads and writes them: UTF-8 decoded line by line, atomic, strict JSON.

Reading: every reader decodes through `decoded_lines`/`read_lines`/`read_text`, so a bad byte names its
file and line; lines are split on "\\n" only (a "\\r" before it is dropped by `read_lines`), so a stray
carriage return inside a field never splits a record. Writing: every file is written aside and renamed
into place (`atomic_writer`), so a reader, a kill or a full disk never leaves half a file under the final
name; JSON never holds NaN or infinity (`json_text`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from xstilts.errors import DataError

log = logging.getLogger(__name__)


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


def read_npy(path: str | Path) -> Any:
    """One .npy array, never a pickle, its header checked against the file before anything is allocated.

    A header is a claim: a damaged or hostile file can claim a (10^12, 1024) array in a few bytes, and a plain
    `np.load` allocates it before finding the data missing (an "out of memory" that names no file). The file is
    mapped first (the mapping fails when the claim exceeds the file), and the claim must be exactly what the file
    holds after its header; only then is it read into memory."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        raise DataError(path, "expected a file, found a directory")
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # "mmap length is greater than file size", object arrays, a bad header
        if "Python objects" in str(error):
            raise DataError(path, "holds Python objects (a pickle), which xstilts never loads") from None
        size = path.stat().st_size
        raise DataError(
            path, f"not a readable .npy array of what its header claims ({error}; the file holds {size:,} bytes)"
        ) from None
    except (EOFError, OSError) as error:
        raise DataError(path, f"not a readable .npy array ({error})") from None
    if not isinstance(mapped, np.ndarray):
        raise DataError(path, "expected one .npy array, found an archive")
    offset = getattr(mapped, "offset", None)
    held = path.stat().st_size - (offset or 0)
    if offset is not None and mapped.nbytes != held:
        raise DataError(
            path, f"its header claims {mapped.nbytes:,} bytes of data, but the file holds {held:,}; it is damaged"
        )
    array = np.array(mapped)
    del mapped  # close the mapping
    return array


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, so it serialises as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def json_text(payload: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN, no Infinity), the one way the project serialises what it writes or prints."""
    return json.dumps(finite_json(payload), indent=indent, ensure_ascii=False, default=str, allow_nan=False)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name `path` in a write error that does not name a file (a full disk in `write()`, or safetensors' own
    error type wrapping the system's), so the user learns where the space ran out."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except Exception as error:  # safetensors reports I/O failures as SafetensorError("... Os { code: 28, ...")
        code = next((number for number, texts in _SYSTEM_ERRORS.items() if any(t in str(error) for t in texts)), None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from error


# How safetensors' Rust I/O errors spell the system's error numbers ("Os { code: 28, ...}", "(os error 28)").
_SYSTEM_ERRORS = {
    code: (f"code: {code}", f"os error {code}") for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
}


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text handle on a temporary file beside `path`; on success it is flushed to disk and renamed over
    `path`, on any error it is removed. A reader (or a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_beside(path)
    try:
        with writing(path), tmp.open("w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def scratch_beside(path: Path) -> Path:
    """A new empty file beside `path` (`.NAME.XXXX.tmp`), created exclusively: writers in other threads or
    processes never share one, and no existing file or link is written through."""
    handle, name = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_writer(path) as handle:
        handle.write(text)


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(descriptor)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json_text(payload) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file the project wrote; a damaged one raises DataError naming it."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(path, f"damaged JSON ({error.msg}, column {error.colno})", error.lineno) from None


def read_json_or_none(path: Path, what: str = "file") -> Any:
    """The file's JSON, or None when it is missing or damaged (a damaged one is logged as a warning)."""
    if not Path(path).is_file():
        return None
    try:
        return read_json(path)
    except DataError as error:
        log.warning("%s; ignoring this %s", error, what)
        return None
