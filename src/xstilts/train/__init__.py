"""Training one stage: the model (encoder + heads), the chain modes' code (`modes/`), multi-task mixtures, the loop."""
