"""The code of each merge method (declared in `xstilts.chain_modes`), one module per method.

Each module has `combine(deltas, weights, density)`: one tensor's task vectors (each fine-tuned tensor minus the
base's, in float32), one weight (lambda) per task vector, and the fraction kept (None for methods without one)
-> the combined delta that `xstilts.train.merging.merge_states` adds to the base. The methods are PEFT's
(`peft.utils.merge_utils`); `tests/test_merging.py` checks them against the papers on small known tensors.
"""
