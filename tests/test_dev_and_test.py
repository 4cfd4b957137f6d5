"""Dev and test: every target evaluated on both, choices made on dev only (provably), the paper's tables,
reports merged over runs, and leaderboard exports that score back to the run's own test numbers."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml
from fast_training import FAST

import xstilts
from xstilts.cli import main
from xstilts.files import write_json_atomic
from xstilts.results.selection import choose
from xstilts.tasks import default_registry

TARGETS = [
    {"task": "demo_nli", "languages": ["en", "x-lex"]},
    {"task": "demo_ner", "languages": ["en", "x-scr"]},
    {"task": "demo_qa", "languages": ["en", "x-ord"]},
]


def singles(directory: Path, encoder: Path, demo_tasks: dict, pool: list[str], **extra) -> Path:
    config = {
        "name": "singles",
        "encoder": str(encoder),
        "output_dir": str(directory / "run"),
        "tasks": demo_tasks,
        "study": {"pool": pool, "orders": {"singles": True}, "baseline_runs": 1},
        "targets": TARGETS,
        "training": FAST,
        **extra,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return directory / "config.yaml"


# --- choices on dev ------------------------------------------------------------------------------------


def test_choose_reads_dev_only_and_shows_what_test_would_pick():
    dev = {"a": {"t1": 50.0, "t2": 10.0}, "b": {"t1": 60.0, "t2": 10.0}, "c": {"t1": 40.0}}
    test = {
        "a": {"t1": 70.0, "t2": 30.0, "t3": 1.0},
        "b": {"t1": 55.0, "t2": 20.0, "t3": 2.0},
        "c": {"t1": 90.0, "t2": 5.0, "t3": 3.0},
    }
    choices = choose(["t1", "t2", "t3"], dev, test)
    assert choices["t1"].chosen == "b" and choices["t1"].dev == 60.0 and choices["t1"].test == 55.0
    assert choices["t1"].test_choice == "c" and choices["t1"].optimism == pytest.approx(35.0)
    assert choices["t2"].chosen == "a", "a tie keeps the first candidate"
    # t3 has no dev score anywhere: the other targets' mean dev decides (b: 35 > a: 30 > c: 40 over t1 only)
    assert choices["t3"].by_other_targets and choices["t3"].chosen == "c" and choices["t3"].dev is None


def test_a_target_whose_dev_files_are_its_test_files_is_chosen_by_the_other_targets():
    """TyDiQA-GoldP's dev set is what XTREME reports as its test: its own dev score must not choose."""
    dev = {"a": {"tydiqa": 90.0, "xnli": 70.0, "pawsx": 80.0}, "b": {"tydiqa": 10.0, "xnli": 72.0, "pawsx": 81.0}}
    test = {"a": {"tydiqa": 90.0}, "b": {"tydiqa": 10.0}}
    choice = choose(["tydiqa", "xnli"], dev, test)["tydiqa"]
    assert choice.by_other_targets and choice.chosen == "b" and choice.optimism == pytest.approx(80.0)
    assert (
        choose(["xnli"], dev, test)["xnli"].chosen == "b" and not choose(["xnli"], dev, test)["xnli"].by_other_targets
    )


def test_no_choice_changes_when_the_test_scores_are_shuffled():
    rng = random.Random(0)
    for _ in range(200):
        candidates = [f"m{i}" for i in range(rng.randint(2, 6))]
        targets = [f"t{i}" for i in range(rng.randint(1, 4))]
        dev = {c: {t: rng.random() for t in targets if rng.random() > 0.2} for c in candidates}
        test = {c: {t: rng.random() for t in targets} for c in candidates}
        shuffled_values = [v for c in candidates for v in test[c].values()]
        rng.shuffle(shuffled_values)
        it = iter(shuffled_values)
        shuffled = {c: {t: next(it) for t in test[c]} for c in candidates}
        first, second = choose(targets, dev, test), choose(targets, dev, shuffled)
        assert {t: c.chosen for t, c in first.items()} == {t: c.chosen for t, c in second.items()}


# --- splits, the paper's tables, merged reports, exports --------------------------------------------------


