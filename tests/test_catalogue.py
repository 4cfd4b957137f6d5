"""The task catalogue: every task of the study by name, hub record mappings, and the prepare round trip."""

from __future__ import annotations

import json

import pytest

from xstilts.config import builtin_registry
from xstilts.data.examples import load_examples
from xstilts.data.prepare import check, map_hub_records, prepare
from xstilts.errors import DataError
from xstilts.tasks import default_registry, kind_of
from xstilts.tasks.catalogue import INTERMEDIATE_TASKS, XTREME_TASKS
from xstilts.tasks.registry import UNKNOWN_TAG


def test_every_task_of_the_study_is_registered_with_the_protocol_languages():
    registry = default_registry()
    assert set(XTREME_TASKS) | set(INTERMEDIATE_TASKS) <= set(registry.names())
    sizes = {name: len(registry.get(name).languages) for name in XTREME_TASKS}
    assert sizes == {
        "xnli": 15,
        "pawsx": 7,
        "udpos": 33,
        "panx": 40,
        "xquad": 12,
        "mlqa": 7,
        "tydiqa": 9,
        "bucc2018": 4,
        "tatoeba": 41,
    }
    assert (
        registry.get("xnli").training_defaults["epochs"] == 2
        and registry.get("udpos").training_defaults["epochs"] == 10
    )
    assert registry.get("mlqa").metric == "mlqa" and registry.get("squad_v2").allow_no_answer
    assert all(
        registry.get(name).sources.hub
        for name in (
            "xnli",
            "pawsx",
            "udpos",
            "panx",
            "xquad",
            "mlqa",
            "tydiqa",
            "mnli",
            "anli_plus",
            "qqp",
            "squad_v1",
            "squad_v2",
            "hellaswag",
            "cosmosqa",
            "commonsenseqa",
        )
    )
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
        (
            "xnli",
            "test",
            "de",
            [
                {"language": "de", "sentence1": "a", "sentence2": "b", "gold_label": "contradiction"},
                {"language": "fr", "sentence1": "x", "sentence2": "y", "gold_label": "neutral"},
            ],
            None,
            [{"text_a": "a", "text_b": "b", "label": "contradiction"}],
        ),
        (
            "xnli",
            "train",
            "en",
            [{"premise": "p", "hypothesis": "h", "label": 1}],
            None,
            [{"text_a": "p", "text_b": "h", "label": "neutral"}],
        ),
        (
            "pawsx",
            "test",
            "ja",
            [{"sentence1": "s", "sentence2": "t", "label": 1}],
            None,
            [{"text_a": "s", "text_b": "t", "label": "1"}],
        ),
        (
            "panx",
            "test",
            "af",
            [{"tokens": ["Jan", "Smuts"], "ner_tags": [1, 2]}],
            {"ner_tags": _Sequence(["O", "B-PER", "I-PER"])},
            [{"tokens": ["Jan", "Smuts"], "tags": ["B-PER", "I-PER"]}],
        ),
        (
            "udpos",
            "dev",
            "de",
            [{"tokens": ["zum"], "pos_tags": [1]}],
            {"pos_tags": _Sequence(["ADJ", "ADP"])},
            [{"tokens": ["zum"], "tags": ["ADP"]}],
        ),
        (
            "tydiqa",
            "test",
            "fi",
            [
                {"id": "finnish-1", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [1]}},
                {"id": "english-2", "question": "q", "context": "c", "answers": {"text": [], "answer_start": []}},
            ],
            None,
            [{"id": "finnish-1", "question": "q", "context": "abc", "answers": {"text": ["b"], "answer_start": [1]}}],
        ),
        (
            "hellaswag",
            "dev",
            "en",
            [
                {"ctx_a": "He", "ctx_b": "then", "endings": ["a", "b", "c", "d"], "label": "2"},
                {"ctx_a": "x", "ctx_b": "", "endings": ["a"] * 4, "label": ""},
            ],
            None,
            [{"context": "He", "choices": ["then a", "then b", "then c", "then d"], "label": 2}],
        ),
        (
            "commonsenseqa",
            "train",
            "en",
            [
                {
                    "id": "c1",
                    "question": "Q?",
                    "choices": {"label": list("ABCDE"), "text": list("vwxyz")},
                    "answerKey": "B",
                }
            ],
            None,
            [{"id": "c1", "context": "Q?", "choices": list("vwxyz"), "label": 1}],
        ),
        (
            "cosmosqa",
            "dev",
            "en",
            [
                {
                    "id": "k",
                    "context": "c",
                    "question": "q",
                    "answer0": "a",
                    "answer1": "b",
                    "answer2": "c",
                    "answer3": "d",
                    "label": 3,
                }
            ],
            None,
            [{"id": "k", "context": "c", "question": "q", "choices": ["a", "b", "c", "d"], "label": 3}],
        ),
        (
            "qqp",
            "dev",
            "en",
            [{"question1": "a", "question2": "b", "label": 0}],
            None,
            [{"text_a": "a", "text_b": "b", "label": "not_duplicate"}],
        ),
        (
            "xquad",
            "test",
            "el",
            [
                {
                    "id": "x1",
                    "title": "t",
                    "question": "q",
                    "context": "ab",
                    "answers": {"text": ["b"], "answer_start": [1]},
                }
            ],
            None,
            [{"id": "x1", "question": "q", "context": "ab", "answers": {"text": ["b"], "answer_start": [1]}}],
        ),
        (
            "mlqa",
            "test",
            "hi",
            [{"id": "m1", "question": "q", "context": "ab", "answers": {"text": ["a"], "answer_start": [0]}}],
            None,
            [{"id": "m1", "question": "q", "context": "ab", "answers": {"text": ["a"], "answer_start": [0]}}],
        ),
        (
            "squad_v2",
            "dev",
            "en",
            [{"id": "s1", "title": "t", "question": "q", "context": "ab", "answers": {"text": [], "answer_start": []}}],
            None,
            [{"id": "s1", "question": "q", "context": "ab", "answers": {"text": [], "answer_start": []}}],
        ),
        (
            "mnli",
            "dev",
            "en",
            [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}],
            None,
            [{"text_a": "p", "text_b": "h", "label": "contradiction"}],
        ),
    ]
    for task, split, language, rows, features, expected in cases:
        (hub_file,) = hub(task, split, language)
        mapped = map_hub_records(hub_file, rows, features)
        assert mapped == expected, task
        spec = registry.get(task)
        assert all(kind_of(spec).validate_example(r, spec) is None for r in mapped), task
    assert [h.dataset for h in hub("anli_plus", "train", "en")] == [
        "stanfordnlp/snli",
        "nyu-mll/glue",
        "facebook/anli",
        "facebook/anli",
        "facebook/anli",
    ]
    anli_dev = hub("anli_plus", "dev", "en")
    assert [h.split for h in anli_dev] == ["dev_r1", "dev_r2", "dev_r3"]
    assert map_hub_records(
        anli_dev[0], [{"uid": "u", "premise": "p", "hypothesis": "h", "label": 0, "reason": ""}]
    ) == [{"text_a": "p", "text_b": "h", "label": "entailment"}]
    (snli, *_) = hub("anli_plus", "train", "en")
    assert map_hub_records(snli, [{"premise": "p", "hypothesis": "h", "label": -1}]) == [], (
        "SNLI pairs without gold label are dropped"
    )
    assert (
        hub("udpos", "test", "fa")[0].config == "udpos.Persian" and hub("mlqa", "test", "zh")[0].config == "MLQA.zh.zh"
    )


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
    assert {(r.split, r.language, r.examples) for r in reports} == {
        ("train", "en", 2),
        ("dev", "en", 1),
        ("dev", "de", 1),
    }
    spec = builtin_registry(out).get("pawsx")
    assert load_examples(spec, "train", "en")[0] == {"text_a": 'He said "hi".', "text_b": "He said hi.", "label": "1"}
    manifest = json.loads((out / "pawsx" / "manifest.json").read_text())
    assert manifest["task"] == "pawsx" and len(manifest["files"]) == 3
    reports, unrecognised = check(default_registry(), out)
    assert {(r.split, r.language, r.examples) for r in reports} == {
        ("train", "en", 2),
        ("dev", "en", 1),
        ("dev", "de", 1),
    } and not unrecognised


