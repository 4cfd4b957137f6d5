"""Reading a run back: the report (tables, plots) and the latency harness."""
