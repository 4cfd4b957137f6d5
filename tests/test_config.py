"""Config validation: every problem reported at once, as `file:line: key.path: message`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xstilts.config import load_config
from xstilts.errors import ConfigError
from xstilts.settings import TrainingSettings, count_steps, resolve_settings


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def valid_yaml(tmp_path: Path, tiny_encoder_dir: Path, demo_tasks: dict) -> str:
    nli, para = demo_tasks["demo_nli"], demo_tasks["demo_paraphrase"]
    return f"""\
        encoder: {tiny_encoder_dir}
        output_dir: {tmp_path / "out"}
        tasks:
          demo_nli:
            kind: classification
            labels: {nli["labels"]}
            languages: {nli["languages"]}
            data_dir: {nli["data_dir"]}
          demo_paraphrase:
            kind: classification
            labels: {para["labels"]}
            languages: [en]
            data_dir: {para["data_dir"]}
        chain: [demo_paraphrase]
        targets:
          - task: demo_nli
            languages: [en, x-lex]
        training:
          learning_rate: 0.001
        """


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_valid_config_loads_with_shorthand_chain(tmp_path, valid_yaml):
    config = load_config(write_config(tmp_path, valid_yaml))
    assert [stage.task for stage in config.chain] == ["demo_paraphrase"]
    assert config.targets[0].languages == ["en", "x-lex"]
    assert config.training.learning_rate == 0.001
    assert "demo_nli" in config.registry().names()


def test_unknown_key_names_file_line_and_key_path(tmp_path, valid_yaml):
    path = write_config(tmp_path, valid_yaml.replace("learning_rate: 0.001", "lerning_rate: 0.001"))
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{path}:19: training.lerning_rate: unknown key (did you mean 'learning_rate'?); expected one of: learning_rate, weight_decay"
    )


def test_wrong_type_names_the_value(tmp_path, valid_yaml):
    path = write_config(tmp_path, valid_yaml + "seed: abc\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:20: seed: Input should be a valid integer")
    assert "(got 'abc')" in problem


def test_unknown_task_suggests_the_closest_name(tmp_path, valid_yaml):
    path = write_config(tmp_path, valid_yaml.replace("chain: [demo_paraphrase]", "chain: [demo_paraphrse]"))
    (problem,) = problems_of(path)
    assert problem.startswith(
        f"{path}:14: chain[0].task: unknown task 'demo_paraphrse' (did you mean 'demo_paraphrase'?)"
    )


def test_unknown_language_and_missing_encoder_are_reported_together(tmp_path, valid_yaml, tiny_encoder_dir):
    text = valid_yaml.replace("languages: [en, x-lex]", "languages: [en, xx]").replace(
        str(tiny_encoder_dir), "./no/such/encoder"
    )
    problems = problems_of(write_config(tmp_path, text))
    assert len(problems) == 2
    # a relative path starts from the config file's directory, and the error shows where it looked
    assert any(f": encoder: directory not found: {tmp_path / 'no/such/encoder'}" in p for p in problems), problems
    assert any(":17: targets[0].languages[1]: unknown language for task demo_nli 'xx'" in p for p in problems)


def test_missing_data_file_is_named(tmp_path, valid_yaml, demo_tasks):
    data_dir = tmp_path / "nli-copy"
    data_dir.mkdir()
    for name in ("train-en.jsonl", "dev-en.jsonl", "test-en.jsonl"):
        (data_dir / name).write_bytes((Path(demo_tasks["demo_nli"]["data_dir"]) / name).read_bytes())
    path = write_config(tmp_path, valid_yaml.replace(demo_tasks["demo_nli"]["data_dir"], str(data_dir)))
    (problem,) = problems_of(path)
    assert problem.endswith(f"targets[0].languages: demo_nli: data file not found: {data_dir / 'test-x-lex.jsonl'}")


def test_missing_required_key_and_bad_yaml(tmp_path):
    path = write_config(tmp_path, "encoder: x\ntargets: [a]\n")
    (problem,) = problems_of(path)
    assert problem == f"{path}:1: output_dir: required key is missing"
    bad = write_config(tmp_path, "encoder: x\n  targets: [\n")
    (problem,) = problems_of(bad)
    assert problem.startswith(f"{bad}:2: invalid YAML")


def test_rules_across_settings_layers_are_checked(tmp_path, valid_yaml):
    path = write_config(tmp_path, valid_yaml + "  micro_batch_size: 5\n")
    assert problems_of(path) == [
        f"{path}:18: training: Value error, batch_size (32) must be a multiple of micro_batch_size (5)"
    ]
    # A stage's own block is checked merged with the shared block and the kind's defaults.
    text = valid_yaml.replace(
        "chain: [demo_paraphrase]", "chain: [{task: demo_paraphrase, training: {micro_batch_size: 5}}]"
    )
    path = write_config(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:14: chain[0].training: Value error, batch_size (32) must be a multiple of micro_batch_size (5)"
    ]


def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, valid_yaml):
    path = write_config(tmp_path, valid_yaml.replace("chain: [demo_paraphrase]", "chain: [nope]"))
    result = subprocess.run(
        [sys.executable, "-m", "xstilts", "run", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:14: chain[0].task: unknown task 'nope'")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_settings_layers_and_derived_steps():
    settings = resolve_settings("qa", {"epochs": 2}, {"learning_rate": 3e-5}, None)
    assert (settings.batch_size, settings.max_length, settings.doc_stride, settings.epochs, settings.learning_rate) == (
        16,
        384,
        128,
        2,
        3e-5,
    )
    plan = count_steps(TrainingSettings(batch_size=32, micro_batch_size=8, epochs=2), num_train_features=100)
    assert (
        plan.accumulation_steps,
        plan.micro_batches_per_epoch,
        plan.steps_per_epoch,
        plan.total_steps,
        plan.warmup_steps,
    ) == (4, 13, 4, 8, 0)
    assert count_steps(TrainingSettings(max_steps=7), 10_000).total_steps == 7
    with pytest.raises(ValueError, match=r"doc_stride \(64\) must be smaller than max_length \(64\) for QA windows"):
        resolve_settings("qa", {"max_length": 64, "doc_stride": 64})
    assert resolve_settings("tagging", {"max_length": 64}).max_length == 64, "the stride matters for QA only"
