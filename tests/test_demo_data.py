"""The generated languages and benchmark: valid files, and the documented differences between languages."""

from __future__ import annotations

import random

from xstilts.data.examples import load_examples
from xstilts.demo.benchmark import TASKS, corpus_sentences
from xstilts.demo.languages import World, join, make_languages


def test_every_generated_file_is_valid_for_its_kind(demo_registry, demo_tasks):
    assert set(demo_tasks) == set(TASKS)
    kinds = {demo_registry.get(name).kind for name in TASKS}
    assert kinds == {"classification", "multiple_choice", "qa", "tagging"}
    for name in TASKS:
        spec = demo_registry.get(name)
        assert len(load_examples(spec, "train", "en")) == 48 * TASKS[name].get("train_size_factor", 1)
        for language in spec.languages:
            assert len(load_examples(spec, "test", language)) == 12
    assert demo_registry.get("demo_nli").languages == ("en", "x-lex", "x-ord", "x-scr")


def test_languages_differ_as_documented():
    languages = make_languages()
    event = World(random.Random(0)).event(adjective="red", place=("Lima",), time=None, negated=False)
    en, lex, ord_, scr = (languages[c].statement(event) for c in ("en", "x-lex", "x-ord", "x-scr"))
    # x-lex: same order as English, different words (names kept).
    assert [t.concept for t in lex] == [t.concept for t in en]
    assert {t.text for t in lex if t.pos not in ("PROPN", "PUNCT")}.isdisjoint({t.text for t in en})
    # x-ord: same words as x-lex, verb last before the full stop, postposition after the place.
    assert sorted(t.text for t in ord_) == sorted(t.text for t in lex) and ord_[-2].pos == "VERB"
    assert [t.concept for t in ord_].index("in") == [t.concept for t in ord_].index("Lima") + 1
    # x-scr: x-lex in another alphabet, sharing no letters with the Latin-script languages.
    assert [t.concept for t in scr] == [t.concept for t in lex]
    latin = set(join(en) + join(lex)) - set(" .?,")
    assert not latin & set(join(scr))


def test_corpus_covers_every_language_and_code_switches():
    sentences = corpus_sentences(200, seed=1)
    assert len(sentences) == 800
    greek = [s for s in sentences if any("α" <= ch <= "ω" for ch in s)]
    mixed = [s for s in greek if any("a" <= ch <= "z" for ch in s.replace(".", ""))]
    assert 150 < len(greek) < 300 and mixed, "x-scr sentences exist, some code-switched with Latin-script words"
