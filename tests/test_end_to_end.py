"""A tiny 2-stage chain end to end through the config file, the engine, the results and the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fast_training import FAST as TWO_STEPS

import xstilts

pytestmark = pytest.mark.slow

FAST = {**TWO_STEPS, "max_steps": 3, "eval_every_steps": 3}


def write_chain_config(tmp_path: Path, encoder_dir: Path, demo_tasks: dict, targets: list) -> Path:
    config = {
        "name": "tiny chain",
        "encoder": str(encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "seed": 3,
        "tasks": demo_tasks,
        "chain": ["demo_paraphrase", {"task": "demo_squad2", "training": {"max_steps": 2}}],
        "targets": targets,
        "training": FAST,
        "evaluate_every_prefix": True,
    }
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_two_stage_chain_writes_results_summary_and_report(tmp_path, tiny_encoder_dir, demo_tasks):
    targets = [{"task": "demo_nli", "languages": ["en", "x-lex", "x-scr"]}, "demo_qa", "demo_ner"]
    config = xstilts.load_config(write_chain_config(tmp_path, tiny_encoder_dir, demo_tasks, targets))
    summary = xstilts.run(config, progress=False)
    run_dir = tmp_path / "run"

    labels = ["k0-pretrained", "k1-demo_paraphrase", "k2-demo_paraphrase+demo_squad2"]
    assert sorted(summary["chains"]) == labels
    expected_languages = {
        "demo_nli": ["en", "x-lex", "x-scr"],
        "demo_qa": ["en", "x-lex", "x-ord", "x-scr"],
        "demo_ner": ["en", "x-lex", "x-ord", "x-scr"],
    }
    for label in labels:
        for target, languages in expected_languages.items():
            for split in ("dev", "test"):  # every target is evaluated on dev and test in each of its languages
                for language in languages:
                    row = json.loads((run_dir / "results" / label / target / f"{split}-{language}.json").read_text())
                    assert row["chain_label"] == label and row["target"] == target and row["language"] == language
                    assert row["split"] == split and row["examples"] == 12
            for entry in (
                summary["chains"][label]["targets"][target],
                summary["dev"]["chains"][label]["targets"][target],
            ):
                assert sorted(entry["scores"]) == sorted(languages)
                assert entry["average"]["score"] == pytest.approx(sum(entry["scores"].values()) / len(languages))
    assert summary["chains"]["k2-demo_paraphrase+demo_squad2"]["chain"] == ["demo_paraphrase", "demo_squad2"]
    assert xstilts.read_results(run_dir)["chains"].keys() == summary["chains"].keys()

    # 2 intermediate stages + 3 targets after each of 3 prefixes, each stage once.
    stages = [json.loads(p.read_text()) for p in (run_dir / "stages").glob("*/stage.json")]
    assert sorted(s["role"] for s in stages) == ["intermediate"] * 2 + ["target"] * 9
    squad = next(s for s in stages if s["task"] == "demo_squad2")
    assert squad["steps"] == 2 and squad["settings"]["learning_rate"] == 1e-3 and squad["seed"] == 3

    report = xstilts.write_report(run_dir)
    text = report.read_text()
    assert (run_dir / "gain_vs_chain_length.png").stat().st_size > 1000 and (
        run_dir / "gain_vs_chain_length.svg"
    ).is_file()
    assert text.index("## Transfer against chain length (test)") < text.index("## Score against chain length")
    for target in expected_languages:
        assert f"## {target} by language" in text
    assert (
        "| k | demo_ner | demo_nli | demo_qa |" in text
        and "## Gain over k = 0" in text
        and "## Best chain length per target" in text
    )
    assert "| k2-demo_paraphrase+demo_squad2 | 2 | demo_paraphrase → demo_squad2 | 3 |" in text
    assert "| k | en | x-lex | x-scr |" in text and "missing" not in text
    assert "| demo_paraphrase → demo_squad2 | qa | exact_match" in text, "intermediate stages with their own dev scores"
    rows = json.loads((run_dir / "results.json").read_text())
    assert len(rows) == 2 * 3 * (3 + 4 + 4) and (run_dir / "results.csv").read_text().startswith(
        "mode,chain_label,chain_length,chain,seed,target,language,metric,value,score,score_lower,score_upper,"
        "gain_over_k0,gain_lower,gain_upper,interval_examples,interval_method,control,combination,split"
    )
    assert (
        "<table>" in (run_dir / "report.html").read_text()
        and "data:image/png;base64," in (run_dir / "report.html").read_text()
    )

    # A result that is missing (a failed or unfinished node) is reported as missing, not dropped.
    lost = run_dir / "results" / "k1-demo_paraphrase" / "demo_qa" / "test-x-ord.json"
    kept = lost.read_text()
    lost.unlink()
    partial = xstilts.write_report(run_dir).read_text()
    assert "## Missing results (1)" in partial and "| k1-demo_paraphrase | demo_qa | x-ord |" in partial
    lost.write_text(kept)

    # Running again trains nothing and gives the same results.
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "stages").glob("*/stage.json")}
    again = xstilts.run(config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "stages").glob("*/stage.json")} == before
    assert {k: v["targets"] for k, v in again["chains"].items()} == {
        k: v["targets"] for k, v in summary["chains"].items()
    }


def test_cli_run_and_report(tmp_path, tiny_encoder_dir, demo_tasks):
    path = write_chain_config(
        tmp_path,
        tiny_encoder_dir,
        {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_squad2", "demo_nli")},
        ["demo_nli"],
    )
    data = yaml.safe_load(path.read_text())
    data["evaluate_every_prefix"] = False
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run(  # not a terminal: no progress bars whatever --progress says, progress lines instead
        [sys.executable, "-m", "xstilts", "run", str(path), "training.learning_rate=2e-3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "fontManager" not in result.stderr, "no bar frames, no library chatter"
    log_text = (tmp_path / "run" / "run.log").read_text()
    for lines in (result.stderr, log_text):
        assert re.search(
            r"stage 1/3 intermediate demo_paraphrase: step \d+/\d+ loss [\d.]+, lr [\d.e+-]+, \d+ tok/s", lines
        )
        assert re.search(r"stage 3/3 target demo_nli after demo_paraphrase\+demo_squad2: step 3/\d+ English dev", lines)
        assert "stage 3/3 target demo_nli after demo_paraphrase+demo_squad2: test x-lex accuracy=" in lines
    assert yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())["training"]["learning_rate"] == 2e-3
    assert "## Transfer against chain length (test)" in result.stdout and "| demo_nli | " in result.stdout
    assert "| target | k = 2 | each further task | detectable gain | verdict |" in result.stdout, (
        "no k = 0: the score at k = 2"
    )
    assert f"written:\n  {tmp_path / 'run' / 'report.md'}" in result.stdout
    assert (tmp_path / "run" / "report.md").is_file()
    assert not (tmp_path / "run" / "results" / "k0-pretrained").exists(), "only the full chain is evaluated"
    report = subprocess.run(
        [sys.executable, "-m", "xstilts", "report", str(tmp_path / "run")], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0 and "report.md" in report.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "xstilts", "report", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "nothing: no such directory" in missing.stderr


def test_demo_wiring_at_tiny_size(tmp_path, monkeypatch):
    """The demo's own pipeline (pretraining, benchmark, config, study, report) at a size that takes seconds."""
    from xstilts.demo import DEMO_MAX_LENGTH, DEMO_TARGETS, run_demo
    from xstilts.demo.pretrain import PretrainSettings

    monkeypatch.setenv("XSTILTS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("xstilts.demo.DEMO_TRAINING", {**FAST, "max_steps": 2})
    tiny = PretrainSettings(
        sentences_per_language=100, vocab_size=500, hidden_size=32, num_layers=1, intermediate_size=64, steps=3
    )
    report = run_demo(tmp_path / "demo", progress=False, pretrain=tiny, train_size=16).path
    text = report.read_text()
    for target in DEMO_TARGETS:
        section = text.split(f"## {target} by language")[1].split("##")[0]
        assert "| k | en | x-lex | x-ord | x-scr |" in section
        assert (
            len([line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()])
            == DEMO_MAX_LENGTH + 1
        )
    assert (tmp_path / "demo" / "gain_vs_chain_length.png").is_file()
    assert text.startswith("# xstilts report") and text.index("## Transfer against chain length (test)") < text.index(
        "## Controls (known answers)"
    )
    assert "(A/A: k = 0 refitted under other seeds, 3 runs)" in text and "(positive: demo_squad, 3 runs)" in text
    assert (
        "batch 32 x 64: full: latency changes by" in text and (tmp_path / "demo" / "transfer_vs_latency.svg").is_file()
    )
    assert "runs per chain length (orders x seeds; k = 0: its seeds): k = 0: 3, k = 1: 6, k = 2: 6" in text
    assert "demo_qa: 4 languages (en, x-lex, x-ord, x-scr), examples per language 200, test sets parallel" in text
    assert "demo_ner: 4 languages" in text and "test sets independent per language" in text
    assert "## What each added task does to the encoder" in text and "| demo_qa | LogME | 13 |" in text
    assert "## Forgetting of earlier tasks" in text
    combined = text.split("## Other ways to combine the same tasks (test, full chains)")[1].split("\n## ")[0]
    for method in ("sequential (best order on dev)", "ties", "mixture"):
        assert f"| demo_paraphrase+demo_squad2 (2) | {method} |" in combined
    assert (tmp_path / "demo" / "gain_vs_training_cost.png").is_file()
    assert "## The curve of the gain against k" in text
    assert list((tmp_path / "cache").glob("demo-encoder-*/pretraining.json")), "the pretrained encoder is cached"


def test_retrieval_targets_are_evaluated_on_every_prefix_encoder(tmp_path, tiny_encoder_dir, demo_tasks):
    """Tatoeba and BUCC need no fine-tuning: the encoder after each prefix (k = 0 too) is scored as it is."""
    data = tmp_path / "data"
    (data / "tatoeba" / "v1").mkdir(parents=True)
    german = ["Anna kauft das Buch .", "Tom isst Brot .", "Die Katze schläft .", "Wir fahren heute ."]
    english = ["Anna buys the book .", "Tom eats bread .", "The cat sleeps .", "We drive today ."]
    (data / "tatoeba" / "v1" / "tatoeba.deu-eng.deu").write_text("\n".join(german) + "\n", encoding="utf-8")
    (data / "tatoeba" / "v1" / "tatoeba.deu-eng.eng").write_text("\n".join(english) + "\n", encoding="utf-8")
    (data / "bucc2018").mkdir(parents=True)
    (data / "bucc2018" / "de-en.dev.de").write_text(
        "".join(f"de-{i}\t{t}\n" for i, t in enumerate(german)), encoding="utf-8"
    )
    (data / "bucc2018" / "de-en.dev.en").write_text(
        "".join(f"en-{i}\t{t}\n" for i, t in enumerate(english + ["Unrelated ."])), encoding="utf-8"
    )
    (data / "bucc2018" / "de-en.dev.gold").write_text("".join(f"de-{i}\ten-{i}\n" for i in range(4)), encoding="utf-8")
    config_path = write_chain_config(
        tmp_path,
        tiny_encoder_dir,
        {"demo_paraphrase": demo_tasks["demo_paraphrase"], "demo_squad2": demo_tasks["demo_squad2"]},
        [
            {"task": "tatoeba", "languages": ["de"], "embedding": {"layer": 1}},
            {"task": "bucc2018", "languages": ["de"]},
        ],
    )
    raw = yaml.safe_load(config_path.read_text())
    raw["data_dir"] = str(data)
    config_path.write_text(yaml.safe_dump(raw))
    config = xstilts.load_config(config_path)
    summary = xstilts.run(config, progress=False)
    labels = ["k0-pretrained", "k1-demo_paraphrase", "k2-demo_paraphrase+demo_squad2"]
    assert sorted(summary["chains"]) == labels and sorted(summary["dev"]["chains"]) == labels
    for label in labels:
        tatoeba = summary["chains"][label]["targets"]["tatoeba"]["languages"]["de"]
        assert 0 <= tatoeba["accuracy"] <= 100 and tatoeba["examples"] == 4 and tatoeba["embedding"]["layer"] == 1
        assert "tatoeba" not in summary["dev"]["chains"][label]["targets"], "Tatoeba has no dev split"
        # Only BUCC's dev (sample) files are here: it is evaluated on dev, and absent from the test view.
        bucc = summary["dev"]["chains"][label]["targets"]["bucc2018"]["languages"]["de"]
        assert bucc["embedding"]["layer"] == 1 and bucc["embedding"]["pooling"] == "mean", (
            "default layer: 14/24 of 2 layers"
        )
        assert "bucc2018" not in summary["chains"][label]["targets"]
        assert summary["chains"][label]["xtreme"]["partial"] is True and set(
            summary["chains"][label]["xtreme"]["tasks"]
        ) == {"tatoeba"}
    run_dir = tmp_path / "run"
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir / "retrieval").rglob("*.json")}
    assert len(stamps) == 6
    xstilts.run(config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "retrieval").rglob("*.json")} == stamps, (
        "finished evaluations are read back"
    )
    assert "## tatoeba by language" in xstilts.write_report(run_dir).read_text()

    raw["targets"] = [{"task": "tatoeba", "languages": ["fr"]}]
    config_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(xstilts.ConfigError, match=r"tatoeba: no test files for fr under .*tatoeba.fra-eng.fra"):
        xstilts.load_config(config_path)


