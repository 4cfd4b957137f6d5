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
    assert nli["runs"] == {0: 3, 1: 4, 2: 4}, "k = 0 under three seeds; two orders x two seeds at k = 1 and 2"
    gain = nli["gains"][2]
    assert gain["n"] == 4 + 3 and gain["method"] == "t interval, runs and test items"
    assert gain["includes"] == "training and test sample" and gain["leaves_out"] is None
    assert gain["lower"] <= gain["estimate"] <= gain["upper"] and gain["se"] >= 0
    # tiny models may agree under every seed: df None is then the normal quantile (see test_statistics)
    assert gain["df"] is None or gain["df"] > 0
    assert nli["further"]["estimate"] == pytest.approx(nli["steps"][2]["estimate"]), "K = 2: the one further step"
    assert nli["verdict"].startswith("demo_nli: first task ") and "each further task" in nli["verdict"]
    assert nli["examples"] == {"en": 12, "x-lex": 12} and nli["parallel"] is True
    # the same agreement makes the gain's se, and so the detectable gain, exactly 0 (seen on CI's CPU)
    assert nli["detectable"]["first"] >= 0 and nli["detectable"]["alpha"] == pytest.approx(0.05 / 2)
    assert (nli["detectable"]["first"] == 0) == (nli["gains"][1]["se"] == 0)
    (order_test,) = found["order_tests"]["tests"]
    assert sorted(order_test["chains"]) == ["demo_paraphrase+demo_swag", "demo_swag+demo_paraphrase"]
    assert order_test["runs"] == [2, 2] and 0 <= order_test["p_value"] <= 1, "two orders, each under two seeds"
    assert found["comparisons"] == 2, "the first task and each further task"
    controls = found["controls"]
    aa = controls["aa/demo_nli"]
    assert aa["kind"] == "aa" and len(aa["labels"]) == 3 and aa["gain"]["n"] == 3 + 3, "k = 0's three seeds + 1000"
    assert aa["gain"]["method"] == gain["method"], "the A/A runs go through the machinery of the study's gains"
    assert aa["passed"] in (True, False) and aa["family"] == 1
    positive = controls["positive-demo_paraphrase/demo_nli"]
    assert positive["chain"] == ["demo_paraphrase"] and positive["passed"] in (True, False)
    # Controls never enter the study's aggregation.
    assert not any(label.startswith("control-") for label in summary["chains"])

    text = xstilts.write_report(run).read_text()
    assert text.index("## Transfer against chain length (test)") < text.index("## Score against chain length")
    assert "| target | k = 1 vs 0 | k = 2 vs 1 |" in text, "diminishing returns: each chain against its prefix"
    for heading in ("Controls (known answers)", "Where the variance between runs comes from", "Does the order"):
        assert f"## {heading}" in text
    assert "demo_nli (A/A: k = 0 refitted under other seeds, 3 runs): gain" in text
    assert "| 0 | " in text and "(n=3)" in text, "k = 0 is the mean over its three seeds, not the A/A refits too"
    with (run / "results.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["control"] for r in rows} == {"", "aa", "positive"}
    for row in rows:
        assert float(row["score_lower"]) <= float(row["score"]) <= float(row["score_upper"])
        assert row["interval_examples"] == "12" and row["interval_method"] == "bootstrap over test items (one run)"
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

    def gain(lower, p, includes="training and test sample"):
        return {"estimate": 2.0, "lower": lower, "upper": 4.0, "n": 6, "p_value": p, "includes": includes}

    found = {
        "targets": {
            "a": {"gains": {"1": gain(0.5, 0.001)}},
            "b": {"gains": {"1": gain(0.5, 0.04)}},
            "c": {"gains": {"1": gain(-0.5, 0.30)}},
            "d": {"gains": {"1": gain(0.5, 0.001, "test sample only")}},
            "e": {"gains": {"2": gain(0.5, 0.0)}},
        }
    }
    a, b, c, d, e = _best_lines(found, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 2})
    assert a == "a: k = 1 (test gain +2.0 [+0.5, +4.0])"
    assert b.startswith("b: none beats k = 0 after Holm's correction over the 4 chosen gains")
    assert "Holm-adjusted p = 0.08" in b, "p = 0.04 is the third smallest of four: x 2"
    assert c == "c: none beats k = 0 beyond its interval (dev chooses k = 1; test gain +2.0 [-0.5, +4.0])"
    assert d.startswith("d: no verdict (dev chooses k = 1"), "a test-sample-only interval carries no verdict"
    assert e == "e: k = 2 (test gain +2.0 [+0.5, +4.0])", "p = 0 (underflow) is the strongest evidence, not p = 1"
