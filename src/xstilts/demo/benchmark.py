"""The demo benchmark: English intermediate tasks of every kind and three multilingual target tasks.

Intermediate (English train/dev only):
  demo_paraphrase  classification, pairs: same event (place phrase moved) or one slot changed
  demo_squad2      extractive QA with unanswerable questions (SQuAD v2.0-like)
  demo_swag        multiple choice: the plausible ending against scrambled ones (HellaSwag-like)
  demo_pos         tagging: part-of-speech tags (CCG-like)
Targets (English train/dev; test in en, x-lex, x-ord, x-scr):
  demo_nli         classification, 3-way NLI over events (XNLI-like: parallel dev and test sets)
  demo_ner         tagging, PER/LOC entities in IOB2 (PAN-X-like: each language its own sentences)
  demo_qa          extractive QA without unanswerable questions (XQuAD-like: parallel dev and test sets)

Every file is `{split}-{language}.jsonl` in the task kind's schema, written deterministically.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from xstilts.demo.languages import (
    ADJECTIVES,
    GENERAL_VERBS,
    NER_TAGS,
    NOUN_CATEGORY,
    NOUNS,
    POS_TAGS,
    SELECTIVE_VERBS,
    Event,
    Language,
    Token,
    World,
    join,
    make_languages,
)
from xstilts.readers.jsonl import write_jsonl

BENCHMARK_VERSION = 8
NLI_LABELS = ["entailment", "neutral", "contradiction"]
PARAPHRASE_LABELS = ["paraphrase", "different"]
QUESTION_KINDS = ("who", "what", "where")


def _changed(world: World, event: Event, rng: random.Random, slot: str | None = None) -> Event:
    """The event with one slot changed to a different value (a contradiction)."""
    slot = slot or rng.choice(["person", "noun", "verb", "negated"])
    if slot == "person":
        other = event.person
        while other == event.person:
            other = world.person()
        return replace(event, person=other)
    if slot == "noun":
        same_category = [n for n in NOUNS[NOUN_CATEGORY[event.noun]] if n != event.noun]
        return replace(event, noun=rng.choice(same_category))
    if slot == "verb":
        pool = SELECTIVE_VERBS[NOUN_CATEGORY[event.noun]] if event.verb not in GENERAL_VERBS else GENERAL_VERBS
        return replace(event, verb=rng.choice([v for v in pool if v != event.verb]))
    return replace(event, negated=True)


def _drop_details(event: Event, rng: random.Random) -> Event:
    """Remove at least one optional detail (adjective, place, time) that the event has."""
    present = [slot for slot in ("adjective", "place", "time") if getattr(event, slot)]
    drop = rng.sample(present, rng.randint(1, len(present)))
    return replace(event, **{slot: None for slot in drop})


def nli_example(world: World, language: Language, rng: random.Random) -> dict[str, Any]:
    label = rng.choice(NLI_LABELS)
    event = world.event(adjective=rng.choice(ADJECTIVES), place=world.place())
    if label == "entailment":
        premise, hypothesis = event, _drop_details(event, rng)
    elif label == "neutral":  # the hypothesis adds a detail the premise does not state
        premise, hypothesis = _drop_details(event, rng), event
    else:
        premise, hypothesis = event, _changed(world, event, rng)
    fronted = rng.random() < 0.3
    return {
        "text_a": join(language.statement(premise)),
        "text_b": join(language.statement(hypothesis, fronted=fronted)),
        "label": label,
    }


def paraphrase_example(world: World, language: Language, rng: random.Random) -> dict[str, Any]:
    event = world.event(place=world.place())
    label = rng.choice(PARAPHRASE_LABELS)
    other = event
    if label == "different":  # two slots changed, as non-duplicate questions usually differ in more than a word
        for slot in rng.sample(["person", "noun", "verb", "negated"], 2):
            other = _changed(world, other, rng, slot)
    return {
        "text_a": join(language.statement(event)),
        "text_b": join(language.statement(other, fronted=rng.random() < 0.7)),
        "label": label,
    }


def _tokens_with_offsets(tokens: list[Token]) -> tuple[str, list[int]]:
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token.text) + 1
    return join(tokens), starts


def qa_example(
    world: World,
    language: Language,
    rng: random.Random,
    index: int,
    unanswerable_rate: float = 0.0,
    statements: tuple[int, int] = (2, 3),
) -> dict[str, Any]:
    """A context of `statements` (low, high) statements and a question about one of them; the answer is a span."""
    events = [world.event() for _ in range(rng.randint(*statements))]
    asked = rng.randrange(len(events))
    ask = rng.choice(QUESTION_KINDS)
    if ask == "where" and not events[asked].place:
        events[asked] = replace(events[asked], place=world.place())
    sentences = [language.statement(e) for e in events]
    context_tokens = [t for sentence in sentences for t in sentence]
    context, starts = _tokens_with_offsets(context_tokens)
    if rng.random() < unanswerable_rate:  # ask about someone who is not in the context
        absent = replace(events[asked], person=world.person())
        while any(e.person == absent.person for e in events):
            absent = replace(absent, person=world.person())
        question = join(language.question(absent, "what" if ask == "who" else ask))
        return {
            "id": f"q{index}",
            "question": question,
            "context": context,
            "answers": {"text": [], "answer_start": []},
        }
    offset = sum(len(s) for s in sentences[:asked])
    answer = language.answer_tokens(events[asked], ask)
    sentence = sentences[asked]
    first = next(i for i in range(len(sentence)) if sentence[i : i + len(answer)] == answer)
    start = starts[offset + first]
    text = join(answer)
    assert context[start : start + len(text)] == text
    return {
        "id": f"q{index}",
        "question": join(language.question(events[asked], ask)),
        "context": context,
        "answers": {"text": [text], "answer_start": [start]},
    }


def swag_example(world: World, language: Language, rng: random.Random) -> dict[str, Any]:
    """Pick the plausible ending of a sentence (HellaSwag-like): the others are its words scrambled.

    The context is the sentence up to its verb; the distractors keep the ending's words but not its
    order, so telling them apart takes the language's word order, which masked-LM pretraining teaches.
    """
    event = world.event(negated=False, place=world.place(), adjective=rng.choice(ADJECTIVES))
    tokens = language.statement(event)
    verb_at = next(i for i, t in enumerate(tokens) if t.concept == event.verb)
    ending = [t.text for t in tokens[verb_at + 1 : -1]]
    choices = [" ".join(ending)]
    while len(choices) < 4:
        scrambled = " ".join(rng.sample(ending, len(ending)))
        if scrambled not in choices:
            choices.append(scrambled)
    choices = [c + " ." for c in choices]
    order = rng.sample(range(4), 4)
    return {"context": join(tokens[: verb_at + 1]), "choices": [choices[i] for i in order], "label": order.index(0)}


def tagging_sentence(world: World, language: Language, rng: random.Random) -> list[Token]:
    event = world.event()
    if rng.random() < 0.25:
        return language.question(event, rng.choice(["who", "what"] + (["where"] if event.place else [])))
    return language.statement(event, fronted=rng.random() < 0.3)


def pos_example(world: World, language: Language, rng: random.Random) -> dict[str, Any]:
    tokens = tagging_sentence(world, language, rng)
    return {"tokens": [t.text for t in tokens], "tags": [t.pos for t in tokens]}


def ner_example(world: World, language: Language, rng: random.Random) -> dict[str, Any]:
    tokens = tagging_sentence(world, language, rng)
    return {"tokens": [t.text for t in tokens], "tags": [t.ner for t in tokens]}


# name -> (kind, labels, example maker, is target, extra task definition keys)
TASKS: dict[str, dict[str, Any]] = {
    "demo_paraphrase": {
        "kind": "classification",
        "labels": PARAPHRASE_LABELS,
        "make": paraphrase_example,
        "target": False,
    },
    "demo_squad2": {
        "kind": "qa",
        "make": lambda world, language, rng, index: qa_example(world, language, rng, index, unanswerable_rate=1 / 3),
        "target": False,
        "indexed": True,
        "allow_no_answer": True,
    },
    "demo_swag": {"kind": "multiple_choice", "make": swag_example, "target": False, "num_choices": 4},
    "demo_pos": {"kind": "tagging", "labels": POS_TAGS, "make": pos_example, "target": False},
    # Parallel test sets, as XNLI's and XQuAD's: the same items stated in every language (line i, or question id).
    "demo_nli": {
        "kind": "classification",
        "labels": NLI_LABELS,
        "make": nli_example,
        "target": True,
        "parallel": "line",
    },
    "demo_ner": {"kind": "tagging", "labels": NER_TAGS, "make": ner_example, "target": True},
    # One statement per context: a tiny encoder learns this to F1 > 50 in a minute; its cross-lingual difficulty
    # is unchanged (the answer's position and form differ by language).
    "demo_qa": {
        "kind": "qa",
        "make": lambda world, language, rng, index: qa_example(world, language, rng, index, statements=(1, 1)),
        "target": True,
        "indexed": True,
        "parallel": "id",
    },
    # The positive control: plenty of English QA of demo_qa's own kind, as an intermediate task. demo_qa trains on
    # few examples, so this must help it beyond the noise, or the study could not detect an effect at all.
    "demo_squad": {
        "kind": "qa",
        "make": lambda world, language, rng, index: qa_example(world, language, rng, index, statements=(1, 1)),
        "target": False,
        "indexed": True,
        "train_size_factor": 4,  # plenty: four times the benchmark's train_size
    },
}


def _examples(task: str, language: Language, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` examples of `task` in `language`. A parallel task's examples are the same items in every language
    (one random stream per task and seed: the languages state the same events, only the words differ); the others
    draw each language's items apart."""
    info = TASKS[task]
    rng = random.Random(f"{task}/{seed}" if info.get("parallel") else f"{task}/{language.code}/{seed}")
    world = World(rng)
    make: Callable[..., dict[str, Any]] = info["make"]
    if info.get("indexed"):
        return [make(world, language, rng, i) for i in range(count)]
    return [make(world, language, rng) for _ in range(count)]


