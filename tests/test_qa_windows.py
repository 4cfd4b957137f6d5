"""QA windows as XTREME's and jiant's SQuAD feature builder makes them, checked on every example of the real
XQuAD and MLQA samples against a transcription of the reference algorithm (Hugging Face transformers' legacy
`squad_convert_example_to_features` with its tokenizer's `truncate_sequences`, which XTREME and jiant ran)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL_DATA

from xstilts.readers.squad import read_squad_json
from xstilts.settings import TrainingSettings
from xstilts.tasks import KIND_IMPLEMENTATIONS
from xstilts.tasks.qa import MAX_QUESTION_TOKENS, PairTemplate
from xstilts.tasks.registry import LocalFiles, TaskSpec

FILES = sorted(
    [*(REAL_DATA / "xquad").glob("xquad.*.json"), *(REAL_DATA / "mlqa").glob("dev-context-*-question-*.json")]
)


def reference_spans(
    doc_length: int, query_length: int, max_seq_length: int, doc_stride: int, pair_added: int
) -> list[dict]:
    """The reference loop, transcribed: encode (query, remaining doc) truncated to max_seq_length with
    stride = max_seq_length - doc_stride - query - added; the overflowing tokens (the removed ones plus
    `stride` kept ones) are the next span's document; stop when nothing overflows."""
    spans: list[dict] = []
    span_doc_tokens = list(range(doc_length))
    while len(spans) * doc_stride < doc_length:
        stride = max_seq_length - doc_stride - query_length - pair_added
        room = max_seq_length - query_length - pair_added
        num_tokens_to_remove = max(0, len(span_doc_tokens) - room)
        overflowing = []
        if num_tokens_to_remove > 0:
            window_len = min(len(span_doc_tokens), stride + num_tokens_to_remove)
            overflowing = span_doc_tokens[-window_len:]
        paragraph_len = min(doc_length - len(spans) * doc_stride, room)
        spans.append({"start": len(spans) * doc_stride, "length": paragraph_len})
        if not overflowing:
            break
        span_doc_tokens = overflowing
    return spans


def reference_best_span(doc_spans: list[dict], position: int) -> int | None:
    """`_new_check_is_max_context`, transcribed: the span that gives `position` its most context (the
    reference answers "is it `cur_span_index`?" by comparing with this index)."""
    best_score, best_span_index = None, None
    for span_index, doc_span in enumerate(doc_spans):
        end = doc_span["start"] + doc_span["length"] - 1
        if position < doc_span["start"] or position > end:
            continue
        num_left_context = position - doc_span["start"]
        num_right_context = end - position
        score = min(num_left_context, num_right_context) + 0.01 * doc_span["length"]
        if best_score is None or score > best_score:
            best_score, best_span_index = score, span_index
    return best_span_index


CASES = [(path, 384, 128) for path in FILES] + [
    (path, 192, 64) for path in FILES if path.name in ("xquad.de.json", "dev-context-de-question-de.json")
]


@pytest.mark.skipif(not FILES, reason="the real XQuAD/MLQA samples are not in ../shared/data/real")
@pytest.mark.parametrize("path, max_length, doc_stride", CASES, ids=[f"{p.name}-{m}-{d}" for p, m, d in CASES])
def test_windows_and_max_context_flags_match_the_reference(path, max_length, doc_stride, tiny_tokenizer):
    """Every example of every sample file at the protocol's settings (384, 128); shorter windows, which split
    more contexts, on one XQuAD and one MLQA file."""
    examples = read_squad_json(path)
    spec = TaskSpec(name="qa_check", kind="qa", languages=("en",), data=LocalFiles(path.parent))
    settings = TrainingSettings(max_length=max_length, doc_stride=doc_stride, max_answer_length=30)
    features = KIND_IMPLEMENTATIONS["qa"].build_features(examples, tiny_tokenizer, spec, settings, training=False)
    template = PairTemplate.of(tiny_tokenizer)
    by_example: dict[int, list[dict]] = {}
    for feature in features:
        by_example.setdefault(feature["example_index"], []).append(feature)
    checked_multi = 0
    reference: dict[tuple[int, int], tuple[list[dict], list[int | None]]] = {}
    questions = tiny_tokenizer([e["question"].lstrip() for e in examples], add_special_tokens=False)["input_ids"]
    contexts = tiny_tokenizer([e["context"] for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    for index in range(len(examples)):
        query_length = min(len(questions[index]), MAX_QUESTION_TOKENS)
        doc_offsets = [tuple(o) for o in contexts["offset_mapping"][index]]
        key = (len(doc_offsets), query_length)
        if key not in reference:  # questions share paragraphs: the reference is computed once per shape
            spans = reference_spans(len(doc_offsets), query_length, max_length, doc_stride, template.special_tokens)
            reference[key] = spans, [reference_best_span(spans, position) for position in range(len(doc_offsets))]
        spans, best = reference[key]
        ours = by_example[index]
        assert len(ours) == len(spans), f"{path.name} example {index}: {len(ours)} windows, the reference {len(spans)}"
        for span_index, (feature, span) in enumerate(zip(ours, spans)):
            positions = np.flatnonzero(feature["offsets"][:, 0] >= 0)
            assert len(positions) == span["length"]
            window = [tuple(o) for o in feature["offsets"][positions].tolist()]
            assert window == doc_offsets[span["start"] : span["start"] + span["length"]], "the same context tokens"
            expected = [best[span["start"] + j] == span_index for j in range(span["length"])]
            assert feature["max_context"][positions].astype(bool).tolist() == expected
        checked_multi += len(spans) > 1
    if max_length == 192:
        assert checked_multi > 0, "some contexts need several windows at this length"
