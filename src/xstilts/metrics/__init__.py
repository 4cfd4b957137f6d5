"""Metrics as pure functions, exact to the official definitions (docs/protocol.md, "Metrics"), the per-unit
statistics each evaluation stores, and the representation measures the diagnostics use.

A leaf package: numpy and the standard library only, imported by tasks, evaluation and results alike.
"""
