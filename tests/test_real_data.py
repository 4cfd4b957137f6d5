"""Readers and the data check on the real public samples in ../shared/data/real (skipped when absent)."""

from __future__ import annotations

import pytest
from conftest import REAL_DATA

from xstilts.data.prepare import check
from xstilts.readers.conll import read_conllu_upos, read_word_tag
from xstilts.readers.squad import read_squad_json
from xstilts.readers.tabular import read_rows, read_xtreme_pairs
from xstilts.tasks import default_registry

pytestmark = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data samples not found at {REAL_DATA}")


def test_data_check_reads_every_file_with_no_false_alarms():
    reports, unrecognised = check(default_registry(), REAL_DATA)
    counts = {(r.task, r.split, r.language, r.files[0].split("/real/")[1]): r.examples for r in reports}
    assert not [r for r in reports if r.problems]
    assert {
        counts[("xquad", "test", lang, f"xquad/xquad.{lang}.json")]
        for lang in "ar de el en es hi ro ru th tr vi zh".split()
    } == {1190}
    assert {
        counts[("xnli", "dev", lang, f"xnli/dev-{lang}.tsv")]
        for lang in "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
    } == {2490}
    assert {counts[("pawsx", "dev", lang, f"pawsx/dev-{lang}.tsv")] for lang in "de en es fr ja ko zh".split()} == {
        2000
    }
    assert counts[("mlqa", "dev", "en", "mlqa/dev-context-en-question-en.json")] == 1148
    assert counts[("mlqa", "dev", "ar", "mlqa/dev-context-ar-question-ar.json")] == 517
    assert counts[("udpos", "train", "en", "udpos/train-en.tsv")] == 21787
    assert counts[("udpos", "dev", "de", "ud-conllu/de_gsd-ud-dev.conllu")] == 799
    assert counts[("panx", "train", "af", "panx/af/train")] == 5000
    assert counts[("tydiqa", "train", "en", "tydiqa/tydiqa.goldp.en.train.json")] == 3696
    assert counts[("cosmosqa", "dev", "en", "cosmosqa/valid.csv")] == 2985
    assert counts[("bucc2018", "dev", "zh", "bucc2018/zh-en.dev.zh")] == 8624
    assert len([k for k in counts if k[0] == "tatoeba"]) == 41
    assert counts[("tatoeba", "test", "jv", "tatoeba/tatoeba.jav-eng.jav")] == 205
    names = sorted(p.name for p in unrecognised)
    assert names == [
        "LICENSE",
        "LICENSE-CC-BY-SA4.0.txt",
        "LICENSE-mmner-repo",
        "LICENSE.txt",
        "SOURCES.md",
        "dev-context-de-question-en.json",
        "dev-context-en-question-zh.json",
    ], "only licences and cross-language MLQA files"


def test_xtreme_tsv_needs_a_csv_reader():
    path = REAL_DATA / "pawsx" / "dev-fr.tsv"
    quoted = [(line, row) for line, row in read_rows(path) if any('"' in field for field in row)]
    raw_lines = path.read_text(encoding="utf-8").split("\n")
    assert len(quoted) > 50, "the French sample has fields with quotes"
    for line, row in quoted:
        assert len(row) == 3 and row[2] in ("0", "1"), f"line {line}"
    line, row = quoted[0]
    raw = raw_lines[line - 1].split("\t")[0]
    assert raw.startswith('"') and '""' in raw and row[0] == raw[1:-1].replace('""', '"'), (
        "on disk the field is csv-quoted"
    )
    assert len(read_xtreme_pairs(path)) == 2000


def test_mlqa_numeric_version_and_tydiqa_repeated_ids():
    assert len(read_squad_json(REAL_DATA / "mlqa" / "dev-context-en-question-en.json")) == 1148
    tydiqa = read_squad_json(REAL_DATA / "tydiqa" / "tydiqa.goldp.en.train.json")
    assert len(tydiqa) == 3696 and len({r["id"] for r in tydiqa}) == 89
    for record in tydiqa + read_squad_json(REAL_DATA / "xquad" / "xquad.zh.json"):
        for text, start in zip(record["answers"]["text"], record["answers"]["answer_start"]):
            assert record["context"][start : start + len(text)] == text


def test_ud_multiword_tokens_follow_xtreme():
    ours = read_conllu_upos(REAL_DATA / "ud-conllu" / "de_gsd-ud-dev.conllu", "de")
    theirs = {tuple(s["tokens"]): s["tags"] for s in read_word_tag(REAL_DATA / "udpos" / "dev-de.tsv")}
    assert all(tuple(s["tokens"]) in theirs for s in ours), "every GSD dev sentence tokenises as in XTREME's file"
    fused = {"zum", "zur", "im", "am", "vom", "beim", "ins"}
    compared = [
        (a, b)
        for s in ours
        for w, a, b in zip(s["tokens"], s["tags"], theirs[tuple(s["tokens"])])
        if w.lower() in fused
    ]
    assert len(compared) > 100 and all(a == b for a, b in compared), "fused forms get XTREME's UPOS"
    assert any(w == "zum" for s in ours for w in s["tokens"])


