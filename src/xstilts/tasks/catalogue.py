"""The tasks of the original X-STILTs study (docs/protocol.md sections 2 and 3), as declarative entries.

Each entry names its kind, languages, labels, metric, training defaults and two data sources:
upstream release files (several known layouts, tried in order) and the public hub copy. Hub ids:
google/xtreme (XNLI, PAWS-X, UD-POS, PAN-X, XQuAD, MLQA, TyDiQA, BUCC, Tatoeba), nyu-mll/glue
(MNLI, QQP), stanfordnlp/snli, facebook/anli, rajpurkar/squad, rajpurkar/squad_v2, Rowan/hellaswag,
allenai/cosmos_qa, tau/commonsense_qa. CCGbank has no public copy (LDC licence): local files only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xstilts.errors import DataError
from xstilts.languages import XTREME_LANGUAGE_NAMES
from xstilts.readers import conll, jsonl, retrieval, squad, tabular
from xstilts.tasks.registry import LocalFiles, TaskSpec, register_task
from xstilts.tasks.sources import HubFile, LocalFile, Sources

NLI = ("entailment", "neutral", "contradiction")
UPOS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
    "O",
)
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

XNLI_LANGUAGES = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
PAWSX_LANGUAGES = tuple("de en es fr ja ko zh".split())
UDPOS_LANGUAGES = tuple(
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh".split()
)
PANX_LANGUAGES = tuple(
    "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my zh kk tr et fi hu".split()
)
XQUAD_LANGUAGES = tuple("ar de el en es hi ru th tr vi zh ro".split())  # ro came after XTREME; not in its score
MLQA_LANGUAGES = tuple("ar de en es hi vi zh".split())
TYDIQA_LANGUAGES = tuple("en ar bn fi id ko ru sw te".split())
BUCC_LANGUAGES = tuple("de fr ru zh".split())
TATOEBA_ISO3 = {
    "af": "afr",
    "ar": "ara",
    "bg": "bul",
    "bn": "ben",
    "de": "deu",
    "el": "ell",
    "es": "spa",
    "et": "est",
    "eu": "eus",
    "fa": "pes",
    "fi": "fin",
    "fr": "fra",
    "he": "heb",
    "hi": "hin",
    "hu": "hun",
    "id": "ind",
    "it": "ita",
    "ja": "jpn",
    "jv": "jav",
    "ka": "kat",
    "kk": "kaz",
    "ko": "kor",
    "ml": "mal",
    "mr": "mar",
    "nl": "nld",
    "pt": "por",
    "ru": "rus",
    "sw": "swh",
    "ta": "tam",
    "te": "tel",
    "th": "tha",
    "tl": "tgl",
    "tr": "tur",
    "ur": "urd",
    "vi": "vie",
    "zh": "cmn",
    # XTREME-R's five additions (not part of the XTREME score)
    "az": "aze",
    "lt": "lit",
    "pl": "pol",
    "ro": "ron",
    "uk": "ukr",
}
TYDIQA_NAMES = {
    "ar": "arabic",
    "bn": "bengali",
    "en": "english",
    "fi": "finnish",
    "id": "indonesian",
    "ko": "korean",
    "ru": "russian",
    "sw": "swahili",
    "te": "telugu",
}

# --- readers adapted to (path, language) ----------------------------------------------------------


def _all(reader):  # noqa: ANN001, ANN202 - a file that holds one language
    return lambda path, language: reader(path)


def _xnli_release(path: Path, language: str) -> list[dict[str, Any]]:
    return tabular.read_xnli_release(path).get(language, [])


def _xtreme_labelled_pairs(path: Path, language: str) -> list[dict[str, Any]]:
    first = next(tabular.read_rows(path), (1, []))[1]
    if len(first) == 2:
        raise DataError(
            path, "this XTREME file has its labels removed (test sets); use the upstream release for evaluation"
        )
    return tabular.read_xtreme_pairs(path)


def _conllu(path: Path, language: str) -> list[dict[str, Any]]:
    return conll.read_conllu_upos(path, language)


def _panx_raw(path: Path, language: str) -> list[dict[str, Any]]:
    return conll.read_word_tag(path, strip_language_prefix=True)


def _xnli_mt_train(path: Path, language: str) -> list[dict[str, Any]]:
    """XNLI-MT's multinli.train.en.tsv: premise, hypo, label with a header, unquoted."""
    rows = tabular.read_header_rows(path, ["premise", "hypo", "label"], quoting=3)
    return [
        {
            "text_a": r["premise"],
            "text_b": r["hypo"],
            "label": "contradiction" if r["label"] == "contradictory" else r["label"],
        }
        for _, r in rows
    ]


