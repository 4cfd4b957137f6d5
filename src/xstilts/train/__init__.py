"""Training one stage: the model (encoder + heads), the chain modes' code (`modes/`), multi-task mixtures, the loop;
and merging trained encoders without training (`merging`, the merge methods' code in `merges/`)."""
