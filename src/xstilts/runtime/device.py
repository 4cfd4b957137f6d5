"""The device: one Accelerator per process, the main-process checks, and the precision of a stage.

Every place that touches a device (training, evaluation, diagnostics, latency) asks here, so a change of
backend or precision policy is made once.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch
from accelerate import Accelerator

from xstilts.settings import TrainingSettings


@functools.cache
def get_accelerator() -> Accelerator:
    """One Accelerator per process (device placement, backward, distributed wrapping).

    Precision is not set here: accelerate fixes it once per process, while stages may differ, so
    each stage enters its own `autocast` instead.
    """
    from accelerate.utils import DistributedDataParallelKwargs

    # A mixture stage trains one member's head per step; the others' heads get no gradient that step.
    # Launched on CPUs by torchrun (not `accelerate launch --cpu`), accelerate needs to be told to use gloo.
    cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(cpu=cpu_processes, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def release_prepared(accelerator: Accelerator) -> None:
    """Forget the models, optimizers, schedulers and data loaders `accelerator.prepare` registered.

    The process's one Accelerator keeps them for its own bookkeeping: a study of many stages would hold every
    stage's weights, gradients and optimizer state until the process ends (6-7 GB per XLM-R Large stage).
    `Accelerator.free_memory()` does the same and then a full `gc.collect()`, which costs 0.15 s per stage in a
    process holding a study (10 s of the demo's 66 stages); the references dropped here are enough, the
    collector reclaims any cycles on its own schedule.
    """
    for registered in (accelerator._models, accelerator._optimizers, accelerator._schedulers, accelerator._dataloaders):
        registered.clear()


def is_main_process() -> bool:
    """Only the main process writes artifacts (stages, checkpoints, evaluations, results, reports)."""
    return get_accelerator().is_main_process


def wait_for_everyone() -> None:
    get_accelerator().wait_for_everyone()


def autocast(settings: TrainingSettings, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU unless fp32 is asked for; fp32 on CPU (bf16 matmuls are slow there) unless bf16 is asked for."""
    use_bf16 = settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)


def precision_name(settings: TrainingSettings, device: torch.device) -> str:
    return (
        "bf16" if settings.precision == "bf16" or (settings.precision == "auto" and device.type == "cuda") else "fp32"
    )
