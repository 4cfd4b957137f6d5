"""Extractive span QA: SQuAD v1.1, and v2.0 with unanswerable questions (XQuAD, MLQA, TyDiQA-GoldP).

Schema (the Hugging Face `squad` layout): {"id": str, "question": str, "context": str,
"answers": {"text": [str, ...], "answer_start": [int, ...]}}; empty answer lists mean "no answer"
and are allowed only for tasks with `allow_no_answer`.

Long contexts are split into windows as XTREME's and jiant's SQuAD feature builder does (`qa_windows: xtreme`,
the default): the question is cut to 64 tokens, each window holds `max_length` minus the question and the
special tokens, and successive windows start `doc_stride` context tokens apart. A token that several windows
share may give an answer span only from the window where it has the most context (the reference's
max-context rule). `qa_windows: huggingface` instead gives `doc_stride` the meaning of a Hugging Face fast
tokenizer's `stride=` (the overlap between windows) and has no max-context rule. One deliberate difference
from the reference: when max_length - doc_stride leaves less than 64 tokens for the question (short windows),
the question is cut shorter, so that successive windows never skip context tokens (the reference would). A window that does not
contain the (first) gold answer is trained to point at the first token. Predictions are decoded back to the
exact original text through the tokenizer's character offsets (n-best start/end pairs, `max_answer_length`
tokens at most).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xstilts.errors import XstiltsError
from xstilts.metrics.qa import answer_scores, mlqa_measures, mlqa_scores, score_answers
from xstilts.metrics.units import Units
from xstilts.settings import TrainingSettings
from xstilts.tasks.base import Example, Feature, TaskKind, TokenHead, model_takes_token_types, token_ids
from xstilts.tasks.registry import TaskSpec

MAX_QUESTION_TOKENS = 64


class QAKind(TaskKind):
    name = "qa"
    primary_metric = "f1"
    scalar_keys = ("start_position", "end_position")

    def build_features(
        self, examples: Sequence[Example], tokenizer: Any, spec: TaskSpec, settings: TrainingSettings, training: bool
    ) -> list[Feature]:
        if settings.qa_windows == "xtreme":
            return _xtreme_features(examples, tokenizer, settings)
        question_limit = _question_token_limit(tokenizer, settings)
        questions = [_truncate_question(e["question"].lstrip(), tokenizer, question_limit) for e in examples]
        encoding = tokenizer(
            questions,
            [e["context"] for e in examples],
            truncation="only_second",
            max_length=settings.max_length,
            stride=settings.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        with_types = model_takes_token_types(tokenizer)
        features = []
        for i, example_index in enumerate(encoding["overflow_to_sample_mapping"]):
            sequence_ids = encoding.sequence_ids(i)
            offsets = np.array(
                [
                    offset if sequence_id == 1 else (-1, -1)
                    for offset, sequence_id in zip(encoding["offset_mapping"][i], sequence_ids)
                ],
                dtype=np.int32,
            )
            start, end = _answer_positions(examples[example_index]["answers"], offsets)
            feature: Feature = {
                "input_ids": token_ids(encoding, i),
                "offsets": offsets,
                "example_index": int(example_index),
                "start_position": start,
                "end_position": end,
            }
            if with_types:
                feature["token_type_ids"] = token_ids(encoding, i, "token_type_ids")
            features.append(feature)
        return features

    def make_head(self, spec: TaskSpec, hidden_size: int, dropout: float) -> nn.Module:
        # No dropout before the span scores, as in the Hugging Face *ForQuestionAnswering models that the
        # XTREME baselines train (the tagging head, like *ForTokenClassification, has one).
        return TokenHead(hidden_size, 2, dropout=0.0)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        start_logits, end_logits = logits.float().unbind(dim=-1)
        return (
            F.cross_entropy(start_logits, batch["start_position"]) + F.cross_entropy(end_logits, batch["end_position"])
        ) / 2

    def batch_outputs(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> list[Any]:
        lengths = batch["attention_mask"].sum(dim=-1).tolist()
        scores = logits.float().cpu().numpy()
        return [scores[i, :length] for i, length in enumerate(lengths)]

    def decode(
        self,
        outputs: Sequence[Any],
        features: Sequence[Feature],
        examples: Sequence[Example],
        spec: TaskSpec,
        settings: TrainingSettings,
    ) -> list[Any]:
        by_example: list[list[int]] = [[] for _ in examples]
        for index, feature in enumerate(features):
            by_example[feature["example_index"]].append(index)
        return [
            best_answer(
                example["context"],
                [(outputs[i], features[i]["offsets"], features[i].get("max_context")) for i in indices],
                spec.allow_no_answer,
                settings,
            )
            for example, indices in zip(examples, by_example)
        ]

    def score(
        self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str
    ) -> dict[str, float]:
        golds = [e["answers"]["text"] for e in examples]
        if spec.metric == "mlqa":
            return mlqa_scores(predictions, golds, language)
        return score_answers(predictions, golds)

    def units(self, predictions: Sequence[Any], examples: Sequence[Example], spec: TaskSpec, language: str) -> Units:
        """(EM + F1) / 2 per question: their mean is the headline (EM + F1) / 2."""
        golds = [e["answers"]["text"] for e in examples]
        measures = mlqa_measures(language) if spec.metric == "mlqa" else ()
        return Units("mean", [(em + f1) / 2 for em, f1 in answer_scores(predictions, golds, *measures)])


def xtreme_windows(
    doc_length: int, question_length: int, max_length: int, doc_stride: int, special_tokens: int
) -> list[tuple[int, int]]:
    """(start, length) of each window over `doc_length` context tokens, as the reference feature builder makes
    them: window i starts at i * doc_stride and holds up to max_length - question - special tokens; the last
    window is the first that reaches the end of the context."""
    room = max_length - question_length - special_tokens
    windows: list[tuple[int, int]] = []
    while len(windows) * doc_stride < doc_length or not windows:
        start = len(windows) * doc_stride
        windows.append((start, min(doc_length - start, room)))
        if start + room >= doc_length:
            break
    return windows


def is_max_context(windows: Sequence[tuple[int, int]], window: int, position: int) -> bool:
    """Does `window` give context token `position` its most context (the reference's `_new_check_is_max_context`)?"""
    return int(max_context_owner(windows, position + 1)[position]) == window


def max_context_owner(windows: Sequence[tuple[int, int]], doc_length: int) -> np.ndarray:
    """For every context token, the window that gives it the most context: the score is min(left, right
    context) + 0.01 x window length, and the first window with the best score wins (as in the reference)."""
    best = np.full(doc_length, -np.inf)
    owner = np.full(doc_length, -1, dtype=np.int64)
    for index, (start, length) in enumerate(windows):
        positions = np.arange(start, min(start + length, doc_length))
        score = np.minimum(positions - start, start + length - 1 - positions) + 0.01 * length
        better = score > best[positions]
        best[positions[better]] = score[better]
        owner[positions[better]] = index
    return owner


def _xtreme_features(examples: Sequence[Example], tokenizer: Any, settings: TrainingSettings) -> list[Feature]:
    """Windows as XTREME and jiant build them (see the module doc), one feature per window, with character
    offsets of the context tokens (-1 elsewhere) and each token's max-context flag."""
    limit = _question_token_limit(tokenizer, settings)
    template = PairTemplate.of(tokenizer)
    questions = tokenizer([e["question"].lstrip() for e in examples], add_special_tokens=False)["input_ids"]
    unique = list(dict.fromkeys(e["context"] for e in examples))  # questions share paragraphs: tokenise each once
    encoded = tokenizer(unique, add_special_tokens=False, return_offsets_mapping=True)
    contexts = {
        text: (ids, np.asarray(offsets, dtype=np.int32).reshape(-1, 2))
        for text, ids, offsets in zip(unique, encoded["input_ids"], encoded["offset_mapping"])
    }
    with_types = model_takes_token_types(tokenizer)
    features = []
    for example_index, example in enumerate(examples):
        question = questions[example_index][:limit]
        doc, doc_offsets = contexts[example["context"]]
        windows = xtreme_windows(
            len(doc), len(question), settings.max_length, settings.doc_stride, template.special_tokens
        )
        owner = max_context_owner(windows, len(doc))
        for window, (start, length) in enumerate(windows):
            input_ids, token_types, context_at = template.build(question, doc[start : start + length])
            offsets = np.full((len(input_ids), 2), -1, dtype=np.int32)
            max_context = np.zeros(len(input_ids), dtype=np.int8)
            offsets[context_at : context_at + length] = doc_offsets[start : start + length]
            max_context[context_at : context_at + length] = owner[start : start + length] == window
            first, last = _answer_positions(example["answers"], offsets)
            feature: Feature = {
                "input_ids": np.asarray(input_ids, dtype=np.int32),
                "offsets": offsets,
                "max_context": max_context,
                "example_index": example_index,
                "start_position": first,
                "end_position": last,
            }
            if with_types:
                feature["token_type_ids"] = np.asarray(token_types, dtype=np.int32)
            features.append(feature)
    return features


@dataclass(frozen=True)
class PairTemplate:
    """How the tokenizer frames a (question, context) pair: the special tokens before, between and after the two
    segments and each region's token type, read once from the tokenizer's own encoding of a pair."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[int, int, int, int, int]  # prefix, question, middle, context, suffix

    @classmethod
    def of(cls, tokenizer: Any) -> PairTemplate:
        encoding = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
        ids, sequence = encoding["input_ids"], encoding.sequence_ids(0)
        types = encoding.get("token_type_ids") or [0] * len(ids)
        first = [i for i, s in enumerate(sequence) if s == 0]
        second = [i for i, s in enumerate(sequence) if s == 1]
        regions = [range(first[0]), first, range(first[-1] + 1, second[0]), second, range(second[-1] + 1, len(ids))]
        region_types = [types[r[0]] if len(r) else types[first[0]] for r in regions]
        return cls(
            tuple(ids[i] for i in regions[0]),
            tuple(ids[i] for i in regions[2]),
            tuple(ids[i] for i in regions[4]),
            tuple(region_types),
        )

    @property
    def special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, question: Sequence[int], context: Sequence[int]) -> tuple[list[int], list[int], int]:
        """(input ids, token type ids, position of the first context token)."""
        parts = [self.prefix, question, self.middle, context, self.suffix]
        ids = [token for part in parts for token in part]
        token_types = [kind for part, kind in zip(parts, self.types) for _ in part]
        return ids, token_types, len(self.prefix) + len(question) + len(self.middle)


def _question_token_limit(tokenizer: Any, settings: TrainingSettings) -> int:
    """Longest question that still leaves every window more context tokens than the stride.

    The tokenizer requires that room (it fails hard otherwise), and a question that crowds out the
    context could never be answered anyway.
    """
    room = settings.max_length - settings.doc_stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    if room < 4:
        raise XstiltsError(
            f"QA windows of max_length {settings.max_length} with doc_stride {settings.doc_stride} leave no room for the question; "
            "raise max_length or lower doc_stride"
        )
    return min(MAX_QUESTION_TOKENS, room)


def _truncate_question(question: str, tokenizer: Any, limit: int) -> str:
    """Cut a question to at most `limit` tokens, at a token boundary of the original text."""
    encoding = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoding["input_ids"]) <= limit:
        return question
    return question[: encoding["offset_mapping"][limit - 1][1]]


def _answer_positions(answers: dict[str, list], offsets: np.ndarray) -> tuple[int, int]:
    """Token positions of the first gold answer in this window, or (0, 0) when it is not inside."""
    if not answers["text"]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = np.flatnonzero(offsets[:, 0] >= 0)
    first, last = int(context[0]), int(context[-1])
    if not (offsets[first, 0] <= start_char and offsets[last, 1] >= end_char):
        return 0, 0
    # The last context token starting at or before the answer, and the first ending at or after it.
    start = max(i for i in range(first, last + 1) if offsets[i, 0] <= start_char)
    end = min(i for i in range(first, last + 1) if offsets[i, 1] >= end_char)
    return start, end


def best_answer(
    context: str, windows: Sequence[tuple[Any, ...]], allow_no_answer: bool, settings: TrainingSettings
) -> str:
    """The highest-scoring span over all windows of one example, as exact text of `context`.

    `windows` holds (scores of shape (length, 2) for start and end, character offsets with -1 for
    tokens outside the context, and optionally max-context flags: a span may start only at a token whose
    window gives it the most context). With `allow_no_answer`, the empty answer wins when the smallest
    window "null" score (first-token start + end) beats every span, as in SQuAD v2.0 decoding.
    """
    best_score, best_span = -np.inf, None
    null_score = np.inf
    for scores, offsets, *rest in windows:
        max_context = rest[0] if rest and rest[0] is not None else None
        start_scores, end_scores = scores[:, 0], scores[:, 1]
        null_score = min(null_score, float(start_scores[0] + end_scores[0]))
        starts = np.argsort(start_scores)[::-1][: settings.n_best_size]
        ends = np.argsort(end_scores)[::-1][: settings.n_best_size]
        starts = starts[offsets[starts, 0] >= 0]
        if max_context is not None:
            starts = starts[np.asarray(max_context, dtype=bool)[starts]]
        ends = ends[offsets[ends, 0] >= 0]
        # every (start, end) pair of the n-best lists at once; the first best in (start, end) order wins, as a
        # loop over starts, then ends, keeping only a strictly higher score would choose
        lengths = ends[None, :] - starts[:, None] + 1
        pair_scores = start_scores[starts][:, None] + end_scores[ends][None, :]
        pair_scores = np.where((lengths >= 1) & (lengths <= settings.max_answer_length), pair_scores, -np.inf)
        if pair_scores.size and np.isfinite(pair_scores).any():
            row, column = np.unravel_index(int(np.argmax(pair_scores)), pair_scores.shape)
            score = float(pair_scores[row, column])
            if score > best_score:
                best_score = score
                best_span = (int(offsets[starts[row], 0]), int(offsets[ends[column], 1]))
    if best_span is None or (allow_no_answer and null_score > best_score):
        return ""
    return _strip_span(context, *best_span)


def _strip_span(context: str, start: int, end: int) -> str:
    """The context slice without surrounding whitespace (some tokenizers' offsets include a leading space)."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return context[start:end]
