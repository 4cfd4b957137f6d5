"""Shared fixtures: a tiny tokenizer and encoder built here (nothing is downloaded), and tiny demo data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches (features, demo encoder) go to a per-session directory, never to the user's."""
    directory = tmp_path_factory.mktemp("xstilts-cache")
    os.environ["XSTILTS_CACHE"] = str(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer XLM-R-architecture encoder with a tokenizer trained on demo text."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xstilts.demo.benchmark import corpus_sentences
    from xstilts.demo.pretrain import train_tokenizer

    directory = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = train_tokenizer(corpus_sentences(300), vocab_size=600, max_length=254)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_encoder_dir: Path):
    from xstilts.train.modeling import load_tokenizer

    return load_tokenizer(tiny_encoder_dir)


@pytest.fixture(scope="session")
def demo_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo benchmark at a tiny size: {task name: config task definition}."""
    from xstilts.demo.benchmark import write_benchmark

    return write_benchmark(tmp_path_factory.mktemp("demo-data"), train_size=48, eval_size=12)


@pytest.fixture(scope="session")
def demo_registry(demo_tasks: dict):
    from xstilts.config import TaskDefinition
    from xstilts.tasks.registry import TaskRegistry

    return TaskRegistry(TaskDefinition(**definition).to_spec(name) for name, definition in demo_tasks.items())
