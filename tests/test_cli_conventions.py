"""Running xstilts like the tools researchers already use: logs, overrides, options, config-relative paths."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import yaml

from xstilts import __version__
from xstilts.cli import app, main
from xstilts.config import load_config
from xstilts.logs import LOGGER_NAME, ProgressLines, duration, progress_bar, run_log, setup_logging


def write_config(directory: Path, encoder: Path, demo_tasks: dict, **extra) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "encoder": str(encoder),
        "output_dir": "run",
        "tasks": {"demo_nli": demo_tasks["demo_nli"], "demo_paraphrase": demo_tasks["demo_paraphrase"]},
        "chain": ["demo_paraphrase"],
        "targets": ["demo_nli"],
        **extra,
    }
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# ---- command line


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xstilts {__version__}"


def test_every_command_has_an_example_and_no_bool_metavar(capsys):
    """Flags read as flags (no `--quiet <bool>`), choices are listed, and every help shows how to call it."""
    commands = [c.name or c.callback.__name__ for c in app.registered_commands] + ["data prepare", "data check"]
    assert {"run", "plan", "demo", "report", "status", "latency", "score", "data prepare"} <= set(commands)
    for command in commands:
        assert main([*command.split(), "--help"]) == 0
        text = capsys.readouterr().out
        assert "Example" in text and f"xstilts {command.split()[0]}" in text.split("Example")[1], command
        assert "<bool>" not in text, command
    main(["run", "--help"])
    text = capsys.readouterr().out
    assert "<local|ray>" in text and "<debug|info|warning|error>" in text and "-o, --output-dir" in text


def test_one_option_name_per_idea():
    """Every command that writes a directory takes it as --output-dir / -o."""
    import click
    import typer.main

    group = typer.main.get_command(app)

    def options(command: click.Command) -> set[str]:
        return {name for param in command.params for name in getattr(param, "opts", [])}

    writers = [group.commands[name] for name in ("run", "plan", "demo", "report", "export-predictions")]
    writers.append(group.commands["data"].commands["prepare"])
    for command in writers:
        assert {"--output-dir", "-o"} <= options(command), command.name
    all_options = set().union(*(options(c) for c in group.commands.values() if not isinstance(c, click.Group)))
    assert "--out" not in all_options and "--output" not in all_options


def test_overrides_are_validated_like_the_file(tmp_path, tiny_encoder_dir, demo_tasks, monkeypatch):
    study = {"pool": ["demo_paraphrase"], "orders": {"singles": True}}
    path = write_config(tmp_path / "configs", tiny_encoder_dir, demo_tasks, chain=[], study=study)
    monkeypatch.chdir(tmp_path)
    config = load_config(
        path,
        overrides=["training.learning_rate=2e-5", "targets.0.languages=[en, x-lex]", "output_dir=elsewhere/x"],
        seed=3,
    )
    assert config.training.learning_rate == 2e-5 and config.targets[0].languages == ["en", "x-lex"]
    assert config.output_dir == tmp_path / "elsewhere" / "x", "an override's path starts from the working directory"
    assert config.study.seeds == [3], "--seed of a study sets its seeds"
    assert load_config(write_config(tmp_path / "plain", tiny_encoder_dir, demo_tasks), seed=7).seed == 7

    for override, message in [
        ("training.learnin_rate=2e-5", "override training.learnin_rate=2e-5: training.learnin_rate: unknown key"),
        ("training.learning_rate=-1", "override training.learning_rate=-1: training.learning_rate:"),
        ("learning_rate", "override 'learning_rate': expected KEY.PATH=VALUE"),
        ("targets.5.task=xnli", "override targets.5.task=xnli: targets[5]: no such item (a list is indexed 0..0)"),
        ("training=[1", "override training=[1: the value is not valid YAML"),
    ]:
        with pytest.raises(Exception) as caught:
            load_config(path, overrides=[override])
        assert message in str(caught.value), (override, str(caught.value))


def test_cli_override_errors_exit_2_and_write_nothing(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    path = write_config(tmp_path, tiny_encoder_dir, demo_tasks)
    assert main(["run", str(path), "training.epochs=.inf", "-o", str(tmp_path / "out")]) == 2
    assert "override training.epochs=.inf: training.epochs:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["plan", str(path), "chain=[demo_nli]", "-o", str(tmp_path / "out")]) == 0
    assert "demo_nli" in capsys.readouterr().out


def test_relative_paths_start_from_the_config_file(tmp_path, tiny_encoder_dir, demo_tasks, monkeypatch, caplog):
    task_dir = tmp_path / "study" / "data" / "nli"
    task_dir.mkdir(parents=True)
    for file in Path(demo_tasks["demo_nli"]["data_dir"]).iterdir():
        (task_dir / file.name).write_bytes(file.read_bytes())
    tasks = {**demo_tasks, "demo_nli": {**demo_tasks["demo_nli"], "data_dir": "data/nli"}}
    path = write_config(tmp_path / "study", tiny_encoder_dir, tasks)
    monkeypatch.chdir(tmp_path)  # not the config's directory
    config = load_config(path)
    assert config.output_dir == tmp_path / "study" / "run" and config.tasks["demo_nli"].data_dir == task_dir

    # A config written for the old rule (relative to the working directory) still finds its inputs, and says so.
    tasks["demo_nli"]["data_dir"] = "study/data/nli"
    legacy = write_config(tmp_path / "study" / "old", tiny_encoder_dir, tasks)
    with caplog.at_level(logging.WARNING, logger="xstilts"):
        assert load_config(legacy).tasks["demo_nli"].data_dir == task_dir
    assert "relative to the working directory; using it" in caplog.text and "write ../data/nli" in caplog.text


def test_data_prepare_takes_output_dir(tmp_path, capsys):
    assert main(["data", "prepare", "--tasks", "xnli", "--out", str(tmp_path)]) == 2
    assert "No such option: --out" in capsys.readouterr().err


# ---- logging


def test_progress_lines_are_throttled_but_never_silent():
    now = [0.0]
    lines = ProgressLines("stage 1/2 x", total=100, clock=lambda: now[0])
    now[0] = 5.0
    assert not lines.due(20, at_interval=True), "an interval 5 s after the last line waits"
    now[0] = 12.0
    assert lines.due(40, at_interval=True)
    assert lines.line(40, "loss 1.0000") == "stage 1/2 x: step 40/100 loss 1.0000, 12s, ETA 18s"
    now[0] = 30.0
    assert not lines.due(41, at_interval=False)
    now[0] = 42.5
    assert lines.due(43, at_interval=False), "30 s without a line: one is due even between intervals"
    assert lines.due(100, at_interval=False) and "ETA" not in lines.line(100, "done"), "the last step always"
    assert [duration(s) for s in (4.4, 65, 3 * 3600 + 7 * 60 + 5)] == ["4s", "1m05s", "3h07m"]


def test_bars_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_bar(True, total=3, file=io.StringIO()).disable, "not a terminal: no bar"
    assert not progress_bar(True, total=3, file=Terminal()).disable
    assert progress_bar(False, total=3, file=Terminal()).disable


def test_levels_and_the_run_log(tmp_path, capsys):
    setup_logging("warning")
    logger = logging.getLogger(f"{LOGGER_NAME}.test")
    with run_log(tmp_path) as path:
        logger.info("training step 1")
        logger.warning("something odd")
        logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
    logger.info("after the run")
    err = capsys.readouterr().err
    assert "something odd" in err and "training step 1" not in err, "-q: the console shows warnings only"
    text = path.read_text()
    assert "INFO xstilts.test: training step 1" in text and "WARNING xstilts.test: something odd" in text
    assert "fontManager" not in text and "after the run" not in text
    assert logging.getLogger("matplotlib").getEffectiveLevel() == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        setup_logging("loud")
    setup_logging("info")
    assert main(["run", "nothing.yaml", "-v", "-q"]) == 2
    assert "--verbose/--quiet: give one of them, not both" in capsys.readouterr().err
