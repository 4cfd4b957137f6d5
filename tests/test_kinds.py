"""Feature conversion, collation and decoding of each task kind, without training."""

from __future__ import annotations

import numpy as np
import pytest

from xstilts.settings import TrainingSettings
from xstilts.tasks import KIND_IMPLEMENTATIONS
from xstilts.tasks.qa import best_answer
from xstilts.tasks.registry import LocalFiles, TaskSpec


def spec(kind: str, **kwargs) -> TaskSpec:
    return TaskSpec(name=f"t_{kind}", kind=kind, languages=("en",), data=LocalFiles("."), **kwargs)


CONTEXT = (
    "Anna Berg buys the red book in Paris today . Tom eats the cheap bread in Lima . "
    "Nora Sand drives the old car . Ivan reads the green map in Oslo yesterday . "
    "Maria sells the small hat in Rome . Paul writes the new poem in Cairo often ."
)


def qa_example(answer: str, occurrence: int = 0, question: str = "what does Ivan read ?") -> dict:
    start = -1
    for _ in range(occurrence + 1):
        start = CONTEXT.index(answer, start + 1)
    return {
        "id": answer,
        "question": question,
        "context": CONTEXT,
        "answers": {"text": [answer], "answer_start": [start]},
    }


def test_qa_windows_map_every_gold_answer_back_to_its_exact_text(tiny_tokenizer):
    kind, task = KIND_IMPLEMENTATIONS["qa"], spec("qa")
    answers = [
        "Anna Berg",
        "red book",
        "Paris",
        "cheap bread",
        "old car",
        "green map",
        "Oslo",
        "small hat",
        "Rome",
        "new poem",
        "Cairo",
    ]
    examples = [qa_example(a) for a in answers]
    settings = TrainingSettings(max_length=32, doc_stride=12)
    features = kind.build_features(examples, tiny_tokenizer, task, settings, training=True)
    assert len(features) > 2 * len(examples), "the context must be split into several windows"
    found = set()
    for feature in features:
        assert len(feature["input_ids"]) <= 32
        start, end = feature["start_position"], feature["end_position"]
        if start == 0:
            assert end == 0
            continue
        example = examples[feature["example_index"]]
        text = CONTEXT[feature["offsets"][start][0] : feature["offsets"][end][1]]
        assert text == example["answers"]["text"][0]
        found.add(feature["example_index"])
    assert found == set(range(len(examples))), "every answer lies wholly inside at least one window"


def test_qa_decoding_returns_exact_text_and_respects_no_answer(tiny_tokenizer):
    kind, task = KIND_IMPLEMENTATIONS["qa"], spec("qa", allow_no_answer=True)
    example = qa_example("green map")
    # Hugging Face windows (doc_stride = overlap): every answer lies inside a window with room around it.
    settings = TrainingSettings(max_length=40, doc_stride=16, qa_windows="huggingface")
    features = kind.build_features([example], tiny_tokenizer, task, settings, training=True)
    outputs = []
    for feature in features:
        scores = np.zeros((len(feature["input_ids"]), 2), dtype=np.float32)
        if feature["start_position"]:
            scores[feature["start_position"], 0] = 5.0
            scores[feature["end_position"], 1] = 5.0
        outputs.append(scores)
    assert kind.decode(outputs, features, [example], task, settings) == ["green map"]
    # A high "null" score (first token) in every window makes the v2.0 decoder answer nothing.
    for scores in outputs:
        scores[0] = 20.0
    assert kind.decode(outputs, features, [example], task, settings) == [""]
    # Without allow_no_answer the best span is returned regardless.
    assert kind.decode(outputs, features, [example], spec("qa"), settings) == ["green map"]


def _best_answer_by_loops(context, windows, allow_no_answer, settings):
    """The span search written as the plain double loop over n-best starts and ends (the reference)."""
    best_score, best_span, null_score = -np.inf, None, np.inf
    for scores, offsets, *rest in windows:
        max_context = rest[0] if rest else None
        null_score = min(null_score, float(scores[0, 0] + scores[0, 1]))
        for start in np.argsort(scores[:, 0])[::-1][: settings.n_best_size]:
            if offsets[start, 0] < 0 or (max_context is not None and not max_context[start]):
                continue
            for end in np.argsort(scores[:, 1])[::-1][: settings.n_best_size]:
                if end < start or end - start + 1 > settings.max_answer_length or offsets[end, 0] < 0:
                    continue
                score = float(scores[start, 0] + scores[end, 1])
                if score > best_score:
                    best_score, best_span = score, (int(offsets[start, 0]), int(offsets[end, 1]))
    if best_span is None or (allow_no_answer and null_score > best_score):
        return ""
    return context[best_span[0] : best_span[1]].strip()


