"""Every shipped config is valid against the schema (its data and the hub model are not needed here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from xstilts.config import ExperimentConfig
from xstilts.tasks import default_registry

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_all_shipped_configs_parse_and_name_known_tasks():
    assert len(CONFIGS) == 11, [str(p) for p in CONFIGS]
    registry = default_registry()
    for path in CONFIGS:
        config = ExperimentConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        tasks = (
            [stage.task for stage in config.chain if stage.task not in config.mixtures]
            + [m.task for mix in config.mixtures.values() for m in mix.tasks]
            + [t.task for t in config.targets]
            + (config.study.pool if config.study else [])
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