def test_sigkill_mid_stage_then_resume_gives_identical_results(tmp_path, tiny_encoder_dir, demo_tasks):
    """A run killed with SIGKILL inside a stage finishes, when started again, exactly as an uninterrupted run;
    a third start trains nothing."""
    import os
    import signal
    import time

    def config_for(name: str) -> Path:
        path = write_chain_config(
            tmp_path / name, tiny_encoder_dir, {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")}, ["demo_nli"]
        )
        raw = yaml.safe_load(path.read_text())
        raw["chain"] = [{"task": "demo_paraphrase", "training": {"max_steps": 400, "eval_every_steps": 100}}]
        raw["checkpoint_every_steps"] = 20
        path.write_text(yaml.safe_dump(raw))
        return path

    (tmp_path / "whole").mkdir(), (tmp_path / "killed").mkdir()
    command = [sys.executable, "-m", "xstilts", "run", "--no-progress", "-q"]
    whole = subprocess.run([*command, str(config_for("whole"))], capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr

    killed_config = config_for("killed")
    process = subprocess.Popen([*command, str(killed_config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "run" / "stages" / ".checkpoints"
    deadline = time.time() + 300
    while not any(checkpoints.glob("*/progress.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert any(checkpoints.glob("*/progress.json")), "killed after a mid-stage checkpoint"
    assert not list((tmp_path / "killed" / "run" / "stages").glob("*-demo_paraphrase/stage.json")), (
        "killed before the stage finished"
    )

    again = subprocess.run([*command, str(killed_config)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr

    def results(name: str) -> dict:
        return {
            p.relative_to(tmp_path / name / "run"): json.loads(p.read_text())
            for p in (tmp_path / name / "run" / "results").rglob("*.json")
        }

    assert results("killed") == results("whole") and results("whole")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed" / "run" / "stages").glob("*/stage.json")}
    third = subprocess.run([*command, str(killed_config)], capture_output=True, text=True, timeout=600)
    assert third.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "killed" / "run" / "stages").glob("*/stage.json")} == stamps, (
        "nothing trains"
    )


def test_keep_needed_prunes_weights_and_retrains_only_what_a_later_run_needs(tmp_path, tiny_encoder_dir, demo_tasks):
    """`keep: needed` leaves records and evaluations but no weights; a new order sharing a pruned prefix retrains it once."""
    from xstilts.config import parse_config

    def config(explicit):
        return parse_config(
            {
                "encoder": str(tiny_encoder_dir),
                "output_dir": str(tmp_path / "run"),
                "tasks": demo_tasks,
                "keep": "needed",
                "study": {
                    "pool": ["demo_paraphrase", "demo_swag", "demo_pos"],
                    "orders": {"explicit": explicit},
                    "baseline_runs": 1,
                },
                "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
                "training": FAST,
            }
        )

    first = xstilts.run(config([["demo_paraphrase", "demo_swag"], ["demo_paraphrase", "demo_pos"]]), progress=False)
    stages = tmp_path / "run" / "stages"
    records = {p.parent.name: json.loads(p.read_text()) for p in stages.glob("*/stage.json")}
    assert len(records) == 3 + 4, "3 intermediate stages, 4 target fine-tunes (k = 0, 1, 2, 2)"
    assert all(r["pruned"] for r in records.values()) and not list(stages.glob("*/encoder"))
    assert first["bytes_pruned"] > 0
    assert all(
        list((stages / name / "evaluations").glob("*.json")) for name, r in records.items() if r["role"] == "target"
    )

    trained = []
    import xstilts.study.stage as stage

    original = stage.train
    stage.train = lambda model, *a, **k: (trained.append(next(iter(model.specs))), original(model, *a, **k))[1]
    try:
        second = xstilts.run(
            config(
                [
                    ["demo_paraphrase", "demo_swag"],
                    ["demo_paraphrase", "demo_pos"],
                    ["demo_paraphrase", "demo_swag", "demo_pos"],
                ]
            ),
            progress=False,
        )
    finally:
        stage.train = original
    retrained = [name for name in trained if name != "demo_nli"]
    assert retrained == ["demo_paraphrase", "demo_swag", "demo_pos"], (
        "the pruned prefix is retrained once, then the new stage"
    )
    assert trained.count("demo_nli") == 1, "finished targets are read back; only the new prefix's target trains"
    for label, chain in first["chains"].items():
        assert second["chains"][label]["targets"] == chain["targets"], "earlier results are unchanged"


def test_chain_modes_side_by_side_with_latency_in_the_report(tmp_path, tiny_encoder_dir, demo_tasks):
    """full, lora-merged and lora-stacked chains of 2 tasks; targets timed; the report has every mode and the verdicts."""
    from xstilts.config import parse_config
    from xstilts.rundir.layout import LATENCY_FILE

    config = parse_config(
        {
            "encoder": str(tiny_encoder_dir),
            "output_dir": str(tmp_path / "run"),
            "tasks": demo_tasks,
            "study": {
                "pool": ["demo_paraphrase", "demo_pos"],
                "orders": {"explicit": [["demo_paraphrase", "demo_pos"]]},
                "baseline_runs": 1,
            },
            "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
            "training": FAST,
            "chain_modes": ["full", "lora-merged", "lora-stacked"],
            "adapters": {"lora_r": 4},
            "latency": {"batch_sizes": [2], "lengths": [32], "repetitions": 5, "warmup": 1},
        }
    )
    summary = xstilts.run(config, progress=False)
    labels = sorted(summary["chains"])
    assert labels == sorted(
        f"{prefix}k{k}-{name}"
        for prefix in ("", "lora-merged-", "lora-stacked-")
        for k, name in ((0, "pretrained"), (1, "demo_paraphrase"), (2, "demo_paraphrase+demo_pos"))
    )
    stages = [json.loads(p.read_text()) for p in (tmp_path / "run" / "stages").glob("*/stage.json")]
    lora = [s for s in stages if s["mode"] != "full" and s["role"] == "intermediate"]
    assert len(lora) == 4 and all(s["trainable_parameters"] < s["parameters"] / 2 for s in lora)
    assert all(not (tmp_path / "run" / "stages" / f"{s['identity']}-{s['task']}" / "encoder").exists() for s in lora), (
        "adapter stages store only their adapter"
    )

    latency = json.loads((tmp_path / "run" / LATENCY_FILE).read_text())
    assert sorted(g["mode"] for g in latency["groups"]) == ["full", "lora-merged", "lora-stacked"]
    stacked = next(g for g in latency["groups"] if g["mode"] == "lora-stacked")
    assert [m["chain_length"] for m in stacked["models"]] == [0, 1, 2, 0], "k = 0..2 and the k = 0 twin"
    flops = [m["flops_per_token"] for m in stacked["models"][:3]]
    assert flops[0] < flops[1] < flops[2], "each stacked LoRA adds work per token"
    merged = next(g for g in latency["groups"] if g["mode"] == "lora-merged")
    assert len({m["flops_per_token"] for m in merged["models"][:3]}) == 1, "merged LoRAs add nothing"
    report = tmp_path / "run" / "report.md"
    xstilts.write_report(tmp_path / "run")
    text = report.read_text()
    latency_section = text.split("\n## Latency\n")[1].split("\n## ")[0]
    assert "lora-stacked: latency changes by" in latency_section and "[lora-merged]" in text
    assert "Transfer against chain length (test, lora-stacked chains)" in text, "one answer table per chain mode"
    for plot in ("latency_vs_chain_length", "transfer_vs_latency", "gain_vs_chain_length"):
        assert (tmp_path / "run" / f"{plot}.png").is_file() and (tmp_path / "run" / f"{plot}.svg").is_file()