def write_benchmark(data_dir: Path, train_size: int = 2000, eval_size: int = 300) -> dict[str, dict[str, Any]]:
    """Write every task's files under `data_dir/<task>/`; returns the config `tasks:` block for them.

    English train and dev for every task; for targets, a dev and a test file per language (dev to choose
    models on, test to report). Different splits use different seeds, so no example is shared between them.
    """
    languages = make_languages()
    definitions: dict[str, dict[str, Any]] = {}
    marker = data_dir / "VERSION"
    fresh = not (marker.is_file() and marker.read_text().strip() == f"{BENCHMARK_VERSION} {train_size} {eval_size}")
    for task, info in TASKS.items():
        task_dir = data_dir / task
        task_languages = list(languages) if info["target"] else ["en"]
        if fresh:
            task_dir.mkdir(parents=True, exist_ok=True)
            size = int(train_size * info.get("train_size_factor", 1))
            write_jsonl(task_dir / "train-en.jsonl", _examples(task, languages["en"], size, seed=1))
            write_jsonl(task_dir / "dev-en.jsonl", _examples(task, languages["en"], eval_size, seed=2))
            for code in task_languages:
                write_jsonl(task_dir / f"test-{code}.jsonl", _examples(task, languages[code], eval_size, seed=3))
                if code != "en":
                    write_jsonl(task_dir / f"dev-{code}.jsonl", _examples(task, languages[code], eval_size, seed=2))
        definition: dict[str, Any] = {"kind": info["kind"], "languages": task_languages, "data_dir": str(task_dir)}
        if info["target"]:
            definition["dev_languages"] = [code for code in task_languages if code != "en"]
        for key in ("labels", "num_choices", "allow_no_answer", "parallel"):
            if key in info:
                definition[key] = info[key]
        definitions[task] = definition
    if fresh:
        marker.write_text(f"{BENCHMARK_VERSION} {train_size} {eval_size}\n")
    return definitions


