"""Every shipped config is valid against the schema (its data and the hub model are not needed here)."""

from __future__ import annotations

from pathlib import Path

from xstilts.config import load_config
from xstilts.tasks import default_registry

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPOSITORY / "configs").rglob("*.yaml"))


def test_all_shipped_configs_parse_and_name_known_tasks():
    assert len(CONFIGS) == 2, [str(p) for p in CONFIGS]
    registry = default_registry()
    for path in CONFIGS:
        config = load_config(path, require_data=False)
        # relative paths start from the config file: these point at the repository's data/ and runs/
        assert config.data_dir == REPOSITORY / "data" and REPOSITORY / "runs" in config.output_dir.parents, path
        tasks = (
            [stage.task for stage in config.chain if stage.task not in config.mixtures]
            + [m.task for mix in config.mixtures.values() for m in mix.tasks]
            + [t.task for t in config.targets]
            + [task for task in (config.study.pool if config.study else []) if task not in config.mixtures]
        )
        assert all(task in registry for task in tasks), path
        assert [t.task for t in config.targets] == [
            "xnli",
            "pawsx",
            "udpos",
            "panx",
            "xquad",
            "mlqa",
            "tydiqa",
            "bucc2018",
            "tatoeba",
        ], path


def test_the_paper_config_trains_each_task_once_and_the_baseline_under_three_seeds(capsys):
    """The paper in one study: nine singles and the all-nine mixture; k = 0 fine-tuned under three seeds
    (study.baseline_runs), so that its own training noise enters every gain's interval."""
    from xstilts.cli import main

    paper = next(p for p in CONFIGS if p.parent.name == "paper")
    assert main(["plan", str(paper)]) == 0
    counts = dict(
        line.rsplit(None, 1)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("chains ", "stages to train ", "prefixes evaluated ", "target fine-tunes "))
    )
    assert {key.strip(): value for key, value in counts.items()} == {
        "chains": "10",
        "stages to train": "10",
        "prefixes evaluated": "13",  # 10 intermediate models, k = 0 under three seeds
        "target fine-tunes": str(13 * 7),  # bucc2018 and tatoeba are retrieval: not fine-tuned
    }


NINE = "anli_plus, mnli, qqp, squad_v1, squad_v2, hellaswag, cosmosqa, commonsenseqa, ccg"


def test_the_paper_config_asks_for_merges_of_the_nine_tasks_with_one_override(capsys):
    """configs/paper/README.md: merges of the nine single-task stages beside the all-nine mixture; the merges
    reuse the singles (no stage is added) and are counted apart from trained stages."""
    from xstilts.cli import main

    paper = next(p for p in CONFIGS if p.parent.name == "paper")
    override = f"study.combine={{sets: [[{NINE}]], mixture: false}}"
    assert main(["plan", str(paper), override]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = {key.strip(): value for key, value in (line.rsplit(None, 1) for line in lines if "  " in line.strip())}
    assert counts["stages to train"] == "10" and counts["target fine-tunes"] == str(13 * 7)
    # task arithmetic at 2 weights, TIES and DARE-TIES at 2 weights x 2 densities (the defaults)
    assert counts["merges to build"] == "10" and counts["combination stages to train"] == "0"
    assert counts["target fine-tunes on merges and mixtures"] == str(10 * 7)
