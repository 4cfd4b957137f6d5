"""Evaluation: zero-shot inference with a trained model, retrieval with a bare encoder, the metrics, and
`xstilts score` for predictions made elsewhere."""
