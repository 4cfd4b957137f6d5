"""Retrieval: BUCC mining and Tatoeba against straightforward numpy implementations, on the real samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REAL_DATA

from xstilts.evaluate.retrieval import (
    best_threshold,
    bucc_f1,
    candidate_id_pairs,
    encode_sentences,
    mine_candidates,
    tatoeba_accuracy,
    tatoeba_predictions,
    unique_texts,
)
from xstilts.readers.retrieval import read_bucc_gold, read_bucc_sentences, read_tatoeba_pair, xtreme_sorted_layout
from xstilts.settings import EmbeddingSettings
from xstilts.settings import default_embedding_layer as default_layer

needs_real = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data samples not found at {REAL_DATA}")


def reference_mining(x: np.ndarray, y: np.ndarray, k: int = 4) -> list[tuple[float, int, int]]:
    """Dense similarity matrix, top-k by sorting, ratio margin, greedy one-to-one: no faiss."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    sim = (x @ y.T) / np.linalg.norm(x, axis=1)[:, None] / np.linalg.norm(y, axis=1)[None, :]
    x_knn = np.sort(sim, axis=1)[:, ::-1][:, :k]
    y_knn = np.sort(sim, axis=0)[::-1, :][:k, :].T
    x_mean, y_mean = x_knn.mean(1), y_knn.mean(1)
    candidates = []
    for i in range(len(x)):
        neighbours = np.argsort(-sim[i], kind="stable")[:k]
        margins = sim[i, neighbours] / ((x_mean[i] + y_mean[neighbours]) / 2)
        candidates.append((margins.max(), i, int(neighbours[margins.argmax()])))
    for j in range(len(y)):
        neighbours = np.argsort(-sim[:, j], kind="stable")[:k]
        margins = sim[neighbours, j] / ((y_mean[j] + x_mean[neighbours]) / 2)
        candidates.append((margins.max(), int(neighbours[margins.argmax()]), j))
    kept, used_x, used_y = [], set(), set()
    for score, i, j in sorted(candidates, key=lambda c: -c[0]):
        if i not in used_x and j not in used_y:
            used_x.add(i), used_y.add(j)
            kept.append((score, i, j))
    return kept


def reference_f1(pairs, gold):
    best = (-1.0, 0)
    correct = 0
    for n, (_, pair) in enumerate(pairs, start=1):
        correct += pair in gold
        f1 = 2 * correct / (n + len(gold))  # 2PR/(P+R) with P = c/n, R = c/g
        best = max(best, (f1, -n))
    return 100 * best[0], -best[1]


def test_default_layer_scales_with_depth():
    assert [default_layer(n) for n in (24, 12, 6, 3, 1)] == [14, 7, 4, 2, 1]
    from xstilts.errors import XstiltsError

    with pytest.raises(XstiltsError, match="embedding layer 9 does not exist"):
        EmbeddingSettings(layer=9).resolved(4)


def test_embeddings_pool_one_layer_and_keep_input_order(tiny_encoder_dir, tiny_tokenizer):
    from xstilts.train.modeling import load_encoder

    encoder = load_encoder(tiny_encoder_dir)
    sentences = ["a b c d e f g", "a", "b c"]
    settings = EmbeddingSettings(layer=1, pooling="mean", max_length=32)
    embeddings = encode_sentences(encoder, tiny_tokenizer, sentences, settings, torch.device("cpu"))
    one = encode_sentences(encoder, tiny_tokenizer, ["b c"], settings, torch.device("cpu"))
    assert embeddings.shape == (3, 32) and np.allclose(embeddings[2], one[0], atol=1e-5), (
        "padding in a batch changes nothing"
    )
    batch = tiny_tokenizer(["b c"], return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch, output_hidden_states=True).hidden_states[1][0]
    assert np.allclose(one[0], hidden.mean(0).numpy(), atol=1e-5)
    cls = encode_sentences(
        encoder, tiny_tokenizer, ["b c"], EmbeddingSettings(layer=1, pooling="cls"), torch.device("cpu")
    )
    assert np.allclose(cls[0], hidden[0].numpy(), atol=1e-5)


