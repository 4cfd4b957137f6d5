"""Training settings that make a stage of the tiny test encoder take a fraction of a second (tests only)."""

FAST = {
    "max_steps": 2,
    "batch_size": 8,
    "eval_every_steps": 2,
    "eval_examples": 8,
    "learning_rate": 1e-3,
    "max_length": 64,
    "doc_stride": 32,
}
