"""Evaluation: zero-shot inference with a trained model, retrieval with a bare encoder, probes of the
encoder (diagnostics), and `xstilts score` for predictions made elsewhere. The metrics themselves are
pure functions in `xstilts.metrics`."""