def _tatoeba_pair(path: Path, language: str) -> list[dict[str, Any]]:
    return retrieval.read_tatoeba_pair(path, path.with_suffix(".eng"))


def _bucc_side(path: Path, language: str) -> list[dict[str, Any]]:
    """The non-English side's sentences; the English side and gold pairs must sit beside it."""
    english, gold = path.with_suffix(".en"), path.with_suffix(".gold")
    for companion in (english, gold) if "test" not in path.name else (english,):
        if not companion.is_file():
            raise DataError(path, f"the BUCC files come in sets: {companion.name} is missing beside it")
    rows = retrieval.read_bucc_sentences(path)
    english_ids = {i for i, _ in retrieval.read_bucc_sentences(english)}
    if gold.is_file():
        retrieval.warn_unknown_gold_ids(gold, retrieval.read_bucc_gold(gold), {i for i, _ in rows}, english_ids)
    return [{"id": i, "text": t} for i, t in rows]


# --- hub record mappers ----------------------------------------------------------------------------


def _class_name(features: Any, column: str, value: Any) -> Any:
    """A ClassLabel id as its name (hub datasets store labels as ints)."""
    feature = features[column] if features is not None else None
    names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
    return names[value] if names is not None and isinstance(value, int) else value


def _hub_nli(premise: str, hypothesis: str, label: str) -> Any:
    def mapper(record: Mapping[str, Any], features: Any) -> dict[str, Any] | None:
        value = record[label]
        if isinstance(value, int):
            if value < 0:
                return None  # SNLI pairs without a gold label
            value = NLI[value]
        value = "contradiction" if value == "contradictory" else value
        return {"text_a": record[premise], "text_b": record[hypothesis], "label": value}

    return mapper


def _hub_pawsx(record: Mapping[str, Any], features: Any) -> dict[str, Any]:
    return {"text_a": record["sentence1"], "text_b": record["sentence2"], "label": str(record["label"])}


def _hub_qqp(record: Mapping[str, Any], features: Any) -> dict[str, Any] | None:
    if record["label"] < 0:
        return None
    return {"text_a": record["question1"], "text_b": record["question2"], "label": tabular.QQP_LABELS[record["label"]]}


def _hub_tags(column: str) -> Any:
    def mapper(record: Mapping[str, Any], features: Any) -> dict[str, Any]:
        return {"tokens": list(record["tokens"]), "tags": [_class_name(features, column, t) for t in record[column]]}

    return mapper


def _hub_squad(record: Mapping[str, Any], features: Any) -> dict[str, Any]:
    answers = record["answers"]
    return {
        "id": str(record["id"]),
        "question": record["question"],
        "context": record["context"],
        "answers": {"text": list(answers["text"]), "answer_start": [int(s) for s in answers["answer_start"]]},
    }


def _hub_hellaswag(record: Mapping[str, Any], features: Any) -> dict[str, Any] | None:
    if record["label"] in ("", None):
        return None
    prefix = record.get("ctx_b", "")
    return {
        "context": record["ctx_a"],
        "choices": [f"{prefix} {e}".strip() for e in record["endings"]],
        "label": int(record["label"]),
    }


def _hub_cosmosqa(record: Mapping[str, Any], features: Any) -> dict[str, Any] | None:
    if record["label"] < 0:
        return None
    return {
        "id": record["id"],
        "context": record["context"],
        "question": record["question"],
        "choices": [record[f"answer{i}"] for i in range(4)],
        "label": int(record["label"]),
    }