def _ccg_source(tmp_path):
    source = tmp_path / "src"
    (source / "ccg").mkdir(parents=True)
    (source / "ccg" / "train.tsv").write_text("Pierre\tN/N\nVinken\tN\n\nHe\tNP\n", encoding="utf-8")
    (source / "ccg" / "dev.tsv").write_text("It\tNP\nworks\tS[dcl]\\NP\n.\t.\n", encoding="utf-8")
    return source


def test_ccg_inventory_is_the_training_tags_plus_one_unknown_class(tmp_path):
    """Dev tags never enter the label set: the two dev-only tags become <unk>, counted per file."""
    reports = prepare(default_registry(), ["ccg"], tmp_path / "data", source_dir=_ccg_source(tmp_path))
    spec = builtin_registry(tmp_path / "data").get("ccg")
    assert spec.labels == ("N", "N/N", "NP", UNKNOWN_TAG)
    assert len(load_examples(spec, "train", "en")) == 2
    assert load_examples(spec, "dev", "en") == [
        {"tokens": ["It", "works", "."], "tags": ["NP", UNKNOWN_TAG, UNKNOWN_TAG]}
    ]
    assert {r.split: r.unknown_tags for r in reports} == {"train": 0, "dev": 2}
    manifest = json.loads((tmp_path / "data" / "ccg" / "manifest.json").read_text())
    assert [f["unknown_tags"] for f in manifest["files"]] == [0, 2]