def test_the_vectorised_span_search_chooses_what_the_double_loop_chooses():
    rng = np.random.default_rng(0)
    context = " ".join(f"w{i}" for i in range(40))
    for case in range(300):
        windows = []
        for _ in range(rng.integers(1, 4)):
            length = int(rng.integers(3, 30))
            scores = rng.integers(-3, 4, size=(length, 2)).astype(np.float32)  # small integers: many ties
            offsets = np.full((length, 2), -1)
            first = int(rng.integers(1, length))
            for position in range(first, length):
                word = int(rng.integers(0, 40))
                offsets[position] = (len(" ".join(f"w{i}" for i in range(word))) + (word > 0), 0)
                offsets[position, 1] = offsets[position, 0] + len(f"w{word}")
            flags = rng.random(length) < 0.7 if case % 2 else None
            windows.append((scores, offsets, flags))
        settings = TrainingSettings(n_best_size=int(rng.integers(1, 8)), max_answer_length=int(rng.integers(1, 6)))
        for allow in (False, True):
            assert best_answer(context, windows, allow, settings) == _best_answer_by_loops(
                context, windows, allow, settings
            ), case


def test_best_answer_respects_max_answer_length_and_strips_spaces():
    context = "alpha beta gamma"
    offsets = np.array([[-1, -1], [0, 5], [5, 10], [11, 16]], dtype=np.int32)  # token 2 includes the space
    scores = np.array([[0, 0], [1, 0], [3, 0], [0, 2]], dtype=np.float32)
    scores[:, 1] = [0, 0, 4, 1]
    assert best_answer(context, [(scores, offsets)], False, TrainingSettings()) == "beta"
    assert best_answer(context, [(scores, offsets)], False, TrainingSettings(max_answer_length=1)) == "beta"
    scores[:, 1] = [0, 0, 0, 9]
    assert best_answer(context, [(scores, offsets)], False, TrainingSettings(max_answer_length=1)) == "gamma"
    assert best_answer(context, [(scores, offsets)], False, TrainingSettings(max_answer_length=2)) == "beta gamma"


def test_tagging_labels_line_up_with_words(tiny_tokenizer):
    kind, task = KIND_IMPLEMENTATIONS["tagging"], spec("tagging", labels=("O", "B-PER", "I-PER", "B-LOC"))
    words = ["Zorblatt", "Quix", "buys", "the", "book", "in", "Xylophonia", "."]
    tags = ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O"]
    (feature,) = kind.build_features(
        [{"tokens": words, "tags": tags}], tiny_tokenizer, task, TrainingSettings(), training=True
    )
    labelled = np.flatnonzero(feature["labels"] != -100)
    assert len(feature["input_ids"]) > len(words) + 2, "rare words must be split into several sub-tokens"
    assert labelled.tolist() == feature["word_token"].tolist()
    assert [task.labels[feature["labels"][p]] for p in labelled] == tags
    encoding = tiny_tokenizer(words, is_split_into_words=True)
    assert [encoding.word_ids()[p] for p in labelled] == list(range(len(words))), (
        "each label sits on its word's first sub-token"
    )
    # Decoding the gold label ids gives the tags back.
    assert kind.decode(
        [feature["labels"].clip(0)], [feature], [{"tokens": words, "tags": tags}], task, TrainingSettings()
    ) == [tags]


def test_long_sentences_are_split_into_chunks_of_whole_words(tiny_tokenizer):
    kind, task = KIND_IMPLEMENTATIONS["tagging"], spec("tagging", labels=("O", "B-PER", "I-PER", "B-LOC"))
    words = ["Zorblatt", "Quix", "buys", "the", "book", "in", "Xylophonia", "."] * 3
    tags = ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC", "O"] * 3
    example = {"tokens": words, "tags": tags}
    features = kind.build_features([example], tiny_tokenizer, task, TrainingSettings(max_length=16), training=True)
    assert len(features) > 2 and all(len(f["input_ids"]) <= 16 for f in features)
    assert [f["word_start"] for f in features] == sorted(f["word_start"] for f in features)
    covered = [f["word_start"] + i for f in features for i, t in enumerate(f["word_token"]) if t >= 0]
    assert covered == list(range(len(words))), "every word is labelled exactly once, in order"
    outputs = [f["labels"].clip(0) for f in features]
    assert kind.decode(outputs, features, [example], task, TrainingSettings()) == [tags]