def _hub_commonsenseqa(record: Mapping[str, Any], features: Any) -> dict[str, Any] | None:
    if not record.get("answerKey"):
        return None
    letters = list(record["choices"]["label"])
    return {
        "id": record["id"],
        "context": record["question"],
        "choices": list(record["choices"]["text"]),
        "label": letters.index(record["answerKey"]),
    }


def _xtreme(config: str, split: str, mapper: Any, keep: Any = None) -> HubFile:
    return HubFile("google/xtreme", config, split, mapper, keep)


def _same(hub: HubFile) -> Any:
    return lambda language: hub


# --- the catalogue ---------------------------------------------------------------------------------

SQUAD_V1_TRAIN = (LocalFile(("**/train-v1.1.json",), _all(squad.read_squad_json), "SQuAD v1.1 train"),)
SQUAD_V1_DEV = (LocalFile(("**/dev-v1.1.json",), _all(squad.read_squad_json), "SQuAD v1.1 dev", languages=("en",)),)
SQUAD_V1_HUB = {
    "train": _same(HubFile("rajpurkar/squad", None, "train", _hub_squad)),
    "dev": _same(HubFile("rajpurkar/squad", None, "validation", _hub_squad)),
}
MNLI_TRAIN = (
    LocalFile(("**/multinli_1.0_train.jsonl",), _all(jsonl.read_nli_jsonl), "MultiNLI 1.0 jsonl"),
    LocalFile(("**/MNLI/train.tsv",), _all(tabular.read_glue_nli), "GLUE MNLI TSV"),
)
MNLI_DEV = (
    LocalFile(("**/multinli_1.0_dev_matched.jsonl",), _all(jsonl.read_nli_jsonl), "MultiNLI 1.0 jsonl"),
    LocalFile(("**/MNLI/dev_matched.tsv",), _all(tabular.read_glue_nli), "GLUE MNLI TSV"),
)
GLUE_MNLI_HUB = {
    "train": _same(HubFile("nyu-mll/glue", "mnli", "train", _hub_nli("premise", "hypothesis", "label"))),
    "dev": _same(HubFile("nyu-mll/glue", "mnli", "validation_matched", _hub_nli("premise", "hypothesis", "label"))),
}
ANLI_ROUNDS = ("1", "2", "3")


def _anli_hub(split: str) -> list[HubFile]:
    return [
        HubFile("facebook/anli", None, f"{split}_r{r}", _hub_nli("premise", "hypothesis", "label")) for r in ANLI_ROUNDS
    ]