@pytest.mark.parametrize(
    "name, text",
    [
        ("tags.txt", "NP\nS[dcl]\\NP\nN\n"),
        ("tags_to_id.json", json.dumps({"N": 2, "NP": 0, "S[dcl]\\NP": 1})),  # jiant's file: ordered by id
    ],
)
def test_ccg_fixed_inventory_from_a_file(tmp_path, name, text):
    inventory = tmp_path / name
    inventory.write_text(text, encoding="utf-8")
    reports = prepare(
        default_registry(), ["ccg"], tmp_path / "data", source_dir=_ccg_source(tmp_path), tag_inventory=inventory
    )
    assert builtin_registry(tmp_path / "data").get("ccg").labels == ("NP", "S[dcl]\\NP", "N", UNKNOWN_TAG)
    assert {r.split: r.unknown_tags for r in reports} == {"train": 1, "dev": 1}  # N/N and "."


def test_ccg_inventory_file_errors_name_the_file(tmp_path):
    source = _ccg_source(tmp_path)
    empty = tmp_path / "tags.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="tags.txt.*one tag per line"):
        prepare(default_registry(), ["ccg"], tmp_path / "data", source_dir=source, tag_inventory=empty)
    listed = tmp_path / "tags.json"
    listed.write_text('["NP"]', encoding="utf-8")
    with pytest.raises(DataError, match="tags.json.*JSON object"):
        prepare(default_registry(), ["ccg"], tmp_path / "data", source_dir=source, tag_inventory=listed)
    assert not (tmp_path / "data").exists()


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

    from xstilts.data.prepare import read_hub
    from xstilts.errors import XstiltsError

    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        XstiltsError,
        match=r"pawsx test-ja: could not load google/xtreme \(PAWS-X.ja, test\) from the hub: hub unreachable",
    ):
        read_hub(default_registry().get("pawsx"), "test", "ja")
    assert read_hub(default_registry().get("ccg"), "train", "en") is None, "no hub copy: skipped, not an error"


def test_tasks_from_an_installed_entry_point(monkeypatch, tmp_path):
    """A plug-in package registers its own task without editing the library."""
    import importlib.metadata
    import sys

    from xstilts.tasks import load_plugin_tasks
    from xstilts.tasks import registry as registry_module

    monkeypatch.setattr(
        registry_module, "_DEFAULT", registry_module._DEFAULT.copy()
    )  # leave the real registry untouched

    module = tmp_path / "my_plugin_tasks.py"
    module.write_text(
        "from xstilts.tasks.registry import LocalFiles, TaskSpec\n"
        "def tasks():\n"
        "    return [TaskSpec(name='my_sentiment', kind='classification', languages=('en', 'de'), labels=('pos', 'neg'), data=LocalFiles('x'))]\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(name="mine", value="my_plugin_tasks:tasks", group="xstilts.tasks")
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group=None: [entry] if group == "xstilts.tasks" else []
    )
    assert load_plugin_tasks() == ["my_sentiment"]
    assert default_registry().get("my_sentiment").labels == ("pos", "neg")
    sys.modules.pop("my_plugin_tasks", None)


