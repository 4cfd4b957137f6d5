"""The run directory and everything in it: its layout, the stage store, typed records, the run lock.

The only code that names a file inside a run or stage directory. Training writes through it; the report,
status, export and every other reader read through it and its integrity checks. It imports only the leaf
modules (errors, names, files) and never torch.
"""
