"""The second fault kit, class by class: symbolic links in a run or the cache, damaged and hostile files in the
feature cache and in weight files, headers that claim more than the machine has, names at the limits of file
systems, read-side commands interrupted or run at once, and folders a command did not create."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fast_training import FAST
from safetensors.numpy import save_file

import xstilts
from xstilts.cli import main
from xstilts.config import load_config
from xstilts.data.cache import cached, encode_features
from xstilts.errors import ConfigError, DataError, XstiltsError
from xstilts.files import read_npy
from xstilts.rundir.layout import MAX_FOLDER_NAME, check_contained, folder_name
from xstilts.rundir.runs import RunDirectory


def config_file(directory: Path, encoder: Path, demo_tasks: dict, output_dir: Path, **extra) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "encoder": str(encoder),
        "output_dir": str(output_dir),
        "tasks": {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")},
        "chain": ["demo_paraphrase"],
        "targets": [{"task": "demo_nli", "languages": ["en", "x-lex"]}],
        "training": FAST,
        **extra,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- symbolic links ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["stages", "results/k1-a/t/test-en.json", "report.md", "deep/er/link"])
def test_a_link_leading_out_of_a_run_is_refused_naming_it(tmp_path, where, capsys):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the run's\n")
    link = run / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside if where in ("stages", "deep/er/link") else outside / "secret.txt")
    with pytest.raises(XstiltsError, match="is a symbolic link to .*outside the run directory") as error:
        check_contained(run)
    assert str(link) in str(error.value)
    assert main(["report", str(run)]) == 2 and "symbolic link" in capsys.readouterr().err, "report checks first"
    assert (outside / "secret.txt").read_text() == "not the run's\n" and [p.name for p in outside.iterdir()] == [
        "secret.txt"
    ]


def test_links_inside_a_run_and_a_linked_run_directory_are_fine(tmp_path):
    run = tmp_path / "run"
    (run / "stages" / "abc-task").mkdir(parents=True)
    (run / "by-chain" / "k1-a").mkdir(parents=True)
    (run / "by-chain" / "k1-a" / "t").symlink_to("../../stages/abc-task", target_is_directory=True)
    (run / "dangling").symlink_to("stages/gone")  # inside, though missing: harmless
    check_contained(run)
    alias = tmp_path / "alias"
    alias.symlink_to(run, target_is_directory=True)
    check_contained(alias)


def test_run_refuses_a_link_out_of_its_directory_before_writing(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    outside = tmp_path / "bigger-disk"
    outside.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "stages").symlink_to(outside, target_is_directory=True)
    path = config_file(tmp_path / "cfg", tiny_encoder_dir, demo_tasks, run)
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'stages'} is a symbolic link to {outside}" in err and "move the whole run directory" in err
    assert sorted(p.name for p in run.iterdir()) == ["stages"] and not any(outside.iterdir()), "nothing written"


def test_links_in_the_feature_cache_are_not_followed(tmp_path, caplog):
    root = tmp_path / "cache"
    features = [{"input_ids": np.array([0, 5, 2]), "label": 1}]
    cached({"k": 1}, lambda: features, root)
    (entry,) = (root / "features").glob("*.safetensors")
    victim = tmp_path / "victim.safetensors"
    save_file(encode_features([{"input_ids": np.array([9, 9]), "label": 0}]), str(victim))
    kept = victim.read_bytes()
    entry.unlink()
    entry.symlink_to(victim)
    with caplog.at_level(logging.WARNING):
        found = cached({"k": 1}, lambda: features, root)
    assert [f["input_ids"].tolist() for f in found] == [[0, 5, 2]], "built again, not read through the link"
    assert "is a symbolic link" in caplog.text and str(entry) in caplog.text
    assert entry.is_file() and not entry.is_symlink() and victim.read_bytes() == kept, (
        "the link replaced, not its target"
    )


def test_a_linked_demo_encoder_in_the_cache_is_built_again(tmp_path, caplog):
    from xstilts.demo import pretrain

    settings = pretrain.PretrainSettings(
        sentences_per_language=60,
        vocab_size=120,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        intermediate_size=32,
        max_positions=64,
        steps=2,
        batch_size=4,
    )
    first = pretrain.pretrain_encoder(settings, cache_dir=tmp_path / "cache", progress=False)
    elsewhere = tmp_path / "elsewhere"
    first.rename(elsewhere)
    first.symlink_to(elsewhere, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        again = pretrain.pretrain_encoder(settings, cache_dir=tmp_path / "cache", progress=False)
    assert again == first and again.is_dir() and not again.is_symlink() and "symbolic link" in caplog.text
    assert (elsewhere / "pretraining.json").is_file(), "what the link pointed to is left alone"


# --- damaged and hostile files in the feature cache ---------------------------------------------------------


def _header_claiming(size: int) -> bytes:
    return struct.pack("<Q", size) + b'{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}'


def _valid(arrays: dict) -> dict:
    return {key: np.asarray(value) for key, value in arrays.items()}


HOSTILE_ENTRIES = {
    "empty file": b"",
    "random bytes": bytes(range(256)) * 4,
    "header of 2^50 bytes": _header_claiming(2**50),
    "header past the end": _header_claiming(10_000),
    "a billion features": _valid({"__count__": [10**9], "label.scalar": [1]}),
    "lengths past the values": _valid(
        {"__count__": [1], "input_ids.lengths": [10**12], "input_ids.values": [1, 2], "label.scalar": [1]}
    ),
    "negative lengths": _valid(
        {"__count__": [2], "input_ids.lengths": [-1, 3], "input_ids.values": [1, 2], "label.scalar": [1, 1]}
    ),
    "groups that do not add up": _valid(
        {
            "__count__": [1],
            "input_ids.groups": [5],
            "input_ids.lengths": [1],
            "input_ids.values": [1],
            "label.scalar": [1],
        }
    ),
    "no count": _valid({"label.scalar": [1]}),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ENTRIES))
def test_damaged_or_hostile_cache_entries_are_rebuilt_never_trusted(tmp_path, caplog, kind):
    root = tmp_path / "cache"
    features = [{"input_ids": np.array([0, 5, 2]), "label": 1}, {"input_ids": np.array([0, 7, 8, 2]), "label": 0}]
    cached({"k": kind}, lambda: features, root)
    (entry,) = (root / "features").glob("*.safetensors")
    content = HOSTILE_ENTRIES[kind]
    if isinstance(content, bytes):
        entry.write_bytes(content)
    else:
        save_file(content, str(entry))
    with caplog.at_level(logging.WARNING):
        found = cached({"k": kind}, lambda: features, root)
    assert [f["input_ids"].tolist() for f in found] == [[0, 5, 2], [0, 7, 8, 2]] and [f["label"] for f in found] == [
        1,
        0,
    ]
    assert "is damaged" in caplog.text and str(entry) in caplog.text
    assert [f["label"] for f in cached({"k": kind}, lambda: [], root)] == [1, 0], "the rebuilt entry is read next time"


def test_a_directory_in_place_of_a_cache_entry_is_replaced(tmp_path, caplog):
    root = tmp_path / "cache"
    features = [{"input_ids": np.array([0, 5, 2]), "label": 1}]
    cached({"k": 2}, lambda: features, root)
    (entry,) = (root / "features").glob("*.safetensors")
    entry.unlink()
    entry.mkdir()
    (entry / "junk").write_text("x")
    with caplog.at_level(logging.WARNING):
        assert cached({"k": 2}, lambda: features, root)[0]["label"] == 1
    assert entry.is_file() and "is not a regular file" in caplog.text


# --- headers that claim more than the machine has ------------------------------------------------------------


def _npy_claiming(path: Path, shape: str) -> Path:
    np.save(path, np.zeros((2, 3), dtype=np.float32))
    path.write_bytes(path.read_bytes().replace(b"(2, 3)", shape.encode(), 1))
    return path


def test_npy_headers_are_checked_against_the_file_before_allocating(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert read_npy(tmp_path / "ok.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), dtype=np.float32))
    assert read_npy(tmp_path / "empty.npy").shape == (0, 4)
    cases = {
        _npy_claiming(tmp_path / "huge.npy", "(999999999999, 1024)"): "claims",
        _npy_claiming(tmp_path / "more.npy", "(3, 3)"): "claims",
        tmp_path / "text.npy": "not a readable .npy array",
    }
    (tmp_path / "text.npy").write_text("hello")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases[tmp_path / "objects.npy"] = "Python objects"
    trailing = tmp_path / "trailing.npy"
    trailing.write_bytes((tmp_path / "ok.npy").read_bytes() + b"\0" * 8)
    cases[trailing] = "holds 32"
    for path, words in cases.items():
        with pytest.raises(DataError, match=words) as error:
            read_npy(path)
        assert str(error.value).startswith(str(path)), "the message names the file"


def test_retrieval_eval_names_an_embeddings_file_whose_header_claims_terabytes(tmp_path, capsys):
    source = _npy_claiming(tmp_path / "de.src.npy", "(999999999999, 1024)")
    np.save(tmp_path / "de.en.npy", np.ones((2, 3), dtype=np.float32))
    code = main(["retrieval-eval", "--task", "tatoeba", "--embeddings", str(tmp_path), "--lang", "de"])
    err = capsys.readouterr().err
    assert code == 2 and str(source) in err and "claims" in err and "batch_size" not in err, err


def _encoder_copy(tiny_encoder_dir: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(tiny_encoder_dir, destination)
    return destination


@pytest.mark.parametrize("damage", ["header of 2^50 bytes", "header past the end", "truncated"])
def test_a_hostile_weight_file_is_named_before_a_run_writes_anything(
    tmp_path, tiny_encoder_dir, demo_tasks, capsys, damage
):
    encoder = _encoder_copy(tiny_encoder_dir, tmp_path / "encoder")
    weights = encoder / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(
        {"header of 2^50 bytes": _header_claiming(2**50), "header past the end": _header_claiming(10**6)}.get(
            damage, content[: len(content) // 2]
        )
    )
    path = config_file(tmp_path / "cfg", encoder, demo_tasks, tmp_path / "run")
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{weights}: not a readable safetensors weight file" in err and "batch_size" not in err, err
    assert not (tmp_path / "run").exists(), "nothing written"


def test_a_config_claiming_a_model_larger_than_the_machine_is_named(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    encoder = _encoder_copy(tiny_encoder_dir, tmp_path / "encoder")
    config = json.loads((encoder / "config.json").read_text())
    config["vocab_size"] = 10**12
    (encoder / "config.json").write_text(json.dumps(config))
    path = config_file(tmp_path / "cfg", encoder, demo_tasks, tmp_path / "run")
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{encoder}/config.json describes a model of" in err and "GiB of memory" in err, err
    assert not (tmp_path / "run").exists()


# --- names at the limits of file systems ------------------------------------------------------------------------


def test_long_chain_labels_get_short_distinct_folders_and_round_trip(tmp_path):
    tasks = [f"{'t' * 60}{i:02d}" for i in range(9)]
    labels = ["+".join(tasks), "+".join(reversed(tasks)), "+".join(tasks[:2])]
    folders = [folder_name(label) for label in labels]
    assert all(len(f.encode()) <= MAX_FOLDER_NAME for f in folders) and len(set(folders)) == 3
    assert folders[2] == labels[2], "a label that fits is its own folder name"
    run = RunDirectory(tmp_path / "run")
    for label in labels:
        run.write_result(
            {
                "chain": label.split("+"),
                "chain_length": 9,
                "chain_label": label,
                "target": "t",
                "split": "test",
                "language": "en",
                "metric": "accuracy",
                "metrics": {"accuracy": 1.0},
                "score": 1.0,
            }
        )
    assert sorted(row["chain_label"] for row in run.result_rows()) == sorted(labels)


def test_names_that_differ_only_in_case_are_refused(tmp_path, tiny_encoder_dir, demo_tasks):
    tasks = {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")}
    tasks["Demo_NLI"] = demo_tasks["demo_nli"]
    path = config_file(tmp_path, tiny_encoder_dir, demo_tasks, tmp_path / "run", tasks=tasks)
    with pytest.raises(ConfigError, match="task '(demo_nli|Demo_NLI)' differs from '(Demo_NLI|demo_nli)' only in case"):
        load_config(path)
    path = config_file(
        tmp_path,
        tiny_encoder_dir,
        demo_tasks,
        tmp_path / "run",
        targets=[{"task": "demo_nli", "languages": ["en", "EN"]}],
    )
    with pytest.raises(
        ConfigError, match=r"targets\[0\]\.languages\[1\]: language 'EN' differs from 'en' only in case"
    ):
        load_config(path)


@pytest.mark.parametrize("name", ["caf\u00e9", "cafe\u0301", "x" * 65, "a\u200bb"])
def test_names_outside_plain_ascii_or_too_long_are_refused(tmp_path, tiny_encoder_dir, demo_tasks, name):
    """Non-ASCII names would meet Unicode normalisation (macOS stores é decomposed): one name could become two."""
    tasks = {k: demo_tasks[k] for k in ("demo_paraphrase", "demo_nli")}
    tasks[name] = demo_tasks["demo_nli"]
    path = config_file(tmp_path, tiny_encoder_dir, demo_tasks, tmp_path / "run", tasks=tasks)
    with pytest.raises(ConfigError, match="invalid name"):
        load_config(path)


# --- read-side commands interrupted or at once ------------------------------------------------------------------


def test_an_interrupted_plot_leaves_the_old_one_whole(tmp_path):
    from xstilts.analysis.plots import _pyplot, save

    plt = _pyplot()
    figure = plt.figure()
    target = tmp_path / "plot.png"
    save(figure, target)
    before = tree(tmp_path)

    class Interrupting:
        def savefig(self, path, **kwargs):
            Path(path).write_bytes(b"half a plot")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save(Interrupting(), target)
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_reports_at_once_and_interrupted_leave_whole_files(tmp_path, tiny_encoder_dir, demo_tasks, monkeypatch):
    from xstilts.analysis import report as report_module

    path = config_file(tmp_path, tiny_encoder_dir, demo_tasks, tmp_path / "run")
    xstilts.run(load_config(path), progress=False)
    run = tmp_path / "run"
    reports = [
        subprocess.Popen([sys.executable, "-m", "xstilts", "report", str(run)], stdout=subprocess.DEVNULL)
        for _ in range(3)
    ]  # processes, as users start them (matplotlib's pyplot is not for threads)
    assert [process.wait(timeout=300) for process in reports] == [0, 0, 0]
    written = tree(run)
    assert not [name for name in written if ".tmp" in name], "no scratch file is left"
    json.loads(written["results.json"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "render_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        xstilts.write_report(run)
    assert tree(run)["report.html"] == written["report.html"] and not [n for n in tree(run) if ".tmp" in n]


# --- folders a command did not create ------------------------------------------------------------------------------


def test_a_run_never_writes_into_a_folder_of_other_files(tmp_path, tiny_encoder_dir, demo_tasks, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine\n")
    path = config_file(tmp_path / "cfg", tiny_encoder_dir, demo_tasks, project)
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "output_dir" in err and "holds files that are not a run's (notes.txt)" in err
    assert tree(project) == {"notes.txt": b"mine\n"}
    # The config's own folder (output_dir: .) and an empty folder are the user's choice.
    own = config_file(tmp_path / "own", tiny_encoder_dir, demo_tasks, Path("."))
    load_config(own)
    (tmp_path / "empty").mkdir()
    load_config(config_file(tmp_path / "cfg2", tiny_encoder_dir, demo_tasks, tmp_path / "empty"))


def test_the_demo_refuses_a_folder_of_other_files_before_doing_anything(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("mine\n")
    assert main(["demo", "-o", str(tmp_path), "--no-progress"]) == 2
    assert "holds files that are not an earlier demo's" in capsys.readouterr().err
    assert tree(tmp_path) == {"thesis.tex": b"mine\n"}