@needs_real
def test_bucc_zh_en_mining_matches_a_straightforward_implementation():
    """A tokenizer trained on the sample gives distinct sentences distinct embeddings (no ties to break)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xstilts.demo.pretrain import train_tokenizer

    root = REAL_DATA / "bucc2018"
    source_texts, source_ids = unique_texts(read_bucc_sentences(root / "zh-en.dev.zh"))
    target_texts, target_ids = unique_texts(read_bucc_sentences(root / "zh-en.dev.en"))
    gold = set(read_bucc_gold(root / "zh-en.dev.gold"))
    tokenizer = train_tokenizer(source_texts + target_texts, vocab_size=8000, max_length=126)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    encoder = XLMRobertaModel(config, add_pooling_layer=False)
    # Layer 0 of a random model: token embeddings spread in all directions, so scores are far apart
    # compared with float32 rounding and both implementations must agree on every pair.
    settings = EmbeddingSettings(layer=0, max_length=64, batch_size=256)
    x = encode_sentences(encoder, tokenizer, source_texts, settings, torch.device("cpu"))
    y = encode_sentences(encoder, tokenizer, target_texts, settings, torch.device("cpu"))
    assert len({row.tobytes() for row in x}) == len(x) and len({row.tobytes() for row in y}) == len(y)

    ours = mine_candidates(source_texts, x, target_texts, y)
    reference = reference_mining(x, y)
    assert len(ours) == len(reference)
    assert [(c.source, c.target) for c in ours] == [(source_texts[i], target_texts[j]) for _, i, j in reference]
    assert np.allclose([c.score for c in ours], [s for s, _, _ in reference], atol=1e-5)

    pairs = candidate_id_pairs(ours, source_ids, target_ids)
    threshold = best_threshold(pairs, gold)
    result = bucc_f1(pairs, gold, threshold)
    reference_best, prefix = reference_f1(pairs, gold)
    assert result["f1"] == pytest.approx(reference_best, abs=1e-9)
    assert result["pairs"] == prefix
    assert len(gold) == 257


@needs_real
def test_tatoeba_all_languages_and_the_sorted_english_layout(tiny_encoder_dir, tiny_tokenizer):
    from xstilts.tasks.catalogue import TATOEBA_ISO3
    from xstilts.train.modeling import load_encoder

    encoder = load_encoder(tiny_encoder_dir)
    settings = EmbeddingSettings(max_length=32, batch_size=512)
    assert len(TATOEBA_ISO3) == 41
    for language, code in TATOEBA_ISO3.items():
        pairs = read_tatoeba_pair(
            REAL_DATA / "tatoeba" / f"tatoeba.{code}-eng.{code}", REAL_DATA / "tatoeba" / f"tatoeba.{code}-eng.eng"
        )
        source = encode_sentences(encoder, tiny_tokenizer, [p["source"] for p in pairs], settings, torch.device("cpu"))
        english_texts = [p["target"] for p in pairs]
        english = encode_sentences(encoder, tiny_tokenizer, english_texts, settings, torch.device("cpu"))
        predictions = tatoeba_predictions(source, english)
        upstream = tatoeba_accuracy(predictions, list(range(len(pairs))))
        # XTREME's layout: English sorted, labels = original indices. The same queries in another
        # order score the same (unknown scripts make many sentences tie, so compare by permutation).
        sorted_english, labels = xtreme_sorted_layout(english_texts)
        assert sorted_english == sorted(english_texts) and [english_texts[i] for i in labels] == sorted_english
        assert tatoeba_accuracy(predictions[labels], labels) == pytest.approx(upstream)
        # Independent check of the nearest neighbours with dense numpy: faiss's choice is a best match.
        xs = source / np.linalg.norm(source, axis=1, keepdims=True)
        es = english / np.linalg.norm(english, axis=1, keepdims=True)
        dense = es.astype(np.float64) @ xs.astype(np.float64).T
        assert np.allclose(dense[np.arange(len(dense)), predictions], dense.max(axis=1), atol=1e-5), language


def write_side(directory, stem, matrix, ids):
    np.save(directory / f"{stem}.npy", matrix.astype(np.float32))
    (directory / f"{stem}.ids").write_text("\n".join(ids) + "\n", encoding="utf-8")


def test_retrieval_eval_from_embeddings(tmp_path):
    import json
    import subprocess
    import sys

    from xstilts.evaluate.retrieval import bucc_from_embeddings, tatoeba_from_embeddings

    rng = np.random.default_rng(0)
    source = rng.normal(size=(50, 16))
    order = rng.permutation(50)
    np.save(tmp_path / "de.src.npy", source.astype(np.float32))
    np.save(tmp_path / "de.en.npy", (source[order] + 0.01 * rng.normal(size=(50, 16))).astype(np.float32))
    (tmp_path / "de.labels.txt").write_text("\n".join(map(str, order)) + "\n")
    assert tatoeba_from_embeddings(tmp_path, "de") == {"accuracy": 100.0, "examples": 50}
    (tmp_path / "de.labels.txt").write_text("\n".join(map(str, np.roll(order, 1))) + "\n")
    assert tatoeba_from_embeddings(tmp_path, "de")["accuracy"] == 0.0

    for split, seed in (("dev", 1), ("test", 2)):
        rng = np.random.default_rng(seed)
        parallel = rng.normal(size=(40, 16))
        src = np.vstack([parallel[:30], rng.normal(size=(20, 16))])  # 30 translated, 20 without a partner
        trg = np.vstack([parallel[:30] + 0.05 * rng.normal(size=(30, 16)), rng.normal(size=(25, 16))])
        write_side(tmp_path, f"fr.{split}.src", src, [f"fr-{split}-{i}" for i in range(50)])
        write_side(tmp_path, f"fr.{split}.en", trg, [f"en-{split}-{i}" for i in range(55)])
        (tmp_path / f"fr.{split}.gold").write_text("".join(f"fr-{split}-{i}\ten-{split}-{i}\n" for i in range(30)))
    result = bucc_from_embeddings(tmp_path, "fr")
    assert result["split"] == "test" and result["by_split"]["dev"]["f1"] > 95
    assert result["f1"] > 95 and result["threshold"] == result["by_split"]["dev"]["threshold"], (
        "the dev threshold is applied to test"
    )

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "xstilts",
            "retrieval-eval",
            "--task",
            "tatoeba",
            "--embeddings",
            str(tmp_path),
            "--lang",
            "de",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["metrics"]["accuracy"] == 0.0
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "xstilts",
            "retrieval-eval",
            "--task",
            "tatoeba",
            "--embeddings",
            str(tmp_path),
            "--lang",
            "ja",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "ja.src.npy: embeddings file not found" in missing.stderr


def test_score_accepts_xtreme_retrieval_predictions(tmp_path):
    from xstilts.evaluate.scoring import score_file
    from xstilts.tasks import default_registry

    (tmp_path / "gold.txt").write_text("3\n0\n1\n2\n")
    (tmp_path / "pred.txt").write_text("3\n0\n2\n2\n")
    assert score_file(default_registry().get("tatoeba"), "de", tmp_path / "gold.txt", tmp_path / "pred.txt") == {
        "accuracy": 75.0
    }
    (tmp_path / "gold.tsv").write_text("de-1\ten-4\nde-2\ten-9\n")
    (tmp_path / "pred.tsv").write_text("de-1\ten-4\nde-3\ten-5\nde-7\ten-1\n")
    scores = score_file(default_registry().get("bucc2018"), "de", tmp_path / "gold.tsv", tmp_path / "pred.tsv")
    assert (
        scores["precision"] == pytest.approx(100 / 3)
        and scores["recall"] == 50.0
        and scores["f1"] == pytest.approx(40.0)
    )
