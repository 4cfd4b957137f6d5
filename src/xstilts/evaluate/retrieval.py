"""Retrieval targets (BUCC 2018, Tatoeba): sentence embeddings from any stage's encoder, exact
nearest neighbours with faiss, and the scores exactly as docs/protocol.md 4.4-4.6 defines them.

Sentence representation: one hidden layer (default the 14th of 24 for XLM-R Large, scaled for other
depths; hidden_states[0] is the embedding output), mean-pooled under the attention mask or the first
token, max length 512. Layer, pooling and length are recorded with every result.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from xstilts.data.cache import cache_root
from xstilts.errors import DataError, RunError, XstiltsError
from xstilts.files import read_json_or_none, read_lines, read_npy, write_json_atomic
from xstilts.metrics.retrieval import bucc_counts_per_source, bucc_scores_from_pairs, tatoeba_accuracy
from xstilts.metrics.units import Units
from xstilts.readers.retrieval import read_bucc_gold, read_bucc_sentences, read_tatoeba_pair
from xstilts.settings import EmbeddingSettings

BLOCK_ROWS = 8192  # queries searched at a time: bounds the result buffers for 400k x 400k mining


def encode_sentences(
    encoder: torch.nn.Module,
    tokenizer: Any,
    sentences: Sequence[str],
    settings: EmbeddingSettings,
    device: torch.device,
) -> np.ndarray:
    """float32 embeddings, one row per sentence in input order. Batches are formed from sentences
    sorted by length (little padding); no gradients; bf16 autocast on GPU."""
    settings = settings.resolved(encoder.config.num_hidden_layers)
    token_ids = tokenizer(list(sentences), truncation=True, max_length=settings.max_length)["input_ids"]
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")[::-1]
    output = np.zeros((len(sentences), encoder.config.hidden_size), dtype=np.float32)
    was_training = encoder.training
    encoder.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for start in range(0, len(order), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            batch = tokenizer.pad({"input_ids": [token_ids[i] for i in rows]}, return_tensors="pt").to(device)
            hidden = encoder(**batch, output_hidden_states=True).hidden_states[settings.layer].float()
            if settings.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            output[rows] = pooled.cpu().numpy()
    encoder.train(was_training)
    bad = ~np.isfinite(output).all(axis=1)
    if bad.any():
        raise RunError(
            f"sentence embeddings from layer {settings.layer} hold NaN or infinity for {int(bad.sum())} of {len(output)} sentences; the encoder's weights are not finite"
        )
    return output


def normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32).copy()
    faiss.normalize_L2(x)
    return x


def knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k nearest neighbours of every query row (on a GPU index when faiss has one)."""
    index = faiss.IndexFlatIP(database.shape[1])
    if hasattr(faiss, "StandardGpuResources") and torch.cuda.is_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(np.ascontiguousarray(database, dtype=np.float32))
    k = min(k, database.shape[0])
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], BLOCK_ROWS):
        block = np.ascontiguousarray(queries[start : start + BLOCK_ROWS], dtype=np.float32)
        scores[start : start + len(block)], indices[start : start + len(block)] = index.search(block, k)
    return scores, indices


