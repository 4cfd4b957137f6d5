"""A search's edges: what it cannot rank is refused before anything trains, its budget counts stages as the plan
does (every seed and chain mode), and its test regret is zero-shot whatever rule chose on dev."""

from __future__ import annotations

import pytest
import yaml
from test_search import search_config

from xstilts.cli import main
from xstilts.config import ConfigError, parse_config
from xstilts.results.search import dev_scores


@pytest.mark.parametrize("target", ["tatoeba", "tydiqa"])
def test_a_dev_guided_search_without_a_target_that_may_choose_on_dev_is_refused(
    target, tmp_path, tiny_encoder_dir, demo_tasks
):
    """Tatoeba has no dev split, TyDiQA-GoldP's dev is its test: a dev-guided search would rank nothing and end at
    the pretrained encoder; it is refused when the config is checked."""
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, targets=[target], strategy="greedy")
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert "study.search.guide: guide: dev ranks chains by the targets' dev scores, but none of" in str(error.value)
    raw["targets"] = [target, {"task": "demo_nli", "languages": ["en"]}]
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    assert "guide: dev ranks chains" not in str(error.value), "one target that may choose is enough"


def test_the_budget_counts_stages_of_every_seed_and_mode_as_the_plan_does(
    tmp_path, tiny_encoder_dir, demo_tasks, capsys
):
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, seeds=(0, 1), strategy="greedy")
    raw["chain_modes"] = ["full", "lora-merged"]
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stages to train, at most                20  (every seed and chain mode: 4 per prefix)" in out
    assert "stages of the exhaustive study           36" in out
    assert "on the targets' mean dev score" in out
    raw["study"]["search"] = {"strategy": "greedy", "budget": 3}
    with pytest.raises(ConfigError, match=r"budget: 3 stages pay for no prefix \(each costs 4"):
        parse_config(raw)
    raw["study"]["search"] = {"strategy": "greedy", "budget": 12, "guide": "estimate"}
    raw["diagnostics"] = {"estimators": ["knn"]}
    path.write_text(yaml.safe_dump(raw))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stages to train, at most                12" in out, "3 prefixes of 4 stages"
    assert "by the diagnostics' transfer estimate" in out and "on the targets' mean dev score" not in out


def test_with_dev_en_the_test_regret_is_still_zero_shot(tmp_path, tiny_encoder_dir, demo_tasks):
    """dev-en chooses on English dev; the regret it is judged by is on test in every language."""
    raw = search_config(tmp_path, tiny_encoder_dir, demo_tasks, strategy="greedy")
    raw["selection"] = "dev-en"
    config = parse_config(raw)

    def row(split, language, score):
        return {
            "chain": ["task1"],
            "chain_length": 1,
            "chain_label": "k1-task1",
            "mode": "full",
            "seed": 0,
            "target": "demo_nli",
            "language": language,
            "split": split,
            "metric": "accuracy",
            "metrics": {"accuracy": score},
            "score": score,
        }

    rows = [row("dev", "en", 80.0), row("dev", "x-lex", 40.0), row("test", "en", 70.0), row("test", "x-lex", 30.0)]
    assert dev_scores(rows, config)[("task1",)] == 80.0, "dev-en: English dev only"
    assert dev_scores(rows, config, "test")[("task1",)] == 50.0, "test: every language"
