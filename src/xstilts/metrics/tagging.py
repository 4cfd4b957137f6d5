"""Tagging metrics: seqeval 0.0.12's chunk F1 (XTREME's official UD-POS and PAN-X score) and token accuracy.

seqeval reads a tag's first character as its IOB prefix and the text after the last '-' as its type.
For UPOS tags ("NOUN") that makes runs of identical tags one chunk, which is why the official UD-POS
"F1" sits a few points under token accuracy. Sentences are flattened with an "O" between them, as
seqeval 0.0.12 does. Unlike seqeval, misaligned input is refused with an error naming the sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

Chunk = tuple[str, int, int]


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(sentences: Sequence[Sequence[str]]) -> list[Chunk]:
    """Chunks (type, first, last) over the flattened sentences, exactly as seqeval 0.0.12."""
    flat = [tag for sentence in sentences for tag in list(sentence) + ["O"]]
    chunks: list[Chunk] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate(flat + ["O"]):
        tag, type_ = label[0], label.split("-")[-1]
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def check_aligned(predictions: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(golds)} gold sentences")
    for index, (predicted, gold) in enumerate(zip(predictions, golds)):
        if len(predicted) != len(gold):
            raise ValueError(f"sentence {index + 1}: {len(predicted)} predicted tags for {len(gold)} gold words")


def seqeval_scores(predictions: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro chunk precision, recall and F1 (x100), plus token accuracy (x100)."""
    check_aligned(predictions, golds)
    gold_chunks = set(get_entities(golds))
    predicted_chunks = set(get_entities(predictions))
    correct = len(gold_chunks & predicted_chunks)
    precision = correct / len(predicted_chunks) if predicted_chunks else 0.0
    recall = correct / len(gold_chunks) if gold_chunks else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    num_tokens = sum(len(gold) for gold in golds)
    correct_tokens = sum(p == g for predicted, gold in zip(predictions, golds) for p, g in zip(predicted, gold))
    return {
        "f1": 100.0 * f1,
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
        "token_accuracy": 100.0 * correct_tokens / num_tokens if num_tokens else 0.0,
    }


def chunk_counts_per_sentence(
    predictions: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]
) -> list[tuple[int, int, int]]:
    """(correct, predicted, gold) chunks of each sentence: the units of micro chunk F1. Chunks never cross
    sentences (seqeval 0.0.12 puts an "O" between them), so the sums over sentences give `seqeval_scores`."""
    check_aligned(predictions, golds)
    counts = []
    for predicted, gold in zip(predictions, golds):
        predicted_chunks, gold_chunks = set(get_entities([predicted])), set(get_entities([gold]))
        counts.append((len(predicted_chunks & gold_chunks), len(predicted_chunks), len(gold_chunks)))
    return counts
