"""The peak memory of a piece of work: host RSS on CPU, allocated memory on a CUDA device.

Linux keeps a process's high-water mark (VmHWM) and resets it when "5" is written to /proc/self/clear_refs, so the
peak of one piece of work is exact without a sampling thread. Where that file cannot be written (another OS, a
locked-down container) the peak falls back to `ru_maxrss`, which never goes down: a later piece then reports
at least the peak of an earlier one (`exact` says which was measured).
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass
class Peak:
    """What `peak_memory` measured: bytes at the highest point, on which device, and whether it is this block's own."""

    bytes: int = 0
    device: str = "cpu"
    exact: bool = True


def _reset_host_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _host_peak() -> int:
    if STATUS.is_file():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux kibibytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@contextlib.contextmanager
def peak_memory() -> Iterator[Peak]:
    """Measure the block's peak: on a CUDA device its allocated memory (torch's peak statistics), else the host's RSS."""
    peak = Peak()
    cuda = "torch" in sys.modules and sys.modules["torch"].cuda.is_available()
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
        peak.device = torch.cuda.get_device_name()
    else:
        peak.exact = _reset_host_peak()
    try:
        yield peak
    finally:
        if cuda:
            import torch

            peak.bytes = int(torch.cuda.max_memory_allocated())
        else:
            peak.bytes = _host_peak()


def device_memory() -> tuple[int, str]:
    """The memory a run can use and where: the CUDA device's total, else the host's RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.get_device_properties(0).total_memory), torch.cuda.get_device_name()
    except ImportError:
        pass
    return int(psutil.virtual_memory().total), "host RAM"
