"""Training one stage: the model (encoder + heads), chain-mode adapters, multi-task mixtures, the loop."""
