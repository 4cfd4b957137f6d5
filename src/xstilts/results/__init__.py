"""The run directory and everything in it: its layout, the stage store, typed records and the one aggregation.

The training side writes through this package; the report, status, latency and every other reader read
through it. Nothing here imports torch.
"""
