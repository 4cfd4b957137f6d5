"""A study from config to results: the planner (chains -> stage graph), the executors that run the graph
(local, Ray), the run lock and `xstilts status`."""
