"""Four generated languages that describe one small world of events, for the offline demo.

An event is "PERSON VERB the ADJ NOUN in PLACE TIME" with optional parts. Every language renders it
from the same concepts, so each rendered token knows its concept, part of speech and entity tag.
The languages differ from English one factor at a time, so the demo shows which differences a tiny
model's transfer survives:

- `en`    English words, subject-verb-object, prepositions, Latin script.
- `x-lex` new lexicon: every word is a generated pseudo-word (names and places stay as they are);
          English word order and script. Differs from `en` in lexicon only.
- `x-ord` the x-lex lexicon with another word order: subject-object-verb, postpositions, nouns
          before adjectives and determiners, questions with the wh-word in place. Differs from x-lex
          in word order only.
- `x-scr` x-lex written in a Greek-like alphabet (names and places too), so it shares no letters
          with the other three. Differs from x-lex in script only.

Nothing here is English grammar in earnest; it is a controlled, honest toy (see the README).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

# Concepts. Nouns come in categories; each category has verbs that select it ("eats" takes food).
NOUNS: dict[str, list[str]] = {
    "food": ["bread", "apple", "rice", "cheese", "soup", "cake", "egg", "fish"],
    "vehicle": ["car", "bike", "boat", "bus", "train", "truck", "cart", "plane"],
    "text": ["book", "letter", "poem", "story", "note", "map", "song", "paper"],
    "clothing": ["shirt", "hat", "coat", "shoe", "scarf", "dress", "glove", "sock"],
}
SELECTIVE_VERBS: dict[str, list[str]] = {
    "food": ["eat", "cook", "bake", "taste"],
    "vehicle": ["drive", "ride", "park", "steer"],
    "text": ["read", "write", "print", "edit"],
    "clothing": ["wear", "knit", "sew", "fold"],
}
GENERAL_VERBS = ["buy", "sell", "see", "like", "find", "want"]
ADJECTIVES = ["red", "blue", "green", "big", "small", "old", "new", "cheap"]
TIMES = ["today", "yesterday", "tomorrow", "often"]
FUNCTION_WORDS = ["the", "in", "does", "not", "who", "what", "where", "is", "at"]
PUNCTUATION = [".", "?", ","]

ALL_NOUNS = [n for nouns in NOUNS.values() for n in nouns]
ALL_VERBS = GENERAL_VERBS + [v for verbs in SELECTIVE_VERBS.values() for v in verbs]
CONCEPTS = ALL_NOUNS + ALL_VERBS + ADJECTIVES + TIMES + FUNCTION_WORDS
NOUN_CATEGORY = {noun: category for category, nouns in NOUNS.items() for noun in nouns}

POS_OF = {**{n: "NOUN" for n in ALL_NOUNS}, **{v: "VERB" for v in ALL_VERBS}, **{a: "ADJ" for a in ADJECTIVES}}
POS_OF.update({t: "ADV" for t in TIMES})
POS_OF.update({"the": "DET", "in": "ADP", "at": "ADP", "does": "AUX", "is": "AUX", "not": "PART"})
POS_OF.update({"who": "PRON", "what": "PRON", "where": "ADV"})
POS_OF.update({p: "PUNCT" for p in PUNCTUATION})
POS_TAGS = ["ADJ", "ADP", "ADV", "AUX", "DET", "NOUN", "PART", "PRON", "PROPN", "PUNCT", "VERB"]
NER_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_GREEK = dict(zip("abcdefghijklmnopqrstuvwxyz", "αβψδεφγηιξκλμνοπθρστυωϝχζϡ"))


@dataclass(frozen=True)
class Token:
    """One rendered word with what it stands for (concept or name) and its gold tags."""

    text: str
    concept: str
    pos: str
    ner: str = "O"
    inflected: bool = False


@dataclass(frozen=True)
class Event:
    person: tuple[str, ...]
    verb: str
    noun: str
    adjective: str | None = None
    place: tuple[str, ...] | None = None
    time: str | None = None
    negated: bool = False


@dataclass
class Language:
    code: str
    description: str
    lexicon: dict[str, str]
    third_person_suffix: str
    order: str = "svo"  # or "sov"
    greek_script: bool = False
    punctuation: dict[str, str] = field(default_factory=lambda: {p: p for p in PUNCTUATION})

    def spell(self, text: str) -> str:
        if not self.greek_script:
            return text
        return "".join(_GREEK.get(ch.lower(), ch).upper() if ch.isupper() else _GREEK.get(ch, ch) for ch in text)

    def word(self, concept: str, inflect: bool = False) -> Token:
        if concept in PUNCTUATION:
            return Token(self.punctuation[concept], concept, "PUNCT")
        surface = self.lexicon[concept] + (self.third_person_suffix if inflect else "")
        return Token(self.spell(surface), concept, POS_OF[concept], inflected=inflect)

    def name(self, parts: tuple[str, ...], entity: str) -> list[Token]:
        return [Token(self.spell(p), p, "PROPN", ("B-" if i == 0 else "I-") + entity) for i, p in enumerate(parts)]

    # --- sentences -------------------------------------------------------------------------------

    def _noun_phrase(self, event: Event) -> list[Token]:
        adjective = [self.word(event.adjective)] if event.adjective else []
        if self.order == "sov":
            return [self.word(event.noun), *adjective, self.word("the")]
        return [self.word("the"), *adjective, self.word(event.noun)]

    def _place_phrase(self, event: Event) -> list[Token]:
        if not event.place:
            return []
        place = self.name(event.place, "LOC")
        return place + [self.word("in")] if self.order == "sov" else [self.word("in"), *place]

    def statement(self, event: Event, fronted: bool = False) -> list[Token]:
        """A declarative sentence; `fronted` moves the place phrase to the front (a paraphrase)."""
        person = self.name(event.person, "PER")
        time = [self.word(event.time)] if event.time else []
        place = self._place_phrase(event)
        negation = [self.word("does"), self.word("not")] if event.negated else []
        if self.order == "sov":
            verb = [*negation, self.word(event.verb, inflect=not event.negated)]
            core = person + time + place + self._noun_phrase(event) + verb
            if fronted and place:
                core = place + [self.word(",")] + person + time + self._noun_phrase(event) + verb
            return core + [self.word(".")]
        verb = [*negation, self.word(event.verb, inflect=not event.negated)]
        if fronted and place:
            return place + [self.word(",")] + person + verb + self._noun_phrase(event) + time + [self.word(".")]
        return person + verb + self._noun_phrase(event) + place + time + [self.word(".")]

    def question(self, event: Event, ask: str) -> list[Token]:
        """A wh-question about the event's person ("who"), object ("what") or place ("where")."""
        person = self.name(event.person, "PER")
        object_phrase = self._noun_phrase(event)
        place = self._place_phrase(event)
        if self.order == "sov":  # wh-word stays where the answer would be
            if ask == "who":
                body = [self.word("who")] + place + object_phrase + [self.word(event.verb, inflect=True)]
            elif ask == "what":
                body = person + place + [self.word("what"), self.word(event.verb, inflect=True)]
            else:
                body = person + [self.word("where")] + object_phrase + [self.word(event.verb, inflect=True)]
            return body + [self.word("?")]
        if ask == "who":
            body = [self.word("who"), self.word(event.verb, inflect=True)] + object_phrase + place
        elif ask == "what":
            body = [self.word("what"), self.word("does")] + person + [self.word(event.verb)] + place
        else:
            body = [self.word("where"), self.word("does")] + person + [self.word(event.verb)] + object_phrase
        return body + [self.word("?")]

    def answer_tokens(self, event: Event, ask: str) -> list[Token]:
        """The tokens of a statement of `event` that answer the question (a contiguous span)."""
        if ask == "who":
            return self.name(event.person, "PER")
        if ask == "where":
            return self.name(event.place or (), "LOC")
        noun_phrase = self._noun_phrase(event)
        return [t for t in noun_phrase if t.concept != "the"]