CATALOGUE: tuple[TaskSpec, ...] = (
    # ---- XTREME targets ----
    TaskSpec(
        name="xnli",
        parallel="line",
        kind="classification",
        languages=XNLI_LANGUAGES,
        labels=NLI,
        data=LocalFiles("data/xnli"),
        training_defaults={"epochs": 2},
        dev_languages=XNLI_LANGUAGES,
        description="XNLI: trained on MNLI, evaluated on XNLI test (5010 per language)",
        sources=Sources(
            local={
                "train": (
                    LocalFile(("xnli/train-en.tsv",), _all(tabular.read_xtreme_pairs), "XTREME TSV"),
                    *MNLI_TRAIN,
                    LocalFile(("**/multinli.train.en.tsv",), _xnli_mt_train, "XNLI-MT train"),
                ),
                "dev": (
                    LocalFile(("**/xnli.dev.tsv",), _xnli_release, "XNLI 1.0 release"),
                    LocalFile(("xnli/dev-{language}.tsv",), _xtreme_labelled_pairs, "XTREME TSV"),
                ),
                "test": (
                    LocalFile(("**/xnli.test.tsv",), _xnli_release, "XNLI 1.0 release"),
                    LocalFile(("xnli/test-{language}.tsv",), _xtreme_labelled_pairs, "XTREME TSV"),
                ),
            },
            hub={
                "train": GLUE_MNLI_HUB["train"],
                "dev": lambda lang: _xtreme(
                    "XNLI",
                    "validation",
                    _hub_nli("sentence1", "sentence2", "gold_label"),
                    lambda r, wanted=lang: r["language"] == wanted,
                ),
                "test": lambda lang: _xtreme(
                    "XNLI",
                    "test",
                    _hub_nli("sentence1", "sentence2", "gold_label"),
                    lambda r, wanted=lang: r["language"] == wanted,
                ),
            },
        ),
    ),
    TaskSpec(
        name="pawsx",
        parallel="line",
        kind="classification",
        languages=PAWSX_LANGUAGES,
        labels=("0", "1"),
        data=LocalFiles("data/pawsx"),
        training_defaults={"epochs": 5},
        dev_languages=PAWSX_LANGUAGES,
        description="PAWS-X paraphrase identification",
        sources=Sources(
            local={
                "train": (
                    LocalFile(("pawsx/train-en.tsv",), _all(tabular.read_xtreme_pairs), "XTREME TSV"),
                    LocalFile(("**/en/train.tsv",), _all(tabular.read_pawsx_release), "PAWS-X release"),
                ),
                "dev": (
                    LocalFile(("pawsx/dev-{language}.tsv",), _xtreme_labelled_pairs, "XTREME TSV"),
                    LocalFile(("**/{language}/dev_2k.tsv",), _all(tabular.read_pawsx_release), "PAWS-X release"),
                ),
                "test": (
                    LocalFile(("**/{language}/test_2k.tsv",), _all(tabular.read_pawsx_release), "PAWS-X release"),
                    LocalFile(("pawsx/test-{language}.tsv",), _xtreme_labelled_pairs, "XTREME TSV"),
                ),
            },
            hub={
                s: (
                    lambda lang, s=s: _xtreme(
                        f"PAWS-X.{lang}", {"train": "train", "dev": "validation", "test": "test"}[s], _hub_pawsx
                    )
                )
                for s in ("train", "dev", "test")
            },
        ),
    ),
    TaskSpec(
        name="udpos",
        kind="tagging",
        languages=UDPOS_LANGUAGES,
        labels=UPOS,
        data=LocalFiles("data/udpos"),
        training_defaults={"epochs": 10},
        dev_languages=UDPOS_LANGUAGES,
        description="UD v2.5 part-of-speech tagging",
        sources=Sources(
            local={
                s: (
                    LocalFile((f"udpos/{s}-{{language}}.tsv",), _all(conll.read_word_tag), "XTREME word<TAB>tag"),
                    LocalFile((f"**/{{language}}_*-ud-{s}.conllu",), _conllu, "UD CoNLL-U (all treebanks merged)"),
                )
                for s in ("train", "dev", "test")
            },
            hub={
                s: (
                    lambda lang, s=s: _xtreme(
                        f"udpos.{XTREME_LANGUAGE_NAMES[lang]}",
                        {"train": "train", "dev": "validation", "test": "test"}[s],
                        _hub_tags("pos_tags"),
                    )
                )
                for s in ("train", "dev", "test")
            },
        ),
    ),
    TaskSpec(
        name="panx",
        kind="tagging",
        languages=PANX_LANGUAGES,
        labels=PANX_TAGS,
        data=LocalFiles("data/panx"),
        training_defaults={"epochs": 10},
        dev_languages=PANX_LANGUAGES,
        description="WikiANN / PAN-X named entities (Rahimi et al. split)",
        sources=Sources(
            local={
                s: (
                    LocalFile((f"panx/{s}-{{language}}.tsv",), _all(conll.read_word_tag), "XTREME word<TAB>tag"),
                    LocalFile((f"**/{{language}}/{s}",), _panx_raw, "raw PAN-X lang:token<TAB>tag"),
                    LocalFile((f"**/{{language}}-{s}",), _panx_raw, "raw PAN-X lang:token<TAB>tag"),
                )
                for s in ("train", "dev", "test")
            },
            hub={
                s: (
                    lambda lang, s=s: _xtreme(
                        f"PAN-X.{lang}",
                        {"train": "train", "dev": "validation", "test": "test"}[s],
                        _hub_tags("ner_tags"),
                    )
                )
                for s in ("train", "dev", "test")
            },
        ),
    ),
    TaskSpec(
        name="xquad",
        parallel="id",
        kind="qa",
        languages=XQUAD_LANGUAGES,
        metric="squad",
        data=LocalFiles("data/xquad"),
        training_defaults={"epochs": 2},
        description="XQuAD: trained on SQuAD v1.1, 1190 questions per language",
        sources=Sources(
            local={
                "train": SQUAD_V1_TRAIN,
                "dev": SQUAD_V1_DEV,
                "test": (LocalFile(("**/xquad.{language}.json",), _all(squad.read_squad_json), "XQuAD release"),),
            },
            hub={**SQUAD_V1_HUB, "test": lambda lang: _xtreme(f"XQuAD.{lang}", "validation", _hub_squad)},
        ),
    ),
    TaskSpec(
        name="mlqa",
        parallel="id",
        kind="qa",
        languages=MLQA_LANGUAGES,
        metric="mlqa",
        data=LocalFiles("data/mlqa"),
        dev_languages=MLQA_LANGUAGES,
        training_defaults={"epochs": 2},
        description="MLQA: trained on SQuAD v1.1, same-language context and question",
        sources=Sources(
            local={
                "train": SQUAD_V1_TRAIN,
                "dev": (
                    LocalFile(
                        ("**/dev-context-{language}-question-{language}.json",),
                        _all(squad.read_squad_json),
                        "MLQA v1 release",
                    ),
                    *SQUAD_V1_DEV,
                ),
                "test": (
                    LocalFile(
                        ("**/test-context-{language}-question-{language}.json",),
                        _all(squad.read_squad_json),
                        "MLQA v1 release",
                    ),
                ),
            },
            hub={
                **SQUAD_V1_HUB,
                "dev": lambda lang: _xtreme(f"MLQA.{lang}.{lang}", "validation", _hub_squad),
                "test": lambda lang: _xtreme(f"MLQA.{lang}.{lang}", "test", _hub_squad),
            },
        ),
    ),
    TaskSpec(
        name="tydiqa",
        kind="qa",
        languages=TYDIQA_LANGUAGES,
        metric="squad",
        data=LocalFiles("data/tydiqa"),
        training_defaults={"epochs": 2},
        dev_languages=TYDIQA_LANGUAGES,
        dev_is_test=True,
        description="TyDiQA-GoldP: English GoldP train; XTREME's evaluation set is the GoldP dev set, so dev and test "
        "are the same files (choices for it are made on the other targets' dev scores)",
        sources=Sources(
            local={
                "train": (
                    LocalFile(("**/tydiqa.goldp.en.train.json",), _all(squad.read_squad_json), "XTREME TyDiQA-GoldP"),
                ),
                "dev": (
                    LocalFile(
                        ("**/tydiqa.goldp.{language}.dev.json",), _all(squad.read_squad_json), "XTREME TyDiQA-GoldP"
                    ),
                ),
                "test": (
                    LocalFile(
                        ("**/tydiqa.goldp.{language}.dev.json",), _all(squad.read_squad_json), "XTREME TyDiQA-GoldP"
                    ),
                ),
            },
            hub={
                "train": lambda lang: HubFile(
                    "google-research-datasets/tydiqa",
                    "secondary_task",
                    "train",
                    _hub_squad,
                    lambda r: r["id"].startswith("english-"),
                ),
                "dev": lambda lang: HubFile(
                    "google-research-datasets/tydiqa",
                    "secondary_task",
                    "validation",
                    _hub_squad,
                    lambda r, n=TYDIQA_NAMES[lang]: r["id"].startswith(n + "-"),
                ),
                "test": lambda lang: HubFile(
                    "google-research-datasets/tydiqa",
                    "secondary_task",
                    "validation",
                    _hub_squad,
                    lambda r, n=TYDIQA_NAMES[lang]: r["id"].startswith(n + "-"),
                ),
            },
        ),
    ),
    TaskSpec(
        name="bucc2018",
        kind="retrieval",
        languages=BUCC_LANGUAGES,
        metric="bucc_f1",
        data=LocalFiles("data/bucc2018"),
        dev_languages=BUCC_LANGUAGES,
        description="BUCC 2018 bitext mining against English; the sample set is dev, the training set is XTREME's test",
        sources=Sources(
            local={
                s: (
                    LocalFile(
                        (f"**/{{language}}-en.{s}.{{language}}",),
                        _bucc_side,
                        "BUCC id<TAB>sentence",
                        companions=(".en", ".gold"),
                    ),
                )
                for s in ("dev", "test")
            }
        ),
    ),
    TaskSpec(
        name="tatoeba",
        kind="retrieval",
        languages=tuple(TATOEBA_ISO3),
        metric="tatoeba_accuracy",
        data=LocalFiles("data/tatoeba"),
        has_dev=False,
        description="Tatoeba (LASER v1) sentence retrieval against English",
        sources=Sources(
            local={
                "test": (
                    LocalFile(
                        ("**/tatoeba.{code}-eng.{code}",), _tatoeba_pair, "LASER Tatoeba pair", TATOEBA_ISO3, (".eng",)
                    ),
                )
            }
        ),
    ),
    # ---- English intermediate tasks ----
    TaskSpec(
        name="mnli",
        kind="classification",
        languages=("en",),
        labels=NLI,
        data=LocalFiles("data/mnli"),
        description="MultiNLI",
        sources=Sources(local={"train": MNLI_TRAIN, "dev": MNLI_DEV}, hub=GLUE_MNLI_HUB),
    ),
    TaskSpec(
        name="anli_plus",
        kind="classification",
        languages=("en",),
        labels=NLI,
        data=LocalFiles("data/anli_plus"),
        description="ANLI+: SNLI + MNLI + ANLI rounds 1-3 concatenated (proportional sampling) with one NLI head; ANLI dev rounds 1-3 select",
        sources=Sources(
            local={
                "train": (
                    LocalFile(
                        ("**/snli_1.0_train.jsonl", "**/multinli_1.0_train.jsonl", "**/R[123]/train.jsonl"),
                        _all(jsonl.read_nli_jsonl),
                        "SNLI 1.0 + MultiNLI 1.0 + ANLI v1.0 jsonl",
                    ),
                ),
                "dev": (LocalFile(("**/R[123]/dev.jsonl",), _all(jsonl.read_nli_jsonl), "ANLI v1.0"),),
            },
            hub={
                "train": lambda lang: [
                    HubFile("stanfordnlp/snli", None, "train", _hub_nli("premise", "hypothesis", "label")),
                    GLUE_MNLI_HUB["train"](lang),
                    *_anli_hub("train"),
                ],
                "dev": lambda lang: _anli_hub("dev"),
            },
        ),
    ),
    TaskSpec(
        name="qqp",
        kind="classification",
        languages=("en",),
        labels=tabular.QQP_LABELS,
        data=LocalFiles("data/qqp"),
        description="Quora Question Pairs",
        sources=Sources(
            local={
                "train": (LocalFile(("**/QQP/train.tsv",), _all(tabular.read_qqp), "GLUE QQP"),),
                "dev": (LocalFile(("**/QQP/dev.tsv",), _all(tabular.read_qqp), "GLUE QQP"),),
            },
            hub={
                "train": _same(HubFile("nyu-mll/glue", "qqp", "train", _hub_qqp)),
                "dev": _same(HubFile("nyu-mll/glue", "qqp", "validation", _hub_qqp)),
            },
        ),
    ),
    TaskSpec(
        name="squad_v1",
        kind="qa",
        languages=("en",),
        data=LocalFiles("data/squad_v1"),
        description="SQuAD v1.1",
        sources=Sources(local={"train": SQUAD_V1_TRAIN, "dev": SQUAD_V1_DEV}, hub=SQUAD_V1_HUB),
    ),
    TaskSpec(
        name="squad_v2",
        kind="qa",
        languages=("en",),
        allow_no_answer=True,
        data=LocalFiles("data/squad_v2"),
        description="SQuAD v2.0 with unanswerable questions",
        sources=Sources(
            local={
                "train": (LocalFile(("**/train-v2.0.json",), _all(squad.read_squad_json), "SQuAD v2.0"),),
                "dev": (LocalFile(("**/dev-v2.0.json",), _all(squad.read_squad_json), "SQuAD v2.0"),),
            },
            hub={
                "train": _same(HubFile("rajpurkar/squad_v2", None, "train", _hub_squad)),
                "dev": _same(HubFile("rajpurkar/squad_v2", None, "validation", _hub_squad)),
            },
        ),
    ),
    TaskSpec(
        name="hellaswag",
        kind="multiple_choice",
        languages=("en",),
        num_choices=4,
        data=LocalFiles("data/hellaswag"),
        description="HellaSwag, 4 endings",
        sources=Sources(
            local={
                "train": (
                    LocalFile(("**/hellaswag_train.jsonl",), _all(jsonl.read_hellaswag_jsonl), "HellaSwag jsonl"),
                ),
                "dev": (LocalFile(("**/hellaswag_val.jsonl",), _all(jsonl.read_hellaswag_jsonl), "HellaSwag jsonl"),),
            },
            hub={
                "train": _same(HubFile("Rowan/hellaswag", None, "train", _hub_hellaswag)),
                "dev": _same(HubFile("Rowan/hellaswag", None, "validation", _hub_hellaswag)),
            },
        ),
    ),
    TaskSpec(
        name="cosmosqa",
        kind="multiple_choice",
        languages=("en",),
        num_choices=4,
        data=LocalFiles("data/cosmosqa"),
        description="Cosmos QA, 4 answers (context + question)",
        sources=Sources(
            local={
                "train": (LocalFile(("**/cosmosqa/train.csv",), _all(tabular.read_cosmosqa_csv), "Cosmos QA CSV"),),
                "dev": (LocalFile(("**/cosmosqa/valid.csv",), _all(tabular.read_cosmosqa_csv), "Cosmos QA CSV"),),
            },
            hub={
                "train": _same(HubFile("allenai/cosmos_qa", None, "train", _hub_cosmosqa)),
                "dev": _same(HubFile("allenai/cosmos_qa", None, "validation", _hub_cosmosqa)),
            },
        ),
    ),
    TaskSpec(
        name="commonsenseqa",
        kind="multiple_choice",
        languages=("en",),
        num_choices=5,
        data=LocalFiles("data/commonsenseqa"),
        description="CommonsenseQA, 5 answers",
        sources=Sources(
            local={
                "train": (
                    LocalFile(
                        ("**/train_rand_split.jsonl",), _all(jsonl.read_commonsenseqa_jsonl), "CommonsenseQA jsonl"
                    ),
                ),
                "dev": (
                    LocalFile(
                        ("**/dev_rand_split.jsonl",), _all(jsonl.read_commonsenseqa_jsonl), "CommonsenseQA jsonl"
                    ),
                ),
            },
            hub={
                "train": _same(HubFile("tau/commonsense_qa", None, "train", _hub_commonsenseqa)),
                "dev": _same(HubFile("tau/commonsense_qa", None, "validation", _hub_commonsenseqa)),
            },
        ),
    ),
    TaskSpec(
        name="ccg",
        kind="tagging",
        languages=("en",),
        open_label_set=True,
        data=LocalFiles("data/ccg"),
        description="CCGbank supertagging (LDC licence: local files only; sections 02-21 train, 00 dev)",
        sources=Sources(
            local={
                "train": (
                    LocalFile(("ccg/train.tsv",), _all(conll.read_ccg), "word<TAB>supertag"),
                    LocalFile(
                        ("**/AUTO/0[2-9]/*.auto", "**/AUTO/1[0-9]/*.auto", "**/AUTO/2[01]/*.auto"),
                        _all(conll.read_ccg),
                        "CCGbank AUTO, sections 02-21",
                    ),
                ),
                "dev": (
                    LocalFile(("ccg/dev.tsv",), _all(conll.read_ccg), "word<TAB>supertag"),
                    LocalFile(("**/AUTO/00/*.auto",), _all(conll.read_ccg), "CCGbank AUTO"),
                ),
            },
        ),
    ),
)

XTREME_TASKS = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
INTERMEDIATE_TASKS = (
    "anli_plus",
    "mnli",
    "qqp",
    "squad_v1",
    "squad_v2",
    "hellaswag",
    "cosmosqa",
    "commonsenseqa",
    "ccg",
)

for _spec in CATALOGUE:
    register_task(_spec, replace=True)