@pytest.mark.slow
def test_singles_study_dev_and_test_paper_tables_and_merging(tmp_path, tiny_encoder_dir, demo_tasks):
    pool = ["demo_paraphrase", "demo_squad2", "demo_swag"]
    whole = xstilts.load_config(singles(tmp_path / "whole", tiny_encoder_dir, demo_tasks, pool))
    summary = xstilts.run(whole, progress=False)
    run = tmp_path / "whole" / "run"
    assert (
        sorted(summary["chains"]) == sorted(summary["dev"]["chains"]) == ["k0-pretrained", *(f"k1-{t}" for t in pool)]
    )
    report = xstilts.write_report(run).read_text()
    csv_lines = (run / "results.csv").read_text().splitlines()
    assert csv_lines[0].endswith(",split") and {line.rsplit(",", 1)[1] for line in csv_lines[1:]} == {"dev", "test"}
    rule = "chosen on dev by the target's mean over its dev languages"
    for split in ("dev", "test"):
        section = report.split(f"## Intermediate tasks ({split}; the paper's layout")[1].split("\n## ")[0]
        assert "| model | demo_ner | demo_nli | demo_qa | average |" in section
        for name in ("pretrained", *pool):
            assert f"| {name} | " in section
        assert ("best intermediate model per target" in section) == (split == "test")
    assert f"## Best chain length per target ({rule}; reported on test)" in report
    assert "## demo_qa per intermediate task, by language (dev)" in report and "## demo_nli by language (dev)" in report

    # The report's choices never read test: scramble every test score and they stay the same.
    from xstilts.analysis.report import collect
    from xstilts.analysis.tables import _best_length_table, _paper_tables, aggregate
    from xstilts.rundir.runs import RunDirectory

    collected = collect([RunDirectory(run)])
    rng = random.Random(1)
    scrambled = [dict(row) for row in collected.rows]
    test_rows = [row for row in scrambled if row["split"] == "test"]
    for row in test_rows:
        row["metrics"] = {key: rng.uniform(0, 100) for key in row["metrics"]}

    def chosen(rows):
        aggregated = aggregate("x", rows, [])
        best_k = [line[:2] for line in _best_length_table(aggregated, "dev")[0][1][1:]]
        paper = _paper_tables(aggregated, "dev")
        best_row = next(t for title, t in paper if title.startswith("Intermediate tasks (test"))[-1]
        return best_k, re.findall(r"\[([^\]]+)\]", " ".join(best_row))

    assert chosen(collected.rows) == chosen(scrambled)

    # Two runs that together hold the same stages give the same report as the one run.
    xstilts.run(xstilts.load_config(singles(tmp_path / "a", tiny_encoder_dir, demo_tasks, pool[:1])), progress=False)
    xstilts.run(xstilts.load_config(singles(tmp_path / "b", tiny_encoder_dir, demo_tasks, pool[1:])), progress=False)
    assert (
        main(["report", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "-o", str(tmp_path / "merged")]) == 0
    )
    merged = (tmp_path / "merged" / "report.md").read_text()

    def comparable(text):  # the runs differ only in their names and wall times and the stages' training seconds
        text = re.sub(r"^# xstilts report: .*$", "", text, flags=re.M)
        text = re.sub(r"\n+Run wall time: .*$", "", text, flags=re.M).rstrip()  # a merged report has no one wall time
        return re.sub(r"\| (\d+ \(\d+\)) \| \d+ \| (\d+) \|", r"| \1 | s | \2 |", text)

    assert comparable(merged) == comparable(report)
    rows = lambda path: sorted(json.dumps(r, sort_keys=True) for r in json.loads((path / "results.json").read_text()))  # noqa: E731
    assert rows(tmp_path / "merged") == rows(run), "the same results, stage for stage"

    # The same cell from a different model (other settings, same chain label) is an error naming both runs.
    other = singles(tmp_path / "c", tiny_encoder_dir, demo_tasks, pool[:1], training={**FAST, "learning_rate": 2e-3})
    xstilts.run(xstilts.load_config(other), progress=False)
    assert (
        main(["report", str(tmp_path / "a" / "run"), str(tmp_path / "c" / "run"), "-o", str(tmp_path / "clash")]) == 2
    )


