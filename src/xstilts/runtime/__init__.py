"""Where the computation runs: the accelerator, the main-process checks, mixed precision, CPU dropout, peak memory.

A leaf package (it imports only torch, accelerate and `xstilts.settings`): training, evaluation,
diagnostics and latency all reach the device through it.
"""
