"""A small study end to end through the statistics: intervals over orders and seeds, order tests, controls,
the report's headline first, intervals in summary.json and results.csv, controls kept out of the averages."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from fast_training import FAST

import xstilts
from xstilts.errors import ConfigError


def study_config(tmp_path, encoder, demo_tasks, **extra):
    config = {
        "name": "orders and seeds",
        "encoder": str(encoder),
        "output_dir": str(tmp_path / "run"),
        "tasks": demo_tasks,
        "study": {
            "pool": ["demo_paraphrase", "demo_swag"],
            "orders": {"explicit": [["demo_paraphrase", "demo_swag"], ["demo_swag", "demo_paraphrase"]]},
            "seeds": [0, 1],
        },
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": FAST,
        "controls": {"a_a": True, "positive": [{"task": "demo_paraphrase", "targets": ["demo_nli"]}]},
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_orders_seeds_and_controls_end_to_end(tmp_path, tiny_encoder_dir, demo_tasks):
    summary = xstilts.run(xstilts.load_config(study_config(tmp_path, tiny_encoder_dir, demo_tasks)), progress=False)
    run = tmp_path / "run"
    found = summary["effects"]["full"]["test"]
    nli = found["targets"]["demo_nli"]
    assert nli["runs"] == {0: 2, 1: 4, 2: 4}, "k = 0 once per seed; two orders x two seeds at k = 1 and 2"
    assert nli["gains"][2]["n"] == 4 and nli["gains"][2]["method"] == "two-level bootstrap (runs, then examples)"
    assert nli["gains"][2]["lower"] <= nli["gains"][2]["estimate"] <= nli["gains"][2]["upper"]
    assert nli["slope"]["method"] == "two-level bootstrap (chains, then examples)" and nli["verdict"].startswith(
        "demo_nli: "
    )
    assert nli["examples"] == {"en": 12, "x-lex": 12}
    assert sorted(t["chains"] for t in found["order_tests"]) == sorted(
        [[f"k2-demo_paraphrase+demo_swag-seed{s}", f"k2-demo_swag+demo_paraphrase-seed{s}"] for s in (0, 1)]
    )
    assert found["comparisons"] == 3, "the slope and the gains at k = 1 and k = 2"
    controls = found["controls"]
    aa = controls["control-aa-k0-pretrained/demo_nli"]
    assert aa["kind"] == "aa" and aa["gain"]["n"] == 1 and aa["seed_sd"] is not None
    assert "between-seed variance" in aa["gain"]["method"], "two single runs: the seed noise is part of the interval"
    positive = controls["control-positive-k1-demo_paraphrase/demo_nli"]
    assert positive["chain"] == ["demo_paraphrase"] and positive["passed"] in (True, False)
    # Controls never enter the study's aggregation.
    assert not any(label.startswith("control-") for label in summary["chains"])

    text = xstilts.write_report(run).read_text()
    assert text.index("## Transfer against chain length (test)") < text.index("## Score against chain length")
    assert "| target | k = 1 vs 0 | k = 2 vs 1 |" in text, "diminishing returns: each chain against its prefix"
    for heading in ("Controls (known answers)", "Where the variance between runs comes from", "Does the order"):
        assert f"## {heading}" in text
    assert "demo_nli (A/A: k = 0 refitted under another seed): gain" in text
    assert "| 0 | " in text and "(n=2)" in text, "k = 0 is the mean over the two seeds, not the A/A refit too"
    with (run / "results.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["control"] for r in rows} == {"", "aa", "positive"}
    for row in rows:
        assert float(row["score_lower"]) <= float(row["score"]) <= float(row["score_upper"])
        assert row["interval_examples"] == "12" and row["interval_method"] == "paired bootstrap over examples"
        assert (row["gain_over_k0"] == "") == (row["chain_length"] == "0" and row["control"] == "")
    stored = json.loads((run / "results.json").read_text())
    assert all("path" not in r.get("units", {}) for r in stored), "no machine-specific paths in results.json"


def test_control_config_errors(tmp_path, tiny_encoder_dir, demo_tasks):
    bad = study_config(
        tmp_path,
        tiny_encoder_dir,
        demo_tasks,
        controls={"positive": [{"task": "demo_nli_typo", "targets": ["demo_ner"]}]},
    )
    with pytest.raises(ConfigError) as raised:
        xstilts.load_config(bad)
    message = str(raised.value)
    assert "controls.positive[0].task" in message and "controls.positive[0].targets[0]" in message
    assert "demo_ner" in message


def test_best_length_lines_say_which_rule_kept_a_gain_out():
    from xstilts.analysis.headline import _best_lines

    def gain(lower, holm_p):
        return {"estimate": 2.0, "lower": lower, "upper": 4.0, "n": 6, "holm_p": holm_p}

    found = {
        "targets": {
            "a": {"gains": {"1": gain(0.5, 0.01)}},
            "b": {"gains": {"1": gain(0.5, 0.20)}},
            "c": {"gains": {"1": gain(-0.5, 0.60)}},
        }
    }
    a, b, c = _best_lines(found, {"a": 1, "b": 1, "c": 1})
    assert a == "a: k = 1 (test gain +2.0 [+0.5, +4.0])"
    assert b.startswith("b: none beats k = 0 after Holm's correction") and "Holm-adjusted p = 0.20" in b
    assert c == "c: none beats k = 0 beyond its interval (dev chooses k = 1; test gain +2.0 [-0.5, +4.0])"