def test_intermediate_and_release_formats_prepare(tmp_path):
    """Each format without a real sample here, written in its upstream layout, prepares correctly."""
    d = tmp_path / "download"

    def write(relative: str, text: str) -> None:
        path = d / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def nli(*rows):
        return "".join(json.dumps({"sentence1": a, "sentence2": b, "gold_label": g}) + "\n" for a, b, g in rows)

    write("multinli_1.0/multinli_1.0_train.jsonl", nli(("p1", "h1", "neutral"), ("p2", "h2", "-")))
    write("multinli_1.0/multinli_1.0_dev_matched.jsonl", nli(("p3", "h3", "entailment")))
    write("snli_1.0/snli_1.0_train.jsonl", nli(("s1", "t1", "contradiction")))
    for r in "123":
        write(f"anli_v1.0/R{r}/train.jsonl", json.dumps({"context": f"c{r}", "hypothesis": "h", "label": "e"}) + "\n")
        write(f"anli_v1.0/R{r}/dev.jsonl", json.dumps({"context": f"d{r}", "hypothesis": "h", "label": "c"}) + "\n")
    write("glue/QQP/train.tsv", 'id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tHow "so"?\tWhy?\t1\n')
    write("glue/QQP/dev.tsv", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n2\t3\t4\tA?\tB?\t0\n")

    def squad(qas):
        return json.dumps(
            {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": qas}]}]}
        )

    answerable = {"id": "q1", "question": "What?", "answers": [{"text": "Paris", "answer_start": 0}]}
    impossible = {
        "id": "q2",
        "question": "Who?",
        "answers": [],
        "plausible_answers": [{"text": "big", "answer_start": 9}],
        "is_impossible": True,
    }
    write("squad/train-v1.1.json", squad([answerable]))
    write("squad/dev-v1.1.json", squad([answerable]))
    write("squad/train-v2.0.json", squad([answerable, impossible]))
    write("squad/dev-v2.0.json", squad([impossible]))
    swag = {"ctx_a": "A man sits.", "ctx_b": "He", "endings": ["runs.", "eats.", "sleeps.", "sings."], "label": 1}
    write("hellaswag/hellaswag_train.jsonl", json.dumps(swag) + "\n")
    write("hellaswag/hellaswag_val.jsonl", json.dumps(swag) + "\n")
    csqa = {
        "id": "x",
        "question": {
            "stem": "Where?",
            "choices": [{"label": letter, "text": t} for letter, t in zip("ABCDE", "vwxyz")],
        },
        "answerKey": "C",
    }
    write("csqa/train_rand_split.jsonl", json.dumps(csqa) + "\n")
    write("csqa/dev_rand_split.jsonl", json.dumps(csqa) + "\n")
    write(
        "cosmosqa/train.csv",
        'id,context,question,answer0,answer1,answer2,answer3,label\nk,"A ""quoted"", context",Why?,a,b,c,d,2\n',
    )
    write("cosmosqa/valid.csv", "id,context,question,answer0,answer1,answer2,answer3,label\nk,c,q,a,b,c,d,0\n")
    header = "language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\n"
    write(
        "XNLI-1.0/xnli.dev.tsv",
        header
        + 'de\tcontradictory\t_\t_\t_\t_\tEr sagt "ja".\tEr schweigt.\t1\t1\nen\tneutral\t_\t_\t_\t_\tA\tB\t2\t2\n',
    )
    write("XNLI-1.0/xnli.test.tsv", header + "de\tentailment\t_\t_\t_\t_\tC\tD\t3\t3\n")
    write("XNLI-MT-1.0/multinli/multinli.train.en.tsv", "premise\thypo\tlabel\nP\tH\tcontradictory\n")
    paws = 'id\tsentence1\tsentence2\tlabel\n1\tSie sagt "ja".\tSie sagt ja.\t1\n'
    write("x-final/en/train.tsv", paws)
    write("x-final/de/dev_2k.tsv", paws)
    write("x-final/de/test_2k.tsv", paws)

    tasks = [
        "mnli",
        "anli_plus",
        "qqp",
        "squad_v1",
        "squad_v2",
        "hellaswag",
        "commonsenseqa",
        "cosmosqa",
        "xnli",
        "pawsx",
    ]
    out = tmp_path / "data"
    reports = prepare(default_registry(), tasks, out, source_dir=d)
    counts = {(r.task, r.split, r.language): r.examples for r in reports}
    assert counts[("mnli", "train", "en")] == 1, "MNLI pairs without a gold label are dropped"
    assert counts[("anli_plus", "train", "en")] == 1 + 1 + 3 and counts[("anli_plus", "dev", "en")] == 3
    registry = builtin_registry(out)
    first = lambda task, split="train", lang="en": load_examples(registry.get(task), split, lang)  # noqa: E731
    assert first("qqp")[0] == {"text_a": 'How "so"?', "text_b": "Why?", "label": "duplicate"}, (
        "GLUE TSVs keep quotes literally"
    )
    assert [e["answers"]["text"] for e in first("squad_v2")] == [["Paris"], []], "plausible answers are not gold"
    assert first("hellaswag")[0] == {
        "context": "A man sits.",
        "choices": ["He runs.", "He eats.", "He sleeps.", "He sings."],
        "label": 1,
    }
    assert first("commonsenseqa")[0]["label"] == 2 and first("cosmosqa")[0]["context"] == 'A "quoted", context'
    assert first("xnli", "dev", "de") == [
        {"text_a": 'Er sagt "ja".', "text_b": "Er schweigt.", "label": "contradiction"}
    ]
    assert counts[("xnli", "test", "de")] == 1 and counts[("xnli", "train", "en")] == 1
    assert first("pawsx", "test", "de") == [{"text_a": 'Sie sagt "ja".', "text_b": "Sie sagt ja.", "label": "1"}]