def test_multiple_choice_shapes(tiny_encoder_dir, tiny_tokenizer):
    from xstilts.train.modeling import MultiTaskModel, load_encoder

    kind, task = KIND_IMPLEMENTATIONS["multiple_choice"], spec("multiple_choice", num_choices=3)
    examples = [
        {"context": "Anna eats the", "choices": ["bread .", "car .", "long poem about the sea ."], "label": 0},
        {"context": "Tom drives", "question": "what ?", "choices": ["the bus .", "a hat .", "soup ."], "label": 0},
    ]
    features = kind.build_features(examples, tiny_tokenizer, task, TrainingSettings(), training=True)
    batch = kind.collate(features, tiny_tokenizer.pad_token_id)
    longest = max(len(ids) for f in features for ids in f["input_ids"])
    assert batch["input_ids"].shape == (2, 3, longest)
    assert batch["attention_mask"].sum(-1).tolist() == [[len(ids) for ids in f["input_ids"]] for f in features]
    model = MultiTaskModel(load_encoder(tiny_encoder_dir), {task.name: task})
    logits = model(task.name, batch)
    assert logits.shape == (2, 3)
    assert kind.loss(logits, batch).ndim == 0


def test_multiple_choice_pairs_context_and_question_against_each_answer(tiny_tokenizer):
    """As jiant (Cosmos QA): the question belongs to the prompt segment; the answer is the second segment."""
    kind, task = KIND_IMPLEMENTATIONS["multiple_choice"], spec("multiple_choice", num_choices=2)
    example = {"context": "Tom drives", "question": "what ?", "choices": ["the bus .", "soup ."], "label": 0}
    (feature,) = kind.build_features([example], tiny_tokenizer, task, TrainingSettings(), training=False)
    for ids, choice in zip(feature["input_ids"], example["choices"]):
        assert list(ids) == tiny_tokenizer("Tom drives what ?", choice)["input_ids"]
    without = {key: value for key, value in example.items() if key != "question"}
    (plain,) = kind.build_features([without], tiny_tokenizer, task, TrainingSettings(), training=False)
    assert list(plain["input_ids"][1]) == tiny_tokenizer("Tom drives", "soup .")["input_ids"]


def test_classification_dynamic_padding_and_decode(tiny_tokenizer):
    kind, task = KIND_IMPLEMENTATIONS["classification"], spec("classification", labels=("yes", "no"))
    examples = [{"text_a": "a b c d e f g", "text_b": "h", "label": "no"}, {"text_a": "a", "label": "yes"}]
    features = kind.build_features(examples, tiny_tokenizer, task, TrainingSettings(), training=True)
    batch = kind.collate(features, tiny_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[1] == max(len(f["input_ids"]) for f in features)
    assert batch["label"].tolist() == [1, 0]
    assert batch["input_ids"][1, len(features[1]["input_ids"]) :].eq(tiny_tokenizer.pad_token_id).all()
    assert kind.decode([1, 0], features, examples, task, TrainingSettings()) == ["no", "yes"]
    assert kind.score(["no", "no"], examples, task, "en") == {"accuracy": 50.0}


@pytest.mark.parametrize(
    "kind_name, record, message",
    [
        (
            "classification",
            {"text_a": "x", "label": "maybe"},
            "field 'label' must be one of ['yes', 'no'], got 'maybe'",
        ),
        (
            "qa",
            {"id": "1", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [0]}},
            "answer 'b' is not found in the context at character 0",
        ),
        (
            "qa",
            {"id": "1", "question": "q", "context": "abc", "answers": {"text": [], "answer_start": []}},
            "does not allow unanswerable questions",
        ),
        ("tagging", {"tokens": ["a", "b"], "tags": ["O"]}, "one tag per token (2 tokens)"),
        (
            "multiple_choice",
            {"context": "c", "choices": ["a", "b"], "label": 2},
            "index of the correct choice (0..1), got 2",
        ),
    ],
)
def test_malformed_records_are_explained(kind_name, record, message):
    task = spec(kind_name, labels=("yes", "no") if kind_name in ("classification", "tagging") else ())
    problem = KIND_IMPLEMENTATIONS[kind_name].validate_example(record, task)
    assert problem is not None and message in problem


