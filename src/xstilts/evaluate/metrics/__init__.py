"""Metrics as pure functions, exact to the official definitions (protocol.md section 4)."""
