"""The run lock: one process (or one torchrun / Ray job) owns a run directory at a time.

`RUN_DIR/.xstilts.lock` is created atomically (O_CREAT | O_EXCL) and holds the owner's host, pid, process
start time and command; it is removed when the owner exits normally. A second run gets an error naming
the owner. A lock left by a process that died (same host, pid gone or reused by another program) is taken
over with a warning; a lock from another host cannot be checked and must be removed by hand. Only the
main process of a multi-process job takes the lock; its other processes write nothing of their own.
Commands that only read a run (report, status) never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xstilts.errors import RunError
from xstilts.rundir.layout import LOCK_FILE

log = logging.getLogger(__name__)

_HELD: dict[Path, int] = {}  # lock path -> nesting depth in this process (run_on_ray ends in run_once)


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), to tell a live owner from a new process that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a live process of another user
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _owner_text(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started', '?')}: {owner.get('command', '?')}"


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def describe_lock(run_dir: str | Path) -> str:
    """One line for `xstilts status`: who holds the run directory now, if anyone."""
    owner = _read_owner(Path(run_dir) / LOCK_FILE)
    if owner is None:
        return "not running (no lock)"
    if not owner:
        return f"locked ({Path(run_dir) / LOCK_FILE} is unreadable)"
    if owner.get("host") == socket.gethostname() and not _alive(owner):
        return f"not running (a lock was left by {_owner_text(owner)}; the next run takes it over)"
    return f"running: {_owner_text(owner)}"


def is_main_process_by_environment() -> bool:
    """Rank 0 (or no distributed launcher): the process that owns the lock of a torchrun / accelerate job."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of `run_dir` for the duration of the block (re-entrant within one process)."""
    path = (Path(run_dir) / LOCK_FILE).absolute()
    if not is_main_process_by_environment():
        yield
        return
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    _acquire(path)
    _HELD[path] = 1
    try:
        yield
    finally:
        del _HELD[path]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _acquire(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    for _ in range(50):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner == {}:  # being written by its owner right now, or damaged: look again shortly
                time.sleep(0.1)
                owner = _read_owner(path)
            if owner is None:
                continue  # released meanwhile
            if owner and owner.get("host") == me["host"] and not _alive(owner):
                _take_over(path, owner)
                continue
            held_by = _owner_text(owner) if owner else "an unreadable lock file"
            raise RunError(
                f"{path.parent} is in use by another xstilts run ({held_by}); wait for it to finish, or, if no such run is "
                f"alive any more, delete {path}"
            ) from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(me))
            handle.flush()
            os.fsync(handle.fileno())
        return
    raise RunError(f"{path}: could not take the run lock (other processes keep taking it)")


def _take_over(path: Path, owner: dict[str, Any]) -> None:
    """Remove a stale lock, unless another process on this host took it over first (a local flock guards the step)."""
    guard = path.with_name(path.name + ".takeover")
    with guard.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if _read_owner(path) == owner:
                log.warning("taking over the lock of %s: its owner is gone (%s)", path.parent, _owner_text(owner))
                path.unlink()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
