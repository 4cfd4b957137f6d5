"""The command line as its neighbours behave (git, pip, torchrun, transformers-cli): help from `-h` and from the bare
command, one wording for every error, and messages that name what is actually wrong with a path or a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from xstilts.cli import main

REPOSITORY = Path(__file__).resolve().parents[1]
STUDY = REPOSITORY / "configs" / "scaling" / "xlmr-large-9-tasks-3-orders.yaml"


@pytest.mark.parametrize("argv", [["-h"], ["--help"], [], ["data"], ["data", "-h"], ["run", "-h"]])
def test_help_from_h_and_from_the_bare_command_exits_0(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith("Usage: xstilts") and "error" not in out.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--no-such-option"], "error: No such option: --no-such-option"),
        (["status"], "error: Missing argument 'RUN_DIR'."),
        (["frobnicate"], "error: No such command 'frobnicate'."),
    ],
)
def test_usage_errors_are_worded_like_every_other_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Error:" not in err, err
    assert "Try 'xstilts" in err


@pytest.mark.parametrize("command", [["status"], ["report"], ["latency"], ["export-predictions", "-o", "out"]])
def test_run_dir_arguments_say_whether_the_path_is_missing_or_a_file(command, tmp_path, capsys):
    missing, a_file = tmp_path / "nowhere", tmp_path / "notes.txt"
    a_file.write_text("not a run", encoding="utf-8")
    assert main([command[0], str(missing), *command[1:]]) == 2
    assert f"{missing}: no such directory" in capsys.readouterr().err
    assert main([command[0], str(a_file), *command[1:]]) == 2
    assert f"{a_file}: is a file, not a run directory" in capsys.readouterr().err


def test_export_names_a_missing_run_directory_not_a_missing_target(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert (
        main(["export", str(missing), "--chain", "k0-pretrained", "--target", "xnli", "-o", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert f"{missing}: no such directory" in err and "fine-tuned target" not in err


def test_plan_on_a_directory_says_it_is_a_directory(tmp_path, capsys):
    assert main(["plan", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory; expected an experiment YAML file" in capsys.readouterr().err


def test_data_check_refuses_what_it_cannot_check(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path)]) == 2, "an empty directory is not 0 problems"
    assert "holds no file that belongs to a known task layout" in capsys.readouterr().err
    (tmp_path / "random.bin").write_bytes(b"\x00\x01")
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "none of its 1 files belongs to a known task layout" in capsys.readouterr().err


def test_data_prepare_from_a_missing_directory_is_an_error(tmp_path, capsys):
    argv = ["data", "prepare", "--tasks", "xnli", "-o", str(tmp_path / "out"), "--from", str(tmp_path / "nowhere")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: --from: {tmp_path / 'nowhere'}: no such directory")
    assert not (tmp_path / "out").exists(), "nothing is written"


def test_an_override_that_would_change_nothing_is_an_error_naming_the_key_to_set(capsys):
    assert main(["plan", str(STUDY), "seed=3"]) == 2
    err = capsys.readouterr().err
    assert "override seed=3: seed: a study takes its seeds from study.seeds" in err
    assert "set study.seeds: [3]" in err
    assert main(["plan", str(STUDY), "--seed", "3"]) == 0, "--seed sets a study's seeds"


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [("training.learnin_rate=2e-5", "learning_rate"), ("traning.epochs=2", "training"), ("study.sedes=[1]", "seeds")],
)
def test_misspelt_override_keys_get_a_suggestion(override, suggestion, capsys):
    assert main(["plan", str(STUDY), override]) == 2
    assert f"unknown key (did you mean {suggestion!r}?)" in capsys.readouterr().err


def test_config_prints_the_resolved_config_that_a_run_would_use(tmp_path, capsys):
    assert main(["config", str(STUDY), "training.learning_rate=2e-5", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(printed, encoding="utf-8")
    from xstilts.config import load_config

    again = load_config(resolved, require_data=False)
    original = load_config(STUDY, require_data=False, overrides=["training.learning_rate=2e-5"], seed=3)
    assert again == original, "the printed config loads back to the same config"
    assert again.training.learning_rate == 2e-5 and again.study.seeds == [3]
    assert "seed:" not in printed.split("study:")[0], "a study's seeds are study.seeds only"


def test_env_names_versions_devices_and_caches(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XSTILTS_CACHE", str(tmp_path / "cache"))
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "xstilts ",
        "python ",
        "torch ",
        "transformers ",
        f"xstilts cache: {tmp_path / 'cache'}",
        "CPU cores",
    ):
        assert expected in out, expected


def test_an_offline_machine_asked_for_a_model_it_does_not_have_writes_nothing(tmp_path, demo_tasks):
    import os
    import subprocess
    import sys

    import yaml

    config = {
        "encoder": "no-such-org/surely-not-cached-encoder",
        "output_dir": str(tmp_path / "run"),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": ["demo_paraphrase"],
        "targets": ["demo_nli"],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "xstilts", "run", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "no-such-org/surely-not-cached-encoder: cannot load the encoder's config" in result.stderr
    assert "the machine is offline (HF_HUB_OFFLINE)" in result.stderr
    assert not (tmp_path / "run").exists(), "nothing is written"
