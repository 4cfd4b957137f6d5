"""The task catalogue: every task of the study by name, hub record mappings, and the prepare round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xstilts.config import builtin_registry
from xstilts.data import load_examples
from xstilts.prepare import check, map_hub_records, prepare
from xstilts.tasks import default_registry, kind_of
from xstilts.tasks.catalogue import INTERMEDIATE_TASKS, XTREME_TASKS


def test_every_task_of_the_study_is_registered_with_the_protocol_languages():
    registry = default_registry()
    assert set(XTREME_TASKS) | set(INTERMEDIATE_TASKS) <= set(registry.names())
    sizes = {name: len(registry.get(name).languages) for name in XTREME_TASKS}
    assert sizes == {"xnli": 15, "pawsx": 7, "udpos": 33, "panx": 40, "xquad": 12, "mlqa": 7, "tydiqa": 9, "bucc2018": 4, "tatoeba": 41}
    assert registry.get("xnli").training_defaults["epochs"] == 2 and registry.get("udpos").training_defaults["epochs"] == 10
    assert registry.get("mlqa").metric == "mlqa" and registry.get("squad_v2").allow_no_answer
    assert all(registry.get(name).sources.hub for name in ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "mnli", "anli_plus", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa", "commonsenseqa"))
    assert not registry.get("ccg").sources.hub, "CCGbank has no public copy"


class _ClassLabels:
    def __init__(self, names):
        self.names = names


class _Sequence:
    def __init__(self, names):
        self.feature = _ClassLabels(names)


def hub(task: str, split: str, language: str):
    made = default_registry().get(task).sources.hub[split](language)
    return made if isinstance(made, list) else [made]


def test_hub_records_map_to_each_kind_schema():
    registry = default_registry()
    cases = [
        ("xnli", "test", "de", [{"language": "de", "sentence1": "a", "sentence2": "b", "gold_label": "contradiction"}, {"language": "fr", "sentence1": "x", "sentence2": "y", "gold_label": "neutral"}], None,
         [{"text_a": "a", "text_b": "b", "label": "contradiction"}]),
        ("xnli", "train", "en", [{"premise": "p", "hypothesis": "h", "label": 1}], None, [{"text_a": "p", "text_b": "h", "label": "neutral"}]),
        ("pawsx", "test", "ja", [{"sentence1": "s", "sentence2": "t", "label": 1}], None, [{"text_a": "s", "text_b": "t", "label": "1"}]),
        ("panx", "test", "af", [{"tokens": ["Jan", "Smuts"], "ner_tags": [1, 2]}], {"ner_tags": _Sequence(["O", "B-PER", "I-PER"])}, [{"tokens": ["Jan", "Smuts"], "tags": ["B-PER", "I-PER"]}]),
        ("udpos", "dev", "de", [{"tokens": ["zum"], "pos_tags": [1]}], {"pos_tags": _Sequence(["ADJ", "ADP"])}, [{"tokens": ["zum"], "tags": ["ADP"]}]),
        ("tydiqa", "test", "fi", [{"id": "finnish-1", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [1]}}, {"id": "english-2", "question": "q", "context": "c", "answers": {"text": [], "answer_start": []}}], None,
         [{"id": "finnish-1", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [1]}}]),
        ("hellaswag", "dev", "en", [{"ctx_a": "He", "ctx_b": "then", "endings": ["a", "b", "c", "d"], "label": "2"}, {"ctx_a": "x", "ctx_b": "", "endings": ["a"] * 4, "label": ""}], None,
         [{"context": "He", "choices": ["then a", "then b", "then c", "then d"], "label": 2}]),
        ("commonsenseqa", "train", "en", [{"id": "c1", "question": "Q?", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "B"}], None,
         [{"id": "c1", "context": "Q?", "choices": list("vwxyz"), "label": 1}]),
        ("cosmosqa", "dev", "en", [{"id": "k", "context": "c", "question": "q", "answer0": "a", "answer1": "b", "answer2": "c", "answer3": "d", "label": 3}], None,
         [{"id": "k", "context": "c", "question": "q", "choices": ["a", "b", "c", "d"], "label": 3}]),
        ("qqp", "dev", "en", [{"question1": "a", "question2": "b", "label": 0}], None, [{"text_a": "a", "text_b": "b", "label": "not_duplicate"}]),
    ]
    for task, split, language, rows, features, expected in cases:
        (hub_file,) = hub(task, split, language)
        mapped = map_hub_records(hub_file, rows, features)
        assert mapped == expected, task
        spec = registry.get(task)
        assert all(kind_of(spec).validate_example(r, spec) is None for r in mapped), task
    assert [h.dataset for h in hub("anli_plus", "train", "en")] == ["stanfordnlp/snli", "nyu-mll/glue", "facebook/anli", "facebook/anli", "facebook/anli"]
    (snli, *_) = hub("anli_plus", "train", "en")
    assert map_hub_records(snli, [{"premise": "p", "hypothesis": "h", "label": -1}]) == [], "SNLI pairs without gold label are dropped"
    assert hub("udpos", "test", "fa")[0].config == "udpos.Persian" and hub("mlqa", "test", "zh")[0].config == "MLQA.zh.zh"


def test_prepare_from_upstream_files_round_trips_into_a_run(tmp_path):
    source = tmp_path / "download"
    (source / "pawsx").mkdir(parents=True)
    (source / "pawsx" / "train-en.tsv").write_text('"He said ""hi""."\tHe said hi.\t1\nA\tB\t0\n', encoding="utf-8")
    (source / "pawsx" / "dev-en.tsv").write_text("A\tB\t0\n", encoding="utf-8")
    (source / "pawsx" / "dev-de.tsv").write_text("C\tD\t1\n", encoding="utf-8")
    (source / "pawsx" / "test-de.tsv").write_text("C\tD\n", encoding="utf-8")
    out = tmp_path / "data"
    with pytest.raises(Exception, match="labels removed"):
        prepare(default_registry(), ["pawsx"], out, source_dir=source)
    assert not out.exists(), "nothing is written when a file is invalid"
    (source / "pawsx" / "test-de.tsv").unlink()
    reports = prepare(default_registry(), ["pawsx"], out, source_dir=source)
    assert {(r.split, r.language, r.examples) for r in reports} == {("train", "en", 2), ("dev", "en", 1), ("dev", "de", 1)}
    spec = builtin_registry(out).get("pawsx")
    assert load_examples(spec, "train", "en")[0] == {"text_a": 'He said "hi".', "text_b": "He said hi.", "label": "1"}
    manifest = json.loads((out / "pawsx" / "manifest.json").read_text())
    assert manifest["task"] == "pawsx" and len(manifest["files"]) == 3
    reports, unrecognised = check(default_registry(), out)
    assert {(r.split, r.language, r.examples) for r in reports} == {("train", "en", 2), ("dev", "en", 1), ("dev", "de", 1)} and not unrecognised


def test_ccg_labels_come_from_the_data(tmp_path):
    source = tmp_path / "src"
    (source / "ccg").mkdir(parents=True)
    (source / "ccg" / "train.tsv").write_text("Pierre\tN/N\nVinken\tN\n\nHe\tNP\n", encoding="utf-8")
    (source / "ccg" / "dev.tsv").write_text("It\tNP\n", encoding="utf-8")
    prepare(default_registry(), ["ccg"], tmp_path / "data", source_dir=source)
    spec = builtin_registry(tmp_path / "data").get("ccg")
    assert spec.labels == ("N", "N/N", "NP")
    assert len(load_examples(spec, "train", "en")) == 2


def test_ccgbank_auto_format(tmp_path):
    from xstilts.readers.conll import read_ccg

    path = tmp_path / "wsj_0001.auto"
    path.write_text(
        "ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1\n"
        "(<T S[dcl] 0 2> (<L NP NNP NNP Pierre NP>) (<T S[dcl]\\NP 0 2> (<L (S[dcl]\\NP)/NP VBZ VBZ joins (S[dcl]\\NP_1)/NP_2>) (<L NP NN NN board NP>) ) )\n",
        encoding="utf-8",
    )
    assert read_ccg(path) == [{"tokens": ["Pierre", "joins", "board"], "tags": ["NP", "(S[dcl]\\NP)/NP", "NP"]}]


def test_hub_loading_failures_name_the_dataset(monkeypatch):
    """The real `datasets.load_dataset` call is kept; offline it fails with a message naming the copy."""
    import datasets

    from xstilts.errors import XstiltsError
    from xstilts.prepare import read_hub

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(XstiltsError, match=r"pawsx test-ja: could not load google/xtreme \(PAWS-X.ja, test\) from the hub: hub unreachable"):
        read_hub(default_registry().get("pawsx"), "test", "ja")
    assert read_hub(default_registry().get("ccg"), "train", "en") is None, "no hub copy: skipped, not an error"
