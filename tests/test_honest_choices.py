"""No choice reads a test file, no dev file belongs to the wrong language, nothing drops out of an average
silently: TyDiQA's dev-is-test, MLQA's SQuAD fallback, dev languages without files, averages named by what
they average."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from fast_training import FAST

from xstilts.errors import DataError
from xstilts.results.selection import choose
from xstilts.tasks import default_registry


def test_a_dev_less_target_is_chosen_by_the_other_targets_without_tydiqa():
    """Tatoeba has no dev split: the other targets choose for it, and TyDiQA (whose dev files are its test files)
    is not one of them, however strongly its "dev" favours a candidate."""
    dev = {"a": {"tydiqa": 99.0, "xnli": 70.0}, "b": {"tydiqa": 1.0, "xnli": 71.0}}
    test = {"a": {"tatoeba": 50.0, "tydiqa": 99.0}, "b": {"tatoeba": 40.0, "tydiqa": 1.0}}
    choices = choose(["tatoeba", "tydiqa", "xnli"], dev, test)
    assert choices["tatoeba"].by_other_targets and choices["tatoeba"].chosen == "b", "xnli decides, not tydiqa"
    assert choices["tydiqa"].by_other_targets and choices["tydiqa"].chosen == "b"


def test_the_best_k_of_the_average_is_chosen_without_tydiqa():
    from xstilts.analysis.report import _dev_best_lengths
    from xstilts.results.effects import AVERAGE

    def table(scores):
        return {
            "scores": {k: {t: (v, 0.0, 1) for t, v in by_target.items()} for k, by_target in scores.items()},
            "languages": {},
        }

    dev = {0: {"xnli": 70.0, "tydiqa": 10.0}, 1: {"xnli": 69.0, "tydiqa": 90.0}}
    chosen = _dev_best_lengths({"dev": table(dev), "test": table(dev)}, "dev")
    assert chosen[AVERAGE] == 0, "the mean over xnli alone: TyDiQA's dev (its test) must not pull k = 1 up"
    assert chosen["tydiqa"] == 0, "TyDiQA itself is chosen by the other targets"


@pytest.fixture
def tydiqa_like(tmp_path, demo_registry):
    """demo_qa's English training data in a task whose dev file is its test file (and is not even valid JSON)."""
    source = demo_registry.get("demo_qa")
    data = tmp_path / "tydiqa-like"
    data.mkdir()
    lines = (Path(source.data.data_dir) / "train-en.jsonl").read_text().splitlines()
    (data / "train-en.jsonl").write_text("\n".join(lines) + "\n")
    (data / "dev-en.jsonl").write_text("this is the test set: never read it\n")
    return replace(source.with_data_dir(data), name="tydiqa_like", dev_is_test=True), lines


def test_tydiqa_early_stops_on_held_out_training_data_never_on_its_test_files(tydiqa_like, tiny_tokenizer):
    """A target whose dev files are its test files validates on the last tenth of its English training examples,
    which it never trains on; the record says where its dev score came from."""
    from xstilts.settings import resolve_settings
    from xstilts.study.stage import _member_data
    from xstilts.train.mixture import MixtureMember

    spec, lines = tydiqa_like
    settings = resolve_settings("qa", {**FAST, "eval_examples": 100})
    data = _member_data(MixtureMember(spec, settings, spec.name, ("en",)), tiny_tokenizer)
    held = len(lines) // 10
    assert data.train_examples == len(lines) - held and len(data.dev_examples) == held
    assert data.dev_examples == [json.loads(line) for line in lines[-held:]], "the last tenth, in file order"
    training_ids = {json.loads(line)["id"] for line in lines[:-held]}
    assert not training_ids & {e["id"] for e in data.dev_examples}, "validation examples are never trained on"
    assert "held out: the last 4 of 48 English training examples" in data.dev_source
    assert spec.fingerprint()["validation"] == "held-out training slice", "such a stage has its own identity"


def test_a_stage_of_such_a_target_records_its_held_out_validation(tmp_path, tydiqa_like, tiny_encoder_dir):
    from xstilts.rundir.store import StageStore
    from xstilts.study.plan import ChainPrefix, stage_request
    from xstilts.study.stage import run_stage
    from xstilts.train.adapters import EncoderRecipe

    spec, _ = tydiqa_like
    base = ChainPrefix(0, (), "base", None, recipe=EncoderRecipe(str(tiny_encoder_dir)))
    record = run_stage(stage_request("target", spec, [FAST], 0, base), StageStore(tmp_path / "stages"), progress=False)
    assert record["dev_source"]["tydiqa_like"].startswith("held out: the last 4 of 48")


