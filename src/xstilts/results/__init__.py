"""From evaluations to answers: aggregation over languages, the bootstrap and t intervals, the effects of
chain length with their verdicts and the curve they follow, the combination study (chains against merges and
mixtures), dev-based choices, the search's regret, and the calibration simulator.

Reads runs through `xstilts.rundir`; never imports torch.
"""
