"""Exported targets load as plain Hugging Face models and predict what xstilts predicted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForTokenClassification,
    AutoTokenizer,
    pipeline,
)

import xstilts
from xstilts.cli import main
from xstilts.config import parse_config
from xstilts.data.examples import load_examples
from xstilts.readers.jsonl import read_jsonl

pytestmark = pytest.mark.slow

LANGUAGES = ["en", "x-lex"]
TRAINING = {
    "epochs": 1,
    "max_steps": 12,
    "batch_size": 8,
    "eval_every_steps": 6,
    "eval_examples": 8,
    "learning_rate": 1e-3,
    "max_length": 64,
    "doc_stride": 32,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_encoder_dir, demo_tasks) -> Path:
    """One intermediate task, then a classification, a tagging and a QA target."""
    root = tmp_path_factory.mktemp("export")
    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(root / "run"),
        "tasks": demo_tasks,
        "chain": ["demo_paraphrase"],
        "targets": [{"task": t, "languages": LANGUAGES} for t in ("demo_nli", "demo_ner", "demo_qa")],
        "training": TRAINING,
        "evaluate_every_prefix": True,
    }
    xstilts.run(parse_config(raw), progress=False)
    return root / "run"


def _export(run_dir: Path, target: str, out: Path, capsys) -> Path:
    assert main(["export", str(run_dir), "--chain", "k1-demo_paraphrase", "--target", target, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported {target}" in printed and str(out) in printed
    return out


def _stage_dir(run_dir: Path, target: str) -> Path:
    (stage,) = (run_dir / "by-chain" / "k1-demo_paraphrase").glob(target)
    return stage.resolve()


def _xstilts_predictions(run_dir: Path, target: str, language: str) -> list:
    rows = read_jsonl(_stage_dir(run_dir, target) / "predictions" / f"test-{language}.jsonl")
    return [row["prediction"] for _, row in rows]


def test_classification_export_is_a_text_classification_pipeline(run_dir, tmp_path, demo_registry, capsys):
    out = _export(run_dir, "demo_nli", tmp_path / "nli", capsys)
    spec = demo_registry.get("demo_nli")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert config["id2label"] == {str(i): label for i, label in enumerate(spec.labels)}
    classify = pipeline("text-classification", model=str(out), device=-1)
    for language in LANGUAGES:
        examples = load_examples(spec, "test", language)
        ours = _xstilts_predictions(run_dir, "demo_nli", language)
        theirs = [r["label"] for r in classify([{"text": e["text_a"], "text_pair": e["text_b"]} for e in examples])]
        assert theirs == ours, language

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    assert "# demo_nli after demo_paraphrase (xstilts)" in card and "| language | dev | test |" in card
    assert f"xstilts {xstilts.__version__}" in card
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only", "stride"} & set(tokenizer_config), "no loading options in the export"


def test_tagging_export_predicts_the_same_tags(run_dir, tmp_path, demo_registry, capsys):
    out = _export(run_dir, "demo_ner", tmp_path / "ner", capsys)
    spec = demo_registry.get("demo_ner")
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    for language in LANGUAGES:
        examples = load_examples(spec, "test", language)
        ours = _xstilts_predictions(run_dir, "demo_ner", language)
        theirs = []
        for example in examples:  # XTREME tagging: each word's label is its first subword's
            encoding = tokenizer(example["tokens"], is_split_into_words=True, return_tensors="pt")
            with torch.no_grad():
                labels = model(**encoding).logits[0].argmax(-1).tolist()
            first = {}
            for position, word in enumerate(encoding.word_ids()):
                if word is not None:
                    first.setdefault(word, position)
            theirs.append([model.config.id2label[labels[first[w]]] for w in range(len(example["tokens"]))])
        assert theirs == ours, language


def test_qa_export_answers_as_xstilts_did(run_dir, tmp_path, demo_registry, capsys):
    """transformers 5 has no question-answering pipeline: the exported AutoModelForQuestionAnswering runs on
    xstilts' own windows and its start/end scores go through xstilts' answer decoding."""
    from xstilts.data.examples import build_features
    from xstilts.evaluate.evaluation import evaluate
    from xstilts.runtime.device import get_accelerator
    from xstilts.settings import TrainingSettings

    out = _export(run_dir, "demo_qa", tmp_path / "qa", capsys)
    spec = demo_registry.get("demo_qa")
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    settings = TrainingSettings(**json.loads((_stage_dir(run_dir, "demo_qa") / "stage.json").read_text())["settings"])

    class StandardModel(torch.nn.Module):  # the one call xstilts' evaluation makes: model(task, batch)
        specs = {spec.name: spec}

        def forward(self, task: str, batch: dict) -> torch.Tensor:
            output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            return torch.stack([output.start_logits, output.end_logits], dim=-1)

    for language in LANGUAGES:
        examples = load_examples(spec, "test", language)
        features = build_features(spec, examples, tokenizer, settings, training=False)
        theirs = evaluate(
            StandardModel(), spec, examples, features, settings, get_accelerator(), tokenizer.pad_token_id, language
        ).predictions
        assert theirs == _xstilts_predictions(run_dir, "demo_qa", language), language


def test_stage_encoders_load_with_automodel_without_missing_weights(run_dir):
    stage = next(p for p in (run_dir / "stages").iterdir() if p.name.endswith("-demo_paraphrase"))
    _, info = AutoModel.from_pretrained(stage / "encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tokenizer_config = json.loads((stage / "encoder" / "tokenizer_config.json").read_text())
    assert not {"is_local", "local_files_only", "stride", "max_length"} & set(tokenizer_config)


def test_by_chain_links_name_the_hash_named_stages(run_dir):
    chain = run_dir / "by-chain" / "k1-demo_paraphrase"
    assert {p.name for p in chain.iterdir()} == {"encoder", "demo_nli", "demo_ner", "demo_qa"}
    assert (chain / "encoder").resolve().name.endswith("-demo_paraphrase")
    assert json.loads((chain / "demo_nli" / "stage.json").read_text())["chain"] == ["demo_paraphrase"]
    pretrained = run_dir / "by-chain" / "k0-pretrained"
    assert (pretrained / "demo_qa" / "stage.json").is_file() and not (pretrained / "encoder").exists()


def test_export_errors_name_what_exists(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--chain", "k9-nothing", "--target", "demo_nli", "-o", str(tmp_path)]) == 2
    assert "no chain 'k9-nothing'" in (err := capsys.readouterr().err) and "k1-demo_paraphrase" in err
    assert main(["export", str(run_dir), "--chain", "k1-demo_paraphrase", "--target", "xnli", "-o", str(tmp_path)]) == 2
    assert "fine-tuned targets: demo_ner, demo_nli, demo_qa" in capsys.readouterr().err
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["export", str(run_dir), "--chain", "k1-demo_paraphrase", "--target", "demo_nli", "-o", str(tmp_path)])
    assert code == 2 and "is not a model xstilts exported" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine", "an existing directory that is not an export is left alone"
    assert transformers  # imported for the pipelines above


def test_exports_never_delete_what_they_did_not_write_nor_leave_half_a_model(run_dir, tmp_path, capsys, monkeypatch):
    """A model folder of the user's own (it has config.json) is refused, not replaced; an export interrupted
    while writing leaves the earlier export whole and nothing of its own; two exports at once leave one whole."""
    import threading

    from xstilts.export import model as export_module

    foreign = tmp_path / "my-model"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    args = ["export", str(run_dir), "--chain", "k1-demo_paraphrase", "--target", "demo_nli", "-o"]
    assert main([*args, str(foreign)]) == 2 and "is not a model xstilts exported" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["config.json"]

    out = _export(run_dir, "demo_nli", tmp_path / "nli", capsys)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    original = export_module.save_clean_tokenizer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "save_clean_tokenizer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_module.export_model(run_dir, "k1-demo_paraphrase", "demo_nli", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the earlier export is as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-model", "nli"], "no partial folder is left"
    monkeypatch.setattr(export_module, "save_clean_tokenizer", original)

    errors = []

    def export_again():
        try:
            export_module.export_model(run_dir, "k1-demo_paraphrase", "demo_nli", out)
        except Exception as error:  # noqa: BLE001 - the test reports any failure of either thread
            errors.append(error)

    threads = [threading.Thread(target=export_again) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-model", "nli"]
    assert {p.name for p in out.iterdir()} == set(before)
    assert pipeline("text-classification", model=str(out))("a sentence")


def test_lora_chains_export_merged_and_bottleneck_chains_refuse(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "tasks": demo_tasks,
        "chain": ["demo_paraphrase"],
        "targets": [{"task": "demo_nli", "languages": ["en"]}],
        "training": TRAINING,
        "chain_modes": ["lora-stacked", "adapter-stacked"],
    }
    xstilts.run(parse_config(raw), progress=False)
    run = tmp_path / "run"
    common = ["export", str(run), "--target", "demo_nli"]
    assert main([*common, "--chain", "k1-demo_paraphrase", "-o", str(tmp_path / "x")]) == 2
    assert "chains: adapter-stacked-k1-demo_paraphrase, lora-stacked-k1-demo_paraphrase" in capsys.readouterr().err
    assert main([*common, "--chain", "lora-stacked-k1-demo_paraphrase", "-o", str(tmp_path / "lora")]) == 0
    capsys.readouterr()
    classify = pipeline("text-classification", model=str(tmp_path / "lora"), device=-1)
    spec = parse_config(raw).registry().get("demo_nli")
    examples = load_examples(spec, "test", "en")
    (stage,) = (run / "by-chain" / "lora-stacked-k1-demo_paraphrase").glob("demo_nli")
    ours = [row["prediction"] for _, row in read_jsonl(stage / "predictions" / "test-en.jsonl")]
    assert [r["label"] for r in classify([{"text": e["text_a"], "text_pair": e["text_b"]} for e in examples])] == ours
    assert main([*common, "--chain", "adapter-stacked-k1-demo_paraphrase", "-o", str(tmp_path / "bottleneck")]) == 2
    assert "adapter-stacked) cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "bottleneck").exists()