def squad_folder(tmp_path: Path) -> Path:
    """A folder holding SQuAD v1.1's train and dev files only (no MLQA release)."""
    paragraph = {
        "context": "Anna bought a book in Paris.",
        "qas": [{"id": "q1", "question": "What did Anna buy?", "answers": [{"text": "a book", "answer_start": 12}]}],
    }
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (tmp_path / "squad").mkdir(exist_ok=True)
        content = {"version": "1.1", "data": [{"title": "t", "paragraphs": [paragraph]}]}
        (tmp_path / "squad" / name).write_text(json.dumps(content), encoding="utf-8")
    return tmp_path / "squad"


def test_mlqa_dev_in_other_languages_is_never_squads_english_dev(tmp_path):
    """SQuAD's English dev-v1.1.json is MLQA's English dev only; German (and every other language) needs MLQA's
    own dev files, or it has none: it is reported as missing, not scored on English."""
    from xstilts.data.prepare import prepare

    reports = prepare(default_registry(), ["mlqa"], tmp_path / "out", source_dir=squad_folder(tmp_path))
    dev = sorted(r.language for r in reports if r.split == "dev")
    assert dev == ["en"], dev
    assert not (tmp_path / "out" / "mlqa" / "dev-de.jsonl").exists()


def test_a_file_matched_for_two_languages_is_refused(tmp_path):
    """The class of the MLQA trap: any layout that yields the same examples for two languages of one split."""
    from xstilts.data.prepare import prepare
    from xstilts.tasks.sources import LocalFile, Sources

    registry = default_registry()
    mlqa = registry.get("mlqa")
    squad_dev = mlqa.sources.local["dev"][-1]
    careless = replace(squad_dev, languages=())  # a layout that forgets which language its file holds
    registry.add(replace(mlqa, sources=Sources(local={**mlqa.sources.local, "dev": (careless,)})), replace=True)
    assert isinstance(careless, LocalFile)
    with pytest.raises(DataError, match="the same 1 examples were found for languages en and ar"):
        prepare(registry, ["mlqa"], tmp_path / "out", source_dir=squad_folder(tmp_path))
    assert not (tmp_path / "out" / "mlqa").exists(), "nothing of the task is written"


def test_dev_languages_without_files_are_listed_and_named_in_the_report(tmp_path, tiny_encoder_dir, demo_tasks):
    """A target's dev set exists for some languages only: the plan names the others, and the report says which
    languages its averages leave out."""
    import xstilts
    from xstilts.rundir.runs import RunDirectory

    nli = dict(demo_tasks["demo_nli"])
    data = tmp_path / "nli"
    data.mkdir()
    for file in Path(nli["data_dir"]).glob("*.jsonl"):
        if file.name != "dev-x-scr.jsonl":
            (data / file.name).write_text(file.read_text())
    nli["data_dir"] = str(data)
    config = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "tasks": {"demo_nli": nli},
        "chain": [],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex", "x-scr"]}],
        "training": FAST,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    xstilts.run(xstilts.load_config(path), progress=False)
    plan = RunDirectory(tmp_path / "run").read_plan()
    assert plan.unevaluated == [{"target": "demo_nli", "split": "dev", "language": "x-scr", "reason": "no file"}]
    summary = RunDirectory(tmp_path / "run").read_summary()
    assert summary["effects"]["full"]["dev"]["targets"]["demo_nli"]["missing_languages"] == ["x-scr"]


def test_an_average_is_called_xtreme_only_over_all_nine_targets_in_all_their_languages():
    from xstilts.metrics.xtreme import XTREME_TASK_ORDER
    from xstilts.results.effects import average_label, expected_languages

    full = {t: list(expected_languages(t, "test")) for t in XTREME_TASK_ORDER}
    assert average_label(list(XTREME_TASK_ORDER), full, "test") == "XTREME"
    assert average_label(["xnli", "pawsx"], full, "test") == "average of 2 targets"
    fewer = {**full, "xnli": full["xnli"][:-1]}
    assert average_label(list(XTREME_TASK_ORDER), fewer, "test") == "average of 9 targets", "a language is missing"