def test_panx_tokens_keep_their_own_colons():
    sentences = read_word_tag(REAL_DATA / "panx" / "af" / "train", strip_language_prefix=True)
    raw = [
        line.split("\t")[0]
        for line in (REAL_DATA / "panx" / "af" / "train").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    with_colon = [token for token in raw if token.count(":") > 1]
    assert len(sentences) == 5000
    if with_colon:
        flat = {t for s in sentences for t in s["tokens"]}
        assert with_colon[0].split(":", 1)[1] in flat


def test_gold_answers_score_100_except_the_documented_mlqa_es_case():
    from xstilts.metrics.qa import mlqa_scores, score_answers

    for language in "ar de en es hi vi zh".split():
        records = read_squad_json(REAL_DATA / "mlqa" / f"dev-context-{language}-question-{language}.json")
        scores = mlqa_scores(
            [r["answers"]["text"][0] for r in records], [r["answers"]["text"] for r in records], language
        )
        assert scores["exact_match"] == 100.0
        # es: one gold answer is the bare article "una", which normalises to nothing (EM 1, F1 0).
        assert scores["f1"] == (pytest.approx(100 * 499 / 500) if language == "es" else 100.0), language
    for language in "ar de el en es hi ro ru th tr vi zh".split():
        records = read_squad_json(REAL_DATA / "xquad" / f"xquad.{language}.json")
        assert score_answers([r["answers"]["text"][0] for r in records], [r["answers"]["text"] for r in records]) == {
            "exact_match": 100.0,
            "f1": 100.0,
        }


def test_which_test_sets_are_parallel_is_read_from_the_data():
    """The built-in targets declared parallel (intervals draw an item in every language at once) hold the same
    items in every language, matched the way `TaskSpec.parallel` says; those declared independent do not."""
    registry = default_registry()
    declared = {name: registry.get(name).parallel for name in XTREME_TARGETS}
    assert declared == {
        "xnli": "line",
        "pawsx": "line",
        "xquad": "id",
        "mlqa": "id",
        "udpos": None,
        "panx": None,
        "tydiqa": None,
        "bucc2018": None,
        "tatoeba": None,
    }
    # XNLI: line i is one premise-hypothesis pair in every language, with the same label.
    xnli = {lang: read_xtreme_pairs(REAL_DATA / "xnli" / f"dev-{lang}.tsv") for lang in ("en", "de", "sw", "zh")}
    assert all([r["label"] for r in rows] == [r["label"] for r in xnli["en"]] for rows in xnli.values())
    # PAWS-X: line i is one pair; translators re-labelled a few (at least 98% agree line by line).
    pawsx = {lang: read_xtreme_pairs(REAL_DATA / "pawsx" / f"dev-{lang}.tsv") for lang in ("en", "de", "ja")}
    for rows in pawsx.values():
        same = sum(a["label"] == b["label"] for a, b in zip(rows, pawsx["en"]))
        assert len(rows) == len(pawsx["en"]) and same / len(rows) >= 0.98
    # XQuAD: the same 1,190 question ids in every language.
    ids = {
        lang: [e["id"] for e in read_squad_json(REAL_DATA / "xquad" / f"xquad.{lang}.json")]
        for lang in ("en", "th", "zh")
    }
    assert ids["en"] == ids["th"] == ids["zh"] and len(set(ids["en"])) == 1190
    # MLQA: each question in some of the languages, under the same id (every German id is an English one).
    en = {e["id"] for e in read_squad_json(REAL_DATA / "mlqa" / "dev-context-en-question-en.json")}
    de = {e["id"] for e in read_squad_json(REAL_DATA / "mlqa" / "dev-context-de-question-de.json")}
    ar = {e["id"] for e in read_squad_json(REAL_DATA / "mlqa" / "dev-context-ar-question-ar.json")}
    assert de <= en and ar <= en and len(de & ar) < len(de), "parallel in part: matched by id, not by line"
    # Tatoeba: every language has its own English sentences (no item is shared across languages).
    english = {
        code: (REAL_DATA / "tatoeba" / f"tatoeba.{code}-eng.eng").read_text().splitlines() for code in ("deu", "spa")
    }
    assert len(set(english["deu"]) & set(english["spa"])) < 0.05 * len(english["deu"])

    # UD-POS: each language's test set is its own treebanks' sentences.
    def sentences(path):
        return {tuple(e["tokens"]) for e in read_word_tag(path)}

    assert not sentences(REAL_DATA / "udpos" / "test-en.tsv") & sentences(REAL_DATA / "udpos" / "test-es.tsv")


XTREME_TARGETS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