def write_parallel(directory: Path, count: int = 300, seed: int = 4) -> Path:
    """`<lang>.txt` files of the same `count` events stated in every language, line i in each a translation of
    line i in `en.txt` (the alignment diagnostics' parallel sentences). Rewritten only when missing."""
    languages = make_languages()
    if all((directory / f"{code}.txt").is_file() for code in languages):
        return directory
    rng = random.Random(f"parallel/{seed}")
    events = list(World(rng).events(count))
    directory.mkdir(parents=True, exist_ok=True)
    for code, language in languages.items():
        lines = [join(language.statement(event)) for event in events]
        (directory / f"{code}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def corpus_sentences(count_per_language: int, seed: int = 0, code_switch_rate: float = 0.15) -> list[str]:
    """The multilingual pretraining text: statements and questions in every language.

    A share of sentences is code-switched (each content word swapped, with probability 1/2, for the
    same concept in another language), as happens in web text; without any cross-lingual signal a
    model this small learns no alignment in a minute of pretraining.
    """
    languages = make_languages()
    rng = random.Random(f"corpus/{seed}")
    world = World(rng)
    others = list(languages.values())
    sentences = []
    for language in languages.values():
        for _ in range(count_per_language):
            tokens = tagging_sentence(world, language, rng)
            if rng.random() < code_switch_rate:
                other = rng.choice([lang for lang in others if lang is not language])
                tokens = [
                    other.word(t.concept, inflect=t.inflected)
                    if t.pos not in ("PROPN", "PUNCT") and rng.random() < 0.5
                    else t
                    for t in tokens
                ]
            sentences.append(join(tokens))
    rng.shuffle(sentences)
    return sentences