def _pseudo_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        syllables = rng.choice([1, 2, 2, 3])
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if rng.random() < 0.3:
            word += rng.choice("lnrs")
        if word not in taken and len(word) > 1:
            taken.add(word)
            words.append(word)
    return words


def make_languages(seed: int = 7) -> dict[str, Language]:
    """The four demo languages; deterministic for a given seed."""
    rng = random.Random(seed)
    english = {c: c for c in CONCEPTS}
    pseudo = dict(zip(CONCEPTS, _pseudo_words(rng, len(CONCEPTS), set(CONCEPTS))))
    languages = [
        Language("en", "English words, subject-verb-object, Latin script", english, "s"),
        Language("x-lex", "generated lexicon; English word order and script", pseudo, "n"),
        Language(
            "x-ord",
            "x-lex lexicon; subject-object-verb, postpositions, noun before adjective",
            pseudo,
            "n",
            order="sov",
        ),
        Language("x-scr", "x-lex lexicon and order, written in a Greek-like alphabet", pseudo, "n", greek_script=True),
    ]
    return {language.code: language for language in languages}


class World:
    """Random events over random names, for one seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        taken: set[str] = set(CONCEPTS)
        self.first_names = [w.capitalize() for w in _pseudo_words(rng, 300, taken)]
        self.last_names = [w.capitalize() for w in _pseudo_words(rng, 300, taken)]
        self.places = [w.capitalize() for w in _pseudo_words(rng, 300, taken)]

    def person(self) -> tuple[str, ...]:
        first = self.rng.choice(self.first_names)
        return (first, self.rng.choice(self.last_names)) if self.rng.random() < 0.5 else (first,)

    def place(self) -> tuple[str, ...]:
        name = self.rng.choice(self.places)
        return (name, self.rng.choice(self.places)) if self.rng.random() < 0.25 else (name,)

    def event(self, selective: bool | None = None, **fixed: object) -> Event:
        rng = self.rng
        category = rng.choice(list(NOUNS))
        use_selective = rng.random() < 0.5 if selective is None else selective
        verb = rng.choice(SELECTIVE_VERBS[category] if use_selective else GENERAL_VERBS)
        event = Event(
            person=self.person(),
            verb=verb,
            noun=rng.choice(NOUNS[category]),
            adjective=rng.choice(ADJECTIVES) if rng.random() < 0.6 else None,
            place=self.place() if rng.random() < 0.7 else None,
            time=rng.choice(TIMES) if rng.random() < 0.3 else None,
        )
        return replace(event, **fixed) if fixed else event

    def events(self, count: int) -> Iterator[Event]:
        for _ in range(count):
            yield self.event()


def join(tokens: list[Token]) -> str:
    return " ".join(t.text for t in tokens)
