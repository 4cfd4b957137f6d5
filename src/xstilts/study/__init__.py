"""A study from config to results: the planner (chains -> stage graph), running a stage, the executors that run
the graph (local, Ray), the search, the latency harness and `xstilts status`."""