@pytest.mark.slow
def test_exported_predictions_score_back_to_the_run_test_scores(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    config_path = singles(tmp_path, tiny_encoder_dir, demo_tasks, ["demo_paraphrase"])
    summary = xstilts.run(xstilts.load_config(config_path), progress=False)
    run = tmp_path / "run"
    assert main(["export-predictions", str(run), "-o", str(tmp_path / "submission")]) == 0
    out = capsys.readouterr().out
    for target in ("demo_nli", "demo_ner", "demo_qa"):
        chosen = re.search(rf"^{target}\s+(\S+)", out, flags=re.M).group(1)
        assert (
            main(
                [
                    "score",
                    "--config",
                    str(run / "config.resolved.yaml"),
                    "--task",
                    target,
                    "--gold-dir",
                    demo_tasks[target]["data_dir"],
                    "--predictions-dir",
                    str(tmp_path / "submission" / target),
                ]
            )
            == 0
        )
        scored = json.loads(capsys.readouterr().out)
        expected = summary["chains"][chosen]["targets"][target]["languages"]
        assert set(scored["languages"]) == set(expected)
        for language, metrics in expected.items():
            for name, value in metrics.items():
                assert scored["languages"][language][name] == value, (target, language, name)


# --- the catalogue's splits and the retrieval presets ----------------------------------------------------


def test_catalogue_evaluation_splits_follow_the_protocol():
    registry = default_registry()
    assert registry.get("xquad").evaluation_languages("dev") == ("en",), "XQuAD: only SQuAD's English dev"
    assert registry.get("tatoeba").evaluation_languages("dev") == (), "Tatoeba: test only"
    assert len(registry.get("tatoeba").evaluation_languages("test")) == 41
    assert registry.get("tydiqa").evaluation_languages("dev") == registry.get("tydiqa").evaluation_languages("test")
    assert registry.get("bucc2018").evaluation_languages("dev") == ("de", "fr", "ru", "zh"), "BUCC: the sample set"
    assert len(registry.get("xnli").evaluation_languages("dev")) == 15


def test_retrieval_presets():
    from xstilts.settings import EmbeddingSettings

    jiant, xtreme = EmbeddingSettings(), EmbeddingSettings(preset="xtreme")
    assert jiant.resolved(24, "bucc2018").model_dump(include={"layer", "pooling"}) == {"layer": 14, "pooling": "mean"}
    assert jiant.resolved(24, "tatoeba").model_dump(include={"layer", "pooling"}) == {"layer": 14, "pooling": "mean"}
    assert xtreme.resolved(24, "bucc2018").model_dump(include={"layer", "pooling"}) == {"layer": 20, "pooling": "cls"}
    assert xtreme.resolved(24, "tatoeba").model_dump(include={"layer", "pooling"}) == {"layer": 14, "pooling": "mean"}
    assert xtreme.resolved(12, "bucc2018").layer == 10, "scaled to the encoder's depth"
    assert EmbeddingSettings(preset="xtreme", pooling="mean", layer=3).resolved(24, "bucc2018").model_dump(
        include={"layer", "pooling"}
    ) == {"layer": 3, "pooling": "mean"}


def test_a_run_from_before_dev_evaluation_reports_as_test(tmp_path):
    """Old run directories: results/<chain>/<target>/<lang>.json without a split field are test rows."""
    run = tmp_path / "old"
    for label, length, scores in [("k0-pretrained", 0, (60.0, 50.0)), ("k1-mnli", 1, (62.0, 53.0))]:
        for language, score in zip(("en", "de"), scores):
            row = {
                "chain": ["mnli"][:length],
                "chain_length": length,
                "chain_label": label,
                "target": "xnli",
                "language": language,
                "metric": "accuracy",
                "metrics": {"accuracy": score},
                "score": score,
                "examples": 100,
            }
            write_json_atomic(run / "results" / label / "xnli" / f"{language}.json", row)
    report = xstilts.write_report(run).read_text()
    assert "| 0 | 55.0 | 55.0 | 55.0 |\n| 1 | 57.5 | 57.5 | 57.5 |" in report
    assert "| all | none chosen: the run has no dev results (never chosen on test) |" in report
    csv_lines = (run / "results.csv").read_text().splitlines()
    assert {line.rsplit(",", 1)[1] for line in csv_lines[1:]} == {"test"}