def exact_knn(queries: np.ndarray, database: np.ndarray, k: int, spare: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by cosine with float64 similarities.

    faiss searches k + `spare` candidates in float32; they are re-ranked by their float64 cosines, so
    neither the neighbour sets nor margin scores a few 1e-7 apart depend on float32 rounding.
    """
    _, candidates = knn(normalized(queries), normalized(database), k + spare)
    similarities = exact_cosines(queries, database, candidates)
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarities, order, 1), np.take_along_axis(candidates, order, 1)


def exact_cosines(queries: np.ndarray, database: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """float64 cosines of each query row with its neighbour rows (raw embeddings), block by block."""
    database_norms = np.linalg.norm(database.astype(np.float64), axis=1)
    out = np.empty(neighbours.shape, dtype=np.float64)
    for start in range(0, len(queries), BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        block = queries[start:stop].astype(np.float64)
        rows = database[neighbours[start:stop]].astype(np.float64)
        dots = np.einsum("id,ikd->ik", block, rows)
        out[start:stop] = dots / np.linalg.norm(block, axis=1)[:, None] / database_norms[neighbours[start:stop]]
    return out


# --- Tatoeba -------------------------------------------------------------------------------------


def tatoeba_predictions(source: np.ndarray, english: np.ndarray) -> np.ndarray:
    """For every English sentence, the index of the nearest non-English sentence by cosine."""
    _, indices = knn(normalized(english), normalized(source), 1)
    return indices[:, 0]


# --- BUCC ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    score: float
    source: str
    target: str


def mine_candidates(
    source_texts: Sequence[str],
    source_embeddings: np.ndarray,
    target_texts: Sequence[str],
    target_embeddings: np.ndarray,
    k: int = 4,
) -> list[Candidate]:
    """Margin-based mining (ratio margin, k nearest neighbours both ways), best candidate per sentence
    from both directions, pooled, sorted by score, kept greedily one-to-one. Texts must be unique."""
    x2y_sim, x2y_ind = exact_knn(source_embeddings, target_embeddings, k)
    y2x_sim, y2x_ind = exact_knn(target_embeddings, source_embeddings, k)
    x_mean, y_mean = x2y_sim.mean(axis=1), y2x_sim.mean(axis=1)

    # ratio margin: cos(x, y) / ((mean cos of x to its k NN + mean cos of y to its k NN) / 2)
    forward = x2y_sim / ((x_mean[:, None] + y_mean[x2y_ind]) / 2)
    backward = y2x_sim / ((y_mean[:, None] + x_mean[y2x_ind]) / 2)
    forward_best = x2y_ind[np.arange(len(x2y_ind)), forward.argmax(axis=1)]
    backward_best = y2x_ind[np.arange(len(y2x_ind)), backward.argmax(axis=1)]
    pairs = np.concatenate(
        [np.stack([np.arange(len(x2y_ind)), forward_best], 1), np.stack([backward_best, np.arange(len(y2x_ind))], 1)]
    )
    scores = np.concatenate([forward.max(axis=1), backward.max(axis=1)])
    seen_source: set[int] = set()
    seen_target: set[int] = set()
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        s, t = int(pairs[i, 0]), int(pairs[i, 1])
        if s not in seen_source and t not in seen_target:
            seen_source.add(s)
            seen_target.add(t)
            kept.append(Candidate(float(scores[i]), source_texts[s], target_texts[t]))
    return kept


def candidate_id_pairs(
    candidates: Sequence[Candidate], source_ids: dict[str, list[str]], target_ids: dict[str, list[str]]
) -> list[tuple[float, tuple[str, str]]]:
    """Mined text pairs as (score, (source id, target id)), sorted by score. A sentence that occurs
    under several ids stands for all of them (the reference code kept only the last and then dropped
    the pair); deduplication itself happens before mining."""
    pairs = [(c.score, (s, t)) for c in candidates for s in source_ids[c.source] for t in target_ids[c.target]]
    return sorted(pairs, key=lambda item: -item[0])


def best_threshold(pairs: Sequence[tuple[float, tuple[str, str]]], gold: set[tuple[str, str]]) -> float:
    """Walk the sorted candidates; the threshold is midway between the score of the best-F1 prefix
    and the next score (the reference crashes when the best prefix is the whole list: then it is the
    last score itself, and pairs at or above the threshold are kept)."""
    correct, best_f1, best_index = 0, -1.0, 0
    for i, (_, pair) in enumerate(pairs):
        correct += pair in gold
        precision, recall = correct / (i + 1), correct / len(gold)
        f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
        if f1 > best_f1:
            best_f1, best_index = f1, i
    if best_index + 1 < len(pairs):
        return (pairs[best_index][0] + pairs[best_index + 1][0]) / 2
    return pairs[best_index][0]


def bucc_f1(
    pairs: Sequence[tuple[float, tuple[str, str]]], gold: set[tuple[str, str]], threshold: float
) -> dict[str, float]:
    """Precision, recall and F1 (x100) of the id pairs at or above `threshold`."""
    predicted = {pair for score, pair in pairs if score >= threshold}
    return {**bucc_scores_from_pairs(predicted, gold), "threshold": threshold, "pairs": len(predicted)}


def unique_texts(rows: Sequence[tuple[str, str]]) -> tuple[list[str], dict[str, list[str]]]:
    """Deduplicated sentences in first-seen order, and every id under which each one occurs."""
    ids: dict[str, list[str]] = {}
    for sentence_id, text in rows:
        ids.setdefault(text, []).append(sentence_id)
    return list(ids), ids


# --- evaluation from saved embeddings (xstilts retrieval-eval) -------------------------------------


def check_embeddings(matrix: np.ndarray, name: str) -> np.ndarray:
    """float32 rows of one side, after checking: 2-D, at least one row, finite, no all-zero row (no direction)."""
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise XstiltsError(f"{name}: expected a 2-D matrix with one row per sentence, got shape {matrix.shape}")
    if matrix.dtype.kind not in "fiu":
        raise XstiltsError(f"{name}: expected numbers, got dtype {matrix.dtype}")
    matrix = matrix.astype(np.float32, copy=False)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise XstiltsError(
            f"{name}: row {int(np.argmax(bad))} holds NaN or infinity ({int(bad.sum())} such rows of {len(matrix)})"
        )
    zero = ~matrix.any(axis=1)
    if zero.any():
        raise XstiltsError(
            f"{name}: row {int(np.argmax(zero))} is all zeros (no direction to compare by cosine; {int(zero.sum())} such rows)"
        )
    return matrix


def _load_matrix(path: Path) -> np.ndarray:
    if not path.is_file():
        raise XstiltsError(f"{path}: embeddings file not found")
    matrix = read_npy(path)  # the header checked before anything is allocated
    return check_embeddings(matrix, str(path))


def _same_width(first: tuple[str, np.ndarray], second: tuple[str, np.ndarray]) -> None:
    if first[1].shape[1] != second[1].shape[1]:
        raise XstiltsError(
            f"{second[0]}: {second[1].shape[1]} dimensions, but {first[0]} has {first[1].shape[1]}; both sides must come from one encoder"
        )


def _lines(path: Path) -> list[str]:
    return [line for _, line in read_lines(path)]


def tatoeba_from_embeddings(directory: Path, language: str) -> dict[str, Any]:
    """`{lang}.src.npy` (non-English rows in file order), `{lang}.en.npy` (English rows) and optionally
    `{lang}.labels.txt` (per English row, the index of its translation; default: row i <-> row i)."""
    source_path, english_path = directory / f"{language}.src.npy", directory / f"{language}.en.npy"
    source, english = _load_matrix(source_path), _load_matrix(english_path)
    _same_width((str(source_path), source), (str(english_path), english))
    labels_path = directory / f"{language}.labels.txt"
    if labels_path.is_file():
        gold = []
        for number, text in read_lines(labels_path):
            if not text.strip().isdigit() or int(text) >= len(source):
                raise DataError(
                    labels_path,
                    f"expected the index of a row of {source_path.name} (0..{len(source) - 1}), found {text!r}",
                    number,
                )
            gold.append(int(text))
        if len(gold) != len(english):
            raise XstiltsError(
                f"{labels_path}: {len(gold)} labels for {len(english)} English rows in {english_path.name}"
            )
    else:
        if len(source) != len(english):
            raise XstiltsError(
                f"{source_path}: {len(source)} rows but {english_path.name} has {len(english)}; without {labels_path.name}, row i must translate row i"
            )
        gold = list(range(len(english)))
    predictions = tatoeba_predictions(source, english)
    return {"accuracy": tatoeba_accuracy(predictions, gold), "examples": len(gold)}


def _bucc_side(directory: Path, stem: str) -> tuple[list[str], np.ndarray]:
    matrix, ids_path = _load_matrix(directory / f"{stem}.npy"), directory / f"{stem}.ids"
    if not ids_path.is_file():
        raise XstiltsError(f"{ids_path}: ids file not found (one sentence id per embedding row)")
    ids = _lines(ids_path)
    if len(ids) != len(matrix):
        raise XstiltsError(f"{ids_path}: {len(ids)} ids for {len(matrix)} embedding rows")
    seen: dict[str, int] = {}
    for number, sentence_id in enumerate(ids, start=1):
        if not sentence_id.strip():
            raise DataError(ids_path, "empty id", number)
        if sentence_id in seen:
            raise DataError(
                ids_path,
                f"id {sentence_id!r} appears twice (first at line {seen[sentence_id]}); each row is its own sentence",
                number,
            )
        seen[sentence_id] = number
    return ids, matrix


def bucc_from_embeddings(directory: Path, language: str) -> dict[str, Any]:
    """Mine `{lang}.dev.*` to choose the threshold, then apply it to `{lang}.test.*` when present.

    Per split: `{lang}.{split}.src.npy` + `.src.ids`, `{lang}.{split}.en.npy` + `.en.ids`, and gold
    pairs `{lang}.{split}.gold` (`source_id<TAB>target_id`). Each row is mined as its own sentence.
    Every gold id must be an id of its side.
    """
    result: dict[str, Any] = {}
    threshold = None
    for split in ("dev", "test"):
        if not (directory / f"{language}.{split}.src.npy").is_file():
            if split == "dev":
                raise XstiltsError(
                    f"{directory / f'{language}.dev.src.npy'}: the dev split chooses the threshold and is required"
                )
            continue
        source_ids, source = _bucc_side(directory, f"{language}.{split}.src")
        target_ids, target = _bucc_side(directory, f"{language}.{split}.en")
        _same_width((f"{language}.{split}.src.npy", source), (f"{language}.{split}.en.npy", target))
        gold_path = directory / f"{language}.{split}.gold"
        gold_pairs = read_bucc_gold(gold_path)
        known_source, known_target = set(source_ids), set(target_ids)
        for number, (s, t) in enumerate(gold_pairs, start=1):
            if s not in known_source or t not in known_target:
                side = (
                    f"{s!r} is not in {language}.{split}.src.ids"
                    if s not in known_source
                    else f"{t!r} is not in {language}.{split}.en.ids"
                )
                raise DataError(gold_path, f"gold id {side}", number)
        gold = set(gold_pairs)
        candidates = mine_candidates(source_ids, source, target_ids, target)
        pairs = candidate_id_pairs(candidates, {i: [i] for i in source_ids}, {i: [i] for i in target_ids})
        if threshold is None:
            threshold = best_threshold(pairs, gold)
        result[split] = bucc_f1(pairs, gold, threshold)
    return {**result.get("test", result["dev"]), "split": "test" if "test" in result else "dev", "by_split": result}


# --- evaluation of an encoder on the task files (chains) -------------------------------------------


def evaluate_encoder(
    spec: Any,
    language: str,
    encoder: torch.nn.Module,
    tokenizer: Any,
    settings: EmbeddingSettings,
    device: torch.device,
    encoder_identity: str,
) -> dict[str, dict[str, Any]]:
    """Tatoeba accuracy or BUCC F1 of one language, per split present under the task's data dir:
    {split: {"metrics", "examples", "predictions"}}. Predictions are Tatoeba's predicted index per English
    sentence, or BUCC's mined (source id, target id) pairs at or above the threshold chosen on dev.

    BUCC candidates are cached by encoder identity, embedding settings, language, split and the data
    files' content (the reference code's cache ignored the split).
    """
    settings = settings.resolved(encoder.config.num_hidden_layers, spec.name)
    embed = lambda texts: encode_sentences(encoder, tokenizer, texts, settings, device)  # noqa: E731
    root = Path(spec.data.data_dir)
    if spec.name == "tatoeba":
        source_path = _task_files(spec, root, "test", language)[0]
        pairs = read_tatoeba_pair(source_path, source_path.with_suffix(".eng"))
        predictions = tatoeba_predictions(embed([p["source"] for p in pairs]), embed([p["target"] for p in pairs]))
        accuracy = tatoeba_accuracy(predictions, range(len(pairs)))
        metrics = {"accuracy": accuracy, "examples": len(pairs), "embedding": settings.model_dump()}
        units = Units("mean", np.asarray(predictions) == np.arange(len(pairs)))  # one unit per English query
        return {
            "test": {
                "metrics": metrics,
                "examples": len(pairs),
                "predictions": [int(p) for p in predictions],
                "units": units,
            }
        }
    if spec.name != "bucc2018":
        raise XstiltsError(f"{spec.name}: no retrieval evaluation is defined")
    by_split: dict[str, dict[str, Any]] = {}
    threshold = None
    for split in ("dev", "test"):  # dev first: it chooses the threshold
        files = _task_files(spec, root, split, language, required=split == "dev")
        if not files or not files[0].with_suffix(".gold").is_file():
            continue
        source_path = files[0]
        source_rows = read_bucc_sentences(source_path)
        source_texts, source_ids = unique_texts(source_rows)
        target_texts, target_ids = unique_texts(read_bucc_sentences(source_path.with_suffix(".en")))
        key = {
            "encoder": encoder_identity,
            "embedding": settings.model_dump(),
            "language": language,
            "split": split,
            "data": _files_digest([source_path, source_path.with_suffix(".en")]),
        }
        mine = functools.partial(_mine_texts, source_texts, target_texts, embed)
        pairs = candidate_id_pairs(_cached_candidates(key, mine), source_ids, target_ids)
        gold = set(read_bucc_gold(source_path.with_suffix(".gold")))
        if threshold is None:
            threshold = best_threshold(pairs, gold)
        metrics = {**bucc_f1(pairs, gold, threshold), "embedding": settings.model_dump()}
        predicted = sorted({pair for score, pair in pairs if score >= threshold})
        sources = list(dict.fromkeys([i for i, _ in source_rows] + [s for s, _ in sorted(gold)]))
        units = Units("f1", bucc_counts_per_source(sources, set(predicted), gold))  # one unit per source sentence
        by_split[split] = {
            "metrics": metrics,
            "examples": len(gold),
            "predictions": [list(pair) for pair in predicted],
            "units": units,
        }
    if not by_split:
        raise XstiltsError(f"bucc2018 {language}: no gold pairs found beside the dev files under {root}")
    return by_split


def _mine_texts(source_texts: list[str], target_texts: list[str], embed: Any) -> list[Candidate]:
    return mine_candidates(source_texts, embed(source_texts), target_texts, embed(target_texts))


def _task_files(spec: Any, root: Path, split: str, language: str, required: bool = True) -> list[Path]:
    for layout in spec.sources.local.get(split, ()):
        paths = layout.paths(root, split, language)
        if paths:
            return paths
    if required:
        patterns = [p for layout in spec.sources.local.get(split, ()) for p in layout.expected(split, language)]
        raise XstiltsError(f"{spec.name} {language}: no {split} files under {root} (looked for {', '.join(patterns)})")
    return []


def _files_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cached_candidates(key: dict[str, Any], mine: Any) -> list[Candidate]:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "bucc-candidates" / f"{name}.json"
    cached = read_json_or_none(path, "cache entry (it is mined again)")
    if isinstance(cached, dict) and isinstance(cached.get("candidates"), list):
        return [Candidate(*row) for row in cached["candidates"]]
    candidates = mine()
    write_json_atomic(path, {"key": key, "candidates": [[c.score, c.source, c.target] for c in candidates]})
    return candidates