def test_loader_names_file_and_line(tmp_path):
    from xstilts.data.examples import load_examples
    from xstilts.errors import DataError

    (tmp_path / "train-en.jsonl").write_text(
        '{"text_a": "x", "label": "yes"}\n\n{"text_a": 3, "label": "yes"}\n', encoding="utf-8"
    )
    (tmp_path / "dev-en.jsonl").write_text('{"text_a": "x", "label": "yes"}\nnot json\n', encoding="utf-8")
    task = TaskSpec(name="t", kind="classification", languages=("en",), data=LocalFiles(tmp_path), labels=("yes", "no"))
    with pytest.raises(DataError, match=r"train-en.jsonl:3: expected a string field 'text_a'"):
        load_examples(task, "train", "en")
    with pytest.raises(DataError, match=r"dev-en.jsonl:2: invalid JSON"):
        load_examples(task, "dev", "en")
    assert len(load_examples(task, "train", "en", limit=1)) == 1


def test_long_questions_are_cut_to_leave_room_for_the_context(tiny_tokenizer):
    from xstilts.errors import XstiltsError

    kind, task = KIND_IMPLEMENTATIONS["qa"], spec("qa")
    example = qa_example("Oslo", question="where does Ivan " + "really " * 40 + "read the green map ?")
    settings = TrainingSettings(max_length=40, doc_stride=20)
    features = kind.build_features([example], tiny_tokenizer, task, settings, training=True)
    assert all(len(f["input_ids"]) <= 40 for f in features)
    assert any(f["start_position"] > 0 for f in features), "the answer still fits in some window"
    with pytest.raises(XstiltsError, match="leave no room for the question"):
        kind.build_features(
            [example], tiny_tokenizer, task, TrainingSettings(max_length=24, doc_stride=20), training=True
        )


def test_first_token_last_layer_gives_the_same_first_token_states(tiny_encoder_dir, tiny_tokenizer):
    """The shortcut for pooled heads computes the last layer for token 0 only: same values as the full layer."""
    import numpy as np
    import torch

    from xstilts.tasks.base import _FirstTokenLastLayer, collate_padded, encode
    from xstilts.train.modeling import load_encoder

    encoder = load_encoder(tiny_encoder_dir).eval()
    assert _FirstTokenLastLayer.supports(encoder, encoder.encoder.layer)
    texts = ["the cat sees the dog", "a bird", "the dog sees the bird and the cat sees the dog again"]
    encoded = tiny_tokenizer(texts)
    batch = collate_padded(
        [{"input_ids": np.asarray(ids)} for ids in encoded["input_ids"]], tiny_tokenizer.pad_token_id
    )
    names = [name for name, _ in encoder.named_parameters()]
    with torch.no_grad():
        full = encode(encoder, batch)
        first = encode(encoder, batch, first_token_only=True)
    assert first.shape == (3, 1, full.shape[-1])
    assert torch.allclose(first[:, 0], full[:, 0], atol=1e-6)
    assert [name for name, _ in encoder.named_parameters()] == names, "the real last layer is back in place"

    encoder.train()  # gradients reach the last layer's weights through the shortcut
    states = encode(encoder, batch, first_token_only=True)
    (states * torch.randn_like(states)).sum().backward()
    assert encoder.encoder.layer[-1].output.dense.weight.grad.abs().sum() > 0


def test_xtreme_windows_decode_only_from_the_window_with_the_most_context(tiny_tokenizer):
    """With XTREME's windows a span may start only where its window gives the token its most context: a high
    score at the same token in a window where it sits at the edge is ignored."""
    kind, task = KIND_IMPLEMENTATIONS["qa"], spec("qa")
    example = qa_example("green map")
    settings = TrainingSettings(max_length=40, doc_stride=4)  # windows advance 4 tokens: much overlap
    features = kind.build_features([example], tiny_tokenizer, task, settings, training=True)
    holding = [f for f in features if f["start_position"]]
    assert len(holding) > 1, "the answer lies in several windows"
    best = [f for f in holding if f["max_context"][f["start_position"]]]
    edge = [f for f in holding if not f["max_context"][f["start_position"]]]
    assert len(best) == 1 and edge, "exactly one window is the answer's max-context window"
    outputs = []
    for feature in features:
        scores = np.zeros((len(feature["input_ids"]), 2), dtype=np.float32)
        if feature is best[0]:
            scores[feature["start_position"], 0] = scores[feature["end_position"], 1] = 5.0
        outputs.append(scores)
    assert kind.decode(outputs, features, [example], task, settings) == ["green map"]
    for feature, scores in zip(features, outputs):
        if feature is edge[0]:  # a higher score at a token outside its max-context window loses
            elsewhere = np.flatnonzero((feature["offsets"][:, 0] >= 0) & (feature["max_context"] == 0))
            scores[elsewhere[0], 0] = scores[elsewhere[0], 1] = 50.0
    assert kind.decode(outputs, features, [example], task, settings) == ["green map"]
