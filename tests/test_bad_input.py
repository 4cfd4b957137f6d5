"""Bad input through every entry point: a clear error every time, nothing outside the run directory touched.

Every case runs the real command line in this process (`xstilts.cli.main`) and asserts the exit status
(2 for bad input, 1 for a failed run, 0 where the input is legal and only suspicious), that stderr names
the file and line, the config key or the option at fault, that no traceback is printed, and that nothing
under the test's directory changed except below `work/` (the one place a command may write). Files are
planted around the run directory, including where the path-escape attempts point, to prove it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fast_training import FAST

from xstilts.cli import main


@dataclass
class Outcome:
    status: int
    out: str
    err: str


def _snapshot(root: Path, writable: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if path == writable or writable in path.parents:
            continue
        if path.is_symlink():
            state[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            state[str(path)] = ("file", path.read_bytes())
        else:
            state[str(path)] = ("dir",)
    return state


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """Files planted around the run directory: the escape attempts below all aim at them."""
    for planted in (
        "victim/important.txt",
        "outside/stages/notes.txt",
        "outside/.checkpoints/keep.txt",
        "work-sibling/data.txt",
    ):
        (tmp_path / planted).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / planted).write_text(f"planted {planted}\n", encoding="utf-8")
    (tmp_path / "work").mkdir()
    return tmp_path


@pytest.fixture
def cli(sandbox: Path, capsys: pytest.CaptureFixture) -> Callable[..., Outcome]:
    """Run `xstilts ARGS`; checks that no traceback is printed and nothing outside `work/` changes."""

    def run(*args: Any) -> Outcome:
        before = _snapshot(sandbox, sandbox / "work")
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        assert "internal error" not in captured.err, captured.err
        assert _snapshot(sandbox, sandbox / "work") == before, "a file outside the run directory changed"
        return Outcome(status, captured.out, captured.err)

    return run


def refused(outcome: Outcome, status: int, *fragments: str) -> None:
    assert outcome.status == status, (outcome.status, outcome.err)
    for fragment in fragments:
        assert fragment in outcome.err, f"{fragment!r} not in {outcome.err!r}"


# --- configs -----------------------------------------------------------------------------------------


def _base_config(sandbox: Path, encoder: Path, demo_tasks: dict) -> dict[str, Any]:
    tasks = copy.deepcopy({name: demo_tasks[name] for name in ("demo_paraphrase", "demo_squad2", "demo_nli")})
    return {
        "name": "bad input",
        "encoder": str(encoder),
        "output_dir": str(sandbox / "work" / "run"),
        "tasks": tasks,
        "chain": ["demo_paraphrase"],
        "targets": ["demo_nli"],
        "training": dict(FAST),
    }


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation that sets the dotted `path` (list indices as numbers) of the config to `value`."""

    def mutate(config: dict) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = config
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        node[last] = value

    return mutate


def _rename_task(new: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        config["tasks"][new] = config["tasks"].pop("demo_nli")
        config["targets"] = [new]

    return mutate


def _mixture(name: str, head: str | None = None) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        member = {"task": "demo_paraphrase", **({"head": head} if head else {})}
        config["mixtures"] = {name: {"tasks": [member, "demo_squad2"]}}
        config["chain"] = [name]

    return mutate


CONFIG_CASES = {
    # names that would become paths or module names
    "task name with a dot": (_rename_task("nli.v2"), "tasks['nli.v2']", "invalid name"),
    "task name climbing out": (_rename_task("../../victim"), "tasks['../../victim']", "invalid name"),
    "task name absolute": (_rename_task("/tmp/victim"), "invalid name '/tmp/victim'"),
    "task name with a leading dash": (_rename_task("-rf"), "invalid name '-rf'"),
    "task name too long": (_rename_task("t" * 65), "at most 64 characters"),
    "mixture name climbing out": (
        _mixture("../../../../../victim"),
        "mixtures['../../../../../victim']",
        "invalid name",
    ),
    "mixture head with a dot": (_mixture("nli_mix", head="nli.head"), "mixtures.nli_mix.tasks[0].head", "invalid name"),
    "variant name with a slash": (
        _set("variants", {"my/variant": {"base": "demo_nli", "data_dir": "x"}}),
        "variants['my/variant']",
    ),
    "language with a slash": (
        _set("tasks.demo_nli.languages", ["en", "../de"]),
        "tasks.demo_nli.languages[1]",
        "invalid name '../de'",
    ),
    "target language climbing out": (
        _set("targets", [{"task": "demo_nli", "languages": [".."]}]),
        "targets[0].languages[0]",
    ),
    "chain task with a slash": (_set("chain", ["../demo_paraphrase"]), "chain[0].task", "invalid name"),
    "study pool entry with a slash": (
        lambda c: (c.pop("chain"), c.update(study={"pool": ["a/b"], "orders": {"singles": True}})),
        "study.pool[0]",
    ),
    # numbers: finite, in range, numbers
    "learning rate infinite": (_set("training.learning_rate", float("inf")), "training.learning_rate", "finite number"),
    "learning rate NaN": (_set("training.learning_rate", float("nan")), "training.learning_rate", "finite number"),
    "learning rate above 1": (_set("training.learning_rate", 5.0), "training.learning_rate", "less than or equal to 1"),
    "epochs infinite": (_set("training.epochs", float("inf")), "training.epochs", "finite number"),
    "epochs astronomically many": (_set("training.epochs", 1e300), "training.epochs", "less than or equal to 10000"),
    "epochs as a boolean": (_set("training.epochs", True), "training.epochs", "expected a number, got true"),
    "batch size zero": (_set("training.batch_size", 0), "training.batch_size", "greater than 0"),
    "batch size negative": (_set("training.batch_size", -3), "training.batch_size"),
    "batch size fractional": (_set("training.batch_size", 1.5), "training.batch_size"),
    "max steps beyond the limit": (_set("training.max_steps", 10**12), "training.max_steps"),
    "warmup ratio above 1": (_set("training.warmup_ratio", 2.0), "training.warmup_ratio"),
    "gradient clipping NaN": (_set("training.max_grad_norm", float("nan")), "training.max_grad_norm", "finite number"),
    "stage override infinite": (
        _set("chain", [{"task": "demo_paraphrase", "training": {"weight_decay": float("-inf")}}]),
        "chain[0].training.weight_decay",
    ),
    "max length infinite": (_set("training.max_length", float("inf")), "training.max_length"),
    "seed negative": (_set("seed", -1), "seed", "greater than or equal to 0"),
    "seed beyond numpy's range": (_set("seed", 2**40), "seed", "less than 4294967296"),
    "seed as a boolean": (_set("seed", False), "seed", "expected a number"),
    "study seeds negative": (
        lambda c: (
            c.pop("chain"),
            c.update(study={"pool": ["demo_paraphrase"], "orders": {"singles": True}, "seeds": [-2]}),
        ),
        "study.seeds[0]",
    ),
    "mixture temperature infinite": (
        lambda c: (_mixture("mix")(c), c["mixtures"]["mix"].update(sampler="temperature", temperature=float("inf"))),
        "mixtures.mix.temperature",
    ),
    "latency length zero": (_set("latency", {"lengths": [0]}), "latency.lengths[0]"),
    "latency batch negative": (_set("latency", {"batch_sizes": [-1]}), "latency.batch_sizes[0]"),
    "LoRA dropout of one": (_set("adapters", {"lora_dropout": 1.0}), "adapters.lora_dropout"),
    "micro batch not dividing": (_set("training.micro_batch_size", 3), "training", "multiple of micro_batch_size"),
    # repeats that would make results overwrite each other
    "a target twice": (
        _set("targets", ["demo_nli", {"task": "demo_nli", "languages": ["en"]}]),
        "targets[1]",
        "'demo_nli' appears twice",
    ),
    "a target language twice": (
        _set("targets", [{"task": "demo_nli", "languages": ["en", "x-lex", "en"]}]),
        "targets[0].languages[2]",
        "'en' appears twice",
    ),
    "a task language twice": (_set("tasks.demo_nli.languages", ["en", "en"]), "tasks.demo_nli.languages[1]"),
    "a study seed twice": (
        lambda c: (
            c.pop("chain"),
            c.update(study={"pool": ["demo_paraphrase"], "orders": {"singles": True}, "seeds": [3, 3]}),
        ),
        "study.seeds[1]",
    ),
    "a label twice": (
        _set("tasks.demo_nli.labels", ["entailment", "neutral", "entailment"]),
        "tasks.demo_nli.labels[2]",
    ),
    "a pool task twice": (
        lambda c: (
            c.pop("chain"),
            c.update(study={"pool": ["demo_paraphrase", "demo_paraphrase"], "orders": {"random": 1}}),
        ),
        "study.pool[1]",
    ),
    # where the run would write
    "output directory is a file": (
        lambda c: c.update(output_dir=str(Path(c["output_dir"]).parent.parent / "victim" / "important.txt")),
        "output_dir",
        "is not a directory",
    ),
    "output directory under a file": (
        lambda c: c.update(output_dir=str(Path(c["output_dir"]).parent.parent / "victim" / "important.txt" / "run")),
        "output_dir",
        "is a file",
    ),
    # structure
    "unknown key": (_set("trainig", {}), "trainig", "unknown key"),
    "keep of an unknown kind": (_set("keep", "some"), "keep"),
    "chain mode unknown": (_set("chain_modes", ["lora-fancy"]), "chain_modes[0]"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_is_refused_with_its_key_before_anything_is_written(
    case, cli, sandbox, tiny_encoder_dir, demo_tasks
):
    mutate, *fragments = CONFIG_CASES[case]
    config = _base_config(sandbox, tiny_encoder_dir, demo_tasks)
    mutate(config)
    path = sandbox / "work" / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    for command in ("run", "plan"):
        outcome = cli(command, path)
        refused(outcome, 2, f"{path}:", *fragments)
        assert all(line.startswith("error: ") for line in outcome.err.splitlines()), outcome.err
    assert sorted(p.name for p in (sandbox / "work").iterdir()) == ["config.yaml"], "nothing was written"


CONFIG_FILE_CASES = {
    "invalid UTF-8": (b"name: x\nencoder: \xff\xfe\n", ":2:", "invalid UTF-8"),
    "a list, not a mapping": (b"- encoder\n- targets\n", ":1:", "expected a mapping"),
    "empty": (b"", ":1:", "expected a mapping"),
    "broken YAML": (b"name: [unclosed\n", "invalid YAML"),
    "tabs for indentation": (b"name: x\ntraining:\n\tepochs: 2\n", "invalid YAML"),
    "a key given twice": (
        b"name: x\ntraining:\n  epochs: 2\n  batch_size: 8\n  epochs: 20\n",
        ":5: training.epochs: this key appears twice (first at line 3)",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILE_CASES))
def test_unreadable_config_files(case, cli, sandbox):
    content, *fragments = CONFIG_FILE_CASES[case]
    path = sandbox / "work" / "config.yaml"
    path.write_bytes(content)
    refused(cli("run", path), 2, str(path), *fragments)


def test_missing_config_and_directory_in_its_place(cli, sandbox):
    refused(cli("run", sandbox / "work" / "nothing.yaml"), 2, "nothing.yaml: config file not found")
    refused(cli("run", sandbox / "victim"), 2, "victim: is a directory; expected an experiment YAML file")


# --- task data met during a run ---------------------------------------------------------------------------


def _data_copy(sandbox: Path, demo_tasks: dict, names: tuple[str, ...]) -> dict[str, Any]:
    tasks = {}
    for name in names:
        target = sandbox / "work" / "data" / name
        shutil.copytree(demo_tasks[name]["data_dir"], target)
        tasks[name] = {**demo_tasks[name], "data_dir": str(target)}
    return tasks


def _replace_line(path: Path, line: int, text: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = text
    path.write_bytes(b"\n".join(lines))


DATA_CASES = {
    "invalid UTF-8 in a train file": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: _replace_line(p, 3, b'{"text_a": "caf\xe9", "label": "paraphrase"}'),
        ":3:",
        "invalid UTF-8",
    ),
    "a truncated JSON line": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: _replace_line(p, 2, b'{"text_a": "half'),
        ":2:",
        "invalid JSON",
    ),
    "a line that is not an object": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: _replace_line(p, 4, b"[1, 2]"),
        ":4:",
        "expected a JSON object",
    ),
    "a label outside the label set": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: _replace_line(p, 5, b'{"text_a": "a", "label": "maybe"}'),
        ":5:",
        "'label' must be one of",
    ),
    "an empty train file": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: p.write_bytes(b""),
        "train-en.jsonl",
        "no examples",
    ),
    "a blank train file": (
        "demo_paraphrase",
        "train-en.jsonl",
        lambda p: p.write_bytes(b"\n\n   \n"),
        "train-en.jsonl",
        "no examples",
    ),
    "a negative answer start": (
        "demo_squad2",
        "train-en.jsonl",
        lambda p: _replace_line(
            p, 1, b'{"id": "q", "question": "?", "context": "abc", "answers": {"text": ["a"], "answer_start": [-1]}}'
        ),
        ":1:",
        "answer_start -1",
        "outside the context",
    ),
    "an answer outside its context": (
        "demo_squad2",
        "train-en.jsonl",
        lambda p: _replace_line(
            p, 2, b'{"id": "q", "question": "?", "context": "abc", "answers": {"text": ["zz"], "answer_start": [1]}}'
        ),
        ":2:",
        "not found in the context",
    ),
    "an answer start as a boolean": (
        "demo_squad2",
        "train-en.jsonl",
        lambda p: _replace_line(
            p, 2, b'{"id": "q", "question": "?", "context": "abc", "answers": {"text": ["b"], "answer_start": [true]}}'
        ),
        ":2:",
        "integer answer_start",
    ),
    "invalid UTF-8 in a test file": (
        "demo_nli",
        "test-x-lex.jsonl",
        lambda p: p.write_bytes(p.read_bytes()[:40] + b"\x80\x81" + p.read_bytes()[40:]),
        ":1:",
        "invalid UTF-8",
    ),
    "a dev file that is a directory": (
        "demo_paraphrase",
        "dev-en.jsonl",
        lambda p: (p.unlink(), p.mkdir()),
        "dev-en.jsonl",
        "data file not found",
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_task_data_stops_the_run_naming_file_and_line(case, cli, sandbox, tiny_encoder_dir, demo_tasks):
    task, file_name, corrupt, *fragments = DATA_CASES[case]
    config = _base_config(sandbox, tiny_encoder_dir, demo_tasks)
    config["tasks"] = _data_copy(sandbox, demo_tasks, ("demo_paraphrase", "demo_squad2", "demo_nli"))
    config["chain"] = ["demo_paraphrase", "demo_squad2"]
    path = sandbox / "work" / "data" / task / file_name
    corrupt(path)
    config_path = sandbox / "work" / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    outcome = cli("run", "--no-progress", "-q", config_path)
    refused(outcome, 2, str(path) if file_name in fragments[0] else f"{path}{fragments[0]}", *fragments[1:])
    if not file_name.startswith("test"):  # a bad train or dev file stops its stage before anything of it is kept
        assert not list((sandbox / "work" / "run" / "stages").glob(f"*-{task}/stage.json")), (
            "no stage of the bad task was recorded"
        )


# --- upstream files: xstilts data check / prepare ---------------------------------------------------------

SQUAD_OK = {
    "version": "1.1",
    "data": [
        {
            "paragraphs": [
                {
                    "context": "Anna lives in Berlin.",
                    "qas": [{"id": "q1", "question": "Where?", "answers": [{"text": "Berlin", "answer_start": 14}]}],
                }
            ]
        }
    ],
}


def _squad(change: Callable[[dict], None]) -> bytes:
    document = json.loads(json.dumps(SQUAD_OK))
    change(document)
    return json.dumps(document).encode()


CHECK_CASES: dict[str, tuple[dict[str, bytes], int, tuple[str, ...]]] = {
    "SQuAD JSON invalid UTF-8": (
        {"xquad/xquad.de.json": b'{"data": [\n{"paragraphs": "\xff"}]}'},
        1,
        ("xquad.de.json:2:", "invalid UTF-8"),
    ),
    "SQuAD JSON broken": ({"xquad/xquad.de.json": b'{"data": [\n'}, 1, ("xquad.de.json:2:", "invalid JSON")),
    "SQuAD data items not objects": (
        {"xquad/xquad.de.json": b'{"data": [1]}'},
        1,
        ("xquad.de.json", "data[0]: expected an object with a 'paragraphs' list"),
    ),
    "SQuAD without data": ({"xquad/xquad.de.json": b'{"version": "1.1"}'}, 1, ("xquad.de.json", '"data" list')),
    "SQuAD qas not a list": (
        {"xquad/xquad.de.json": _squad(lambda d: d["data"][0]["paragraphs"][0].update(qas={}))},
        1,
        ("data[0].paragraphs[0]",),
    ),
    "SQuAD negative answer start": (
        {
            "xquad/xquad.de.json": _squad(
                lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=-4)
            )
        },
        1,
        ("answer_start -4 lies outside the context",),
    ),
    "SQuAD answer start past the context": (
        {
            "xquad/xquad.de.json": _squad(
                lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=999)
            )
        },
        1,
        ("answer_start 999",),
    ),
    "SQuAD answer start as text": (
        {
            "xquad/xquad.de.json": _squad(
                lambda d: d["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="14")
            )
        },
        1,
        ("integer 'answer_start'",),
    ),
    "SQuAD question id missing": (
        {"xquad/xquad.de.json": _squad(lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("id"))},
        1,
        ("qas[0]: expected 'id'",),
    ),
    "SQuAD without questions": ({"xquad/xquad.de.json": b'{"data": []}'}, 1, ("xquad.de.json", "no questions")),
    "XTREME TSV invalid UTF-8": (
        {"pawsx/dev-de.tsv": b"a\tb\t1\nc\xc3\x28\td\t0\n"},
        1,
        ("dev-de.tsv:2:", "invalid UTF-8"),
    ),
    "XTREME TSV short row": (
        {"pawsx/dev-de.tsv": b"a\tb\t1\nc\td\n"},
        1,
        ("dev-de.tsv:2:", "expected 3 tab-separated fields"),
    ),
    "XTREME TSV unknown label": (
        {"pawsx/dev-de.tsv": b"a\tb\t1\nc\td\t7\n"},
        1,
        ("dev-de.tsv", "record 2", "'label' must be one of"),
    ),
    "XTREME TSV empty": ({"pawsx/dev-fr.tsv": b""}, 1, ("dev-fr.tsv", "no examples")),
    "XTREME TSV test labels removed": ({"xnli/test-de.tsv": b"a\tb\n"}, 1, ("test-de.tsv", "labels removed")),
    "XNLI fourth column": (
        {"xnli/dev-de.tsv": b"a\tb\tentailment\nc\td\tneutral\tstray\n"},
        0,
        ("warning:", "dev-de.tsv:2:", "more than 3 tab-separated fields"),
    ),
    "word-tag file with three fields": (
        {"udpos/dev-de.tsv": b"Haus\tNOUN\nist\tAUX\textra\n"},
        1,
        ("dev-de.tsv:2:", "expected 'word<TAB>tag'"),
    ),
    "word-tag file invalid UTF-8": (
        {"udpos/dev-de.tsv": b"Haus\tNOUN\n\xfc\tADJ\n"},
        1,
        ("dev-de.tsv:2:", "invalid UTF-8"),
    ),
    "word-tag file unknown tag": (
        {"udpos/dev-de.tsv": b"Haus\tNOUN\nist\tVERBISH\n"},
        1,
        ("dev-de.tsv", "unknown tags ['VERBISH']"),
    ),
    "CoNLL-U invalid UTF-8": (
        {"ud/de_gsd-ud-dev.conllu": b"1\tHaus\thaus\tNOUN\t_\t_\t0\troot\t_\t_\n2\t\xe4\t_\tX\t_\t_\t1\tdep\t_\t_\n"},
        1,
        ("de_gsd-ud-dev.conllu:2:", "invalid UTF-8"),
    ),
    "CoNLL-U too few fields": (
        {"ud/de_gsd-ud-dev.conllu": b"1\tHaus\thaus\tNOUN\n"},
        1,
        ("de_gsd-ud-dev.conllu:1:", "expected 10 tab-separated CoNLL-U fields"),
    ),
    "CoNLL-U bad head": (
        {"ud/de_gsd-ud-dev.conllu": b"1\tHaus\thaus\tNOUN\t_\t_\tx\troot\t_\t_\n"},
        1,
        ("de_gsd-ud-dev.conllu:1:", "invalid token id"),
    ),
    "raw PAN-X without language prefix": (
        {"panx/de/dev": b"de:Berlin\tB-LOC\nMunich\tB-LOC\n"},
        1,
        ("de/dev:2:", "lang:token"),
    ),
    "raw PAN-X invalid UTF-8": (
        {"panx/de/dev": b"de:Berlin\tB-LOC\nde:M\xfcnchen\tB-LOC\n"},
        1,
        ("de/dev:2:", "invalid UTF-8"),
    ),
    "Tatoeba invalid UTF-8": (
        {"tatoeba/tatoeba.deu-eng.deu": b"Hallo\nWelt\xff\n", "tatoeba/tatoeba.deu-eng.eng": b"Hello\nWorld\n"},
        1,
        ("tatoeba.deu-eng.deu:2:", "invalid UTF-8"),
    ),
    "Tatoeba sides of different length": (
        {"tatoeba/tatoeba.deu-eng.deu": b"Hallo\n", "tatoeba/tatoeba.deu-eng.eng": b"Hello\nWorld\n"},
        1,
        ("tatoeba.deu-eng.deu", "1 sentences but 2"),
    ),
    "Tatoeba empty side": (
        {"tatoeba/tatoeba.deu-eng.deu": b"", "tatoeba/tatoeba.deu-eng.eng": b"Hello\n"},
        1,
        ("tatoeba.deu-eng.deu", "no sentences"),
    ),
    "BUCC sentence line without id": (
        {
            "bucc/de-en.dev.de": b"de-1\tHallo\nWelt\n",
            "bucc/de-en.dev.en": b"en-1\tHello\n",
            "bucc/de-en.dev.gold": b"de-1\ten-1\n",
        },
        1,
        ("de-en.dev.de:2:", "id<TAB>sentence"),
    ),
    "BUCC invalid UTF-8": (
        {
            "bucc/de-en.dev.de": b"de-1\tHall\xf6\n",
            "bucc/de-en.dev.en": b"en-1\tHello\n",
            "bucc/de-en.dev.gold": b"de-1\ten-1\n",
        },
        1,
        ("de-en.dev.de:1:", "invalid UTF-8"),
    ),
    "BUCC duplicate ids": (
        {
            "bucc/de-en.dev.de": b"de-1\tHallo\nde-1\tWelt\n",
            "bucc/de-en.dev.en": b"en-1\tHello\n",
            "bucc/de-en.dev.gold": b"de-1\ten-1\n",
        },
        0,
        ("warning:", "de-en.dev.de:2:", "id 'de-1' appears again"),
    ),
    "BUCC gold ids unknown": (
        {
            "bucc/de-en.dev.de": b"de-1\tHallo\n",
            "bucc/de-en.dev.en": b"en-1\tHello\n",
            "bucc/de-en.dev.gold": b"de-1\ten-1\nde-9\ten-1\n",
        },
        0,
        ("warning:", "de-en.dev.gold:2:", "name ids missing"),
    ),
    "BUCC gold line malformed": (
        {
            "bucc/de-en.dev.de": b"de-1\tHallo\n",
            "bucc/de-en.dev.en": b"en-1\tHello\n",
            "bucc/de-en.dev.gold": b"de-1 en-1\n",
        },
        1,
        ("de-en.dev.gold:1:", "source_id<TAB>target_id"),
    ),
    "BUCC English side missing": (
        {"bucc/de-en.dev.de": b"de-1\tHallo\n", "bucc/de-en.dev.gold": b"de-1\ten-1\n"},
        1,
        ("de-en.dev.de", "de-en.dev.en is missing"),
    ),
    "MNLI unknown gold label": (
        {"mnli/multinli_1.0_train.jsonl": b'{"sentence1": "a", "sentence2": "b", "gold_label": "sort of"}\n'},
        1,
        ("multinli_1.0_train.jsonl:1:", "unknown gold_label"),
    ),
    "MNLI invalid UTF-8": (
        {
            "mnli/multinli_1.0_train.jsonl": b'{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n{"sentence1": "\xe9"}\n'
        },
        1,
        ("multinli_1.0_train.jsonl:2:", "invalid UTF-8"),
    ),
    "HellaSwag endings not a list": (
        {"hellaswag/hellaswag_train.jsonl": b'{"ctx_a": "x", "endings": "y", "label": 0}\n'},
        1,
        ("hellaswag_train.jsonl:1:", "list of 'endings'"),
    ),
    "Cosmos QA label out of range": (
        {"cosmosqa/train.csv": b"id,context,question,answer0,answer1,answer2,answer3,label\n1,c,q,a,b,c,d,7\n"},
        1,
        ("train.csv:2:", "label must be 0-3"),
    ),
    "Cosmos QA missing column": (
        {"cosmosqa/train.csv": b"id,context,answer0\n1,c,a\n"},
        1,
        ("train.csv:1:", "missing columns"),
    ),
    "CommonsenseQA answer key unknown": (
        {
            "csqa/train_rand_split.jsonl": b'{"id": "1", "question": {"stem": "s", "choices": [{"label": "A", "text": "a"}]}, "answerKey": "Q"}\n'
        },
        1,
        ("train_rand_split.jsonl:1:", "answerKey 'Q'"),
    ),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_data_check_names_file_and_line(case, cli, sandbox):
    files, status, fragments = CHECK_CASES[case]
    root = sandbox / "upstream"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    outcome = cli("data", "check", root)
    assert outcome.status == status, outcome.out + outcome.err
    for fragment in fragments:
        assert fragment in outcome.out, f"{fragment!r} not in {outcome.out!r}"


def test_data_prepare_refuses_bad_files_and_writes_nothing(cli, sandbox):
    root = sandbox / "upstream"
    (root / "pawsx").mkdir(parents=True)
    (root / "pawsx" / "dev-de.tsv").write_bytes(b"a\tb\t1\n\xffc\td\t0\n")
    out = sandbox / "work" / "prepared"
    refused(
        cli("data", "prepare", "--tasks", "pawsx", "--output-dir", out, "--from", root),
        2,
        "dev-de.tsv:2:",
        "invalid UTF-8",
    )
    assert not out.exists()
    refused(
        cli("data", "prepare", "--tasks", "pawsx,nope", "--output-dir", out, "--from", root), 2, "unknown task 'nope'"
    )
    refused(cli("data", "check", root / "missing"), 2, "missing: no such directory")


# --- xstilts score ----------------------------------------------------------------------------------------

XNLI_GOLD = "".join(
    f"premise {i}\thypothesis {i}\t{['entailment', 'neutral', 'contradiction'][i % 3]}\n" for i in range(30)
)
XNLI_PREDICTIONS = "".join(f"{['entailment', 'neutral', 'contradiction'][i % 3]}\n" for i in range(30))
QA_GOLD = json.dumps(
    {
        "version": 1.0,
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "Der Hund bellt laut.",
                        "qas": [
                            {"id": "a", "question": "Wer?", "answers": [{"text": "Der Hund", "answer_start": 0}]},
                            {"id": "b", "question": "Wie?", "answers": [{"text": "laut", "answer_start": 15}]},
                        ],
                    }
                ]
            }
        ],
    }
)

SCORE_CASES: dict[str, tuple[str, str, bytes, bytes, int, tuple[str, ...]]] = {
    "one short gold row": (
        "xnli",
        "de",
        XNLI_GOLD.replace("premise 7\thypothesis 7\t", "premise 7\t", 1).encode(),
        XNLI_PREDICTIONS.encode(),
        2,
        ("gold:8:", "expected 3 tab-separated fields"),
    ),
    "fewer predictions than gold": (
        "xnli",
        "de",
        XNLI_GOLD.encode(),
        "".join(XNLI_PREDICTIONS.splitlines(True)[:25]).encode(),
        2,
        ("25 predictions for 30", "5 missing"),
    ),
    "more predictions than gold": (
        "xnli",
        "de",
        XNLI_GOLD.encode(),
        (XNLI_PREDICTIONS + "neutral\n").encode(),
        2,
        ("31 predictions for 30", "1 extra"),
    ),
    "unknown predicted label": (
        "xnli",
        "de",
        XNLI_GOLD.encode(),
        XNLI_PREDICTIONS.replace("neutral", "neutrality", 1).encode(),
        2,
        ("predictions:2:", "unknown label 'neutrality'"),
    ),
    "unknown gold label": (
        "xnli",
        "de",
        XNLI_GOLD.replace("contradiction", "contradictory", 1).encode(),
        XNLI_PREDICTIONS.encode(),
        2,
        ("gold:3:", "unknown label 'contradictory'"),
    ),
    "blank line inside the predictions": (
        "xnli",
        "de",
        XNLI_GOLD.encode(),
        XNLI_PREDICTIONS.replace("neutral\n", "\n", 1).encode(),
        2,
        ("predictions:2:", "blank line"),
    ),
    "empty predictions": ("xnli", "de", XNLI_GOLD.encode(), b"", 2, ("predictions", "no labels")),
    "predictions invalid UTF-8": (
        "xnli",
        "de",
        XNLI_GOLD.encode(),
        b"entailment\n\xffneutral\n",
        2,
        ("predictions:2:", "invalid UTF-8"),
    ),
    "label-per-line gold mixed with a TSV row": (
        "pawsx",
        "de",
        b"1\n0\ta\tb\n",
        b"1\n0\n",
        2,
        ("gold", "unknown label"),
    ),
    "QA ids that match nothing": (
        "xquad",
        "de",
        QA_GOLD.encode(),
        b'{"x": "Hund", "y": "laut"}',
        2,
        ("none of its 2 question ids", "is it the right file"),
    ),
    "QA predictions as a list": (
        "xquad",
        "de",
        QA_GOLD.encode(),
        b'["Hund"]',
        2,
        ("predictions", "expected a JSON object"),
    ),
    "QA answer that is not a string": (
        "xquad",
        "de",
        QA_GOLD.encode(),
        b'{"a": 3}',
        2,
        ("predictions", "question 'a' is not a string"),
    ),
    "QA predictions broken JSON": (
        "xquad",
        "de",
        QA_GOLD.encode(),
        b'{"a": "Hund",\n',
        2,
        ("predictions:2:", "invalid JSON"),
    ),
    "QA gold with a negative answer start": (
        "xquad",
        "de",
        QA_GOLD.replace('"answer_start": 15', '"answer_start": -15').encode(),
        b'{"a": "Hund"}',
        2,
        ("gold", "lies outside the context"),
    ),
    "QA gold answer not in its context": (
        "xquad",
        "de",
        QA_GOLD.replace('"answer_start": 15', '"answer_start": 3').encode(),
        b'{"a": "Hund"}',
        2,
        ("gold", "question 'b'", "not found in the context"),
    ),
    "QA gold invalid UTF-8": (
        "mlqa",
        "de",
        QA_GOLD.encode().replace(b"Hund", b"H\xfcnd", 1),
        b'{"a": "Hund"}',
        2,
        ("gold:1:", "invalid UTF-8"),
    ),
    "tag predictions with an unknown tag": (
        "panx",
        "de",
        b"Berlin\tB-LOC\nist\tO\n",
        b"B-LOC\nX-THING\n",
        2,
        ("predictions:2:", "unknown tag 'X-THING'"),
    ),
    "tag predictions with a word column": (
        "panx",
        "de",
        b"Berlin\tB-LOC\nist\tO\n",
        b"B-LOC\nist\tO\n",
        2,
        ("predictions:2:", "one tag per line"),
    ),
    "tag sentences missing": (
        "panx",
        "de",
        b"Berlin\tB-LOC\n\nist\tO\n",
        b"B-LOC\n",
        2,
        ("1 predicted sentences for 2",),
    ),
    "tag sentence shorter": (
        "udpos",
        "de",
        b"Berlin\tPROPN\nist\tAUX\n",
        b"PROPN\n",
        2,
        ("sentence 1: 1 predicted tags for 2 gold words",),
    ),
    "Tatoeba index that is not a number": (
        "tatoeba",
        "de",
        b"0\n1\n",
        b"0\none\n",
        2,
        ("predictions:2:", "non-negative sentence index"),
    ),
    "Tatoeba negative index": ("tatoeba", "de", b"0\n1\n", b"0\n-1\n", 2, ("predictions:2:",)),
    "Tatoeba counts differ": ("tatoeba", "de", b"0\n1\n2\n", b"0\n1\n", 2, ("2 predicted indices for 3", "1 missing")),
    "BUCC pair line malformed": (
        "bucc2018",
        "de",
        b"de-1\ten-1\n",
        b"de-1 en-1\n",
        2,
        ("predictions:1:", "source_id<TAB>target_id"),
    ),
    "BUCC empty predictions": ("bucc2018", "de", b"de-1\ten-1\n", b"", 2, ("predictions", "no sentences")),
}


@pytest.mark.parametrize("case", sorted(SCORE_CASES))
def test_score_validates_both_files_before_scoring(case, cli, sandbox):
    task, language, gold, predictions, status, fragments = SCORE_CASES[case]
    gold_path, predictions_path = sandbox / "work" / "gold", sandbox / "work" / "predictions"
    gold_path.write_bytes(gold)
    predictions_path.write_bytes(predictions)
    refused(
        cli("score", "--task", task, "--lang", language, "--gold", gold_path, "--predictions", predictions_path),
        status,
        *fragments,
    )


def test_score_reports_missing_and_extra_predictions(cli, sandbox):
    gold, predictions = sandbox / "work" / "gold.json", sandbox / "work" / "predictions.json"
    gold.write_text(QA_GOLD, encoding="utf-8")
    predictions.write_text(json.dumps({"a": "Der Hund", "zzz": "laut"}), encoding="utf-8")
    outcome = cli("score", "--task", "xquad", "--lang", "de", "--gold", gold, "--predictions", predictions)
    assert outcome.status == 0, outcome.err
    result = json.loads(outcome.out)
    assert result["predictions"] == {"gold": 2, "predicted": 2, "matched": 1, "missing": 1, "extra": 1}
    assert result["metrics"]["exact_match"] == 50.0


def test_score_arguments_and_directories(cli, sandbox):
    gold_dir, predictions_dir = sandbox / "work" / "gold", sandbox / "work" / "predictions"
    gold_dir.mkdir(), predictions_dir.mkdir()
    (gold_dir / "test-de.tsv").write_text("Berlin\tB-LOC\n", encoding="utf-8")
    (gold_dir / "test-de.txt").write_text("B-LOC\n", encoding="utf-8")
    (predictions_dir / "test-de.tsv").write_text("B-LOC\n", encoding="utf-8")
    refused(
        cli("score", "--task", "panx", "--gold-dir", gold_dir, "--predictions-dir", predictions_dir),
        2,
        "several files for de",
    )
    refused(
        cli("score", "--task", "panx", "--gold-dir", gold_dir / "nope", "--predictions-dir", predictions_dir),
        2,
        "nope: not a directory",
    )
    refused(
        cli(
            "score",
            "--task",
            "pan-x",
            "--lang",
            "de",
            "--gold",
            gold_dir / "test-de.tsv",
            "--predictions",
            predictions_dir / "test-de.tsv",
        ),
        2,
        "unknown task 'pan-x'",
    )
    refused(
        cli(
            "score",
            "--task",
            "panx",
            "--lang",
            "de",
            "--gold",
            gold_dir / "absent.tsv",
            "--predictions",
            predictions_dir / "test-de.tsv",
        ),
        2,
        "absent.tsv: cannot read",
    )
    refused(
        cli("score", "--task", "panx", "--lang", "de", "--gold", gold_dir), 2, "give --lang, --gold and --predictions"
    )
    refused(
        cli(
            "score",
            "--task",
            "panx",
            "--lang",
            "de",
            "--gold",
            gold_dir,
            "--predictions",
            predictions_dir / "test-de.tsv",
        ),
        2,
        "expected a file, found a directory",
    )


# --- xstilts retrieval-eval --------------------------------------------------------------------------------


def _embeddings(directory: Path, files: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        if isinstance(value, np.ndarray):
            np.save(directory / name, value, allow_pickle=True)
        else:
            (directory / name).write_bytes(value if isinstance(value, bytes) else value.encode())
    return directory


RNG = np.random.default_rng(0)
GOOD = RNG.normal(size=(6, 8)).astype(np.float32)
WITH_NAN = GOOD.copy()
WITH_NAN[2, 3] = np.nan
WITH_INF = GOOD.copy()
WITH_INF[4, 0] = np.inf
WITH_ZERO = GOOD.copy()
WITH_ZERO[1] = 0.0
IDS = "".join(f"s{i}\n" for i in range(6))

RETRIEVAL_CASES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "Tatoeba sides of 3 and 6 rows": (
        "tatoeba",
        {"de.src.npy": GOOD[:3], "de.en.npy": GOOD},
        ("de.src.npy: 3 rows but de.en.npy has 6",),
    ),
    "Tatoeba label out of range": (
        "tatoeba",
        {"de.src.npy": GOOD, "de.en.npy": GOOD, "de.labels.txt": "0\n1\n2\n3\n4\n6\n"},
        ("de.labels.txt:6:", "0..5"),
    ),
    "Tatoeba label not a number": (
        "tatoeba",
        {"de.src.npy": GOOD, "de.en.npy": GOOD, "de.labels.txt": "0\n1\nx\n3\n4\n5\n"},
        ("de.labels.txt:3:",),
    ),
    "Tatoeba labels fewer than rows": (
        "tatoeba",
        {"de.src.npy": GOOD, "de.en.npy": GOOD, "de.labels.txt": "0\n1\n"},
        ("2 labels for 6 English rows",),
    ),
    "NaN in an embedding": (
        "tatoeba",
        {"de.src.npy": WITH_NAN, "de.en.npy": GOOD},
        ("de.src.npy: row 2 holds NaN or infinity",),
    ),
    "infinity in an embedding": (
        "tatoeba",
        {"de.src.npy": GOOD, "de.en.npy": WITH_INF},
        ("de.en.npy: row 4 holds NaN or infinity",),
    ),
    "an all-zero row": ("tatoeba", {"de.src.npy": WITH_ZERO, "de.en.npy": GOOD}, ("de.src.npy: row 1 is all zeros",)),
    "strings instead of numbers": (
        "tatoeba",
        {"de.src.npy": np.array([["a", "b"]] * 6), "de.en.npy": GOOD},
        ("de.src.npy: expected numbers",),
    ),
    "a pickled object array": (
        "tatoeba",
        {"de.src.npy": np.array([{"x": 1}] * 6, dtype=object), "de.en.npy": GOOD},
        ("de.src.npy", "holds Python objects (a pickle)"),
    ),
    "a truncated .npy": (
        "tatoeba",
        {
            "de.src.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (6, 8), }"
            + b" " * 40
            + b"\n"
            + b"\x00" * 12,
            "de.en.npy": GOOD,
        },
        ("de.src.npy", "not a readable .npy array"),
    ),
    "not a .npy at all": (
        "tatoeba",
        {"de.src.npy": b"hello", "de.en.npy": GOOD},
        ("de.src.npy", "not a readable .npy array"),
    ),
    "a vector, not a matrix": (
        "tatoeba",
        {"de.src.npy": GOOD[0], "de.en.npy": GOOD},
        ("de.src.npy: expected a 2-D matrix", "(8,)"),
    ),
    "sides of different width": (
        "tatoeba",
        {"de.src.npy": GOOD[:, :4], "de.en.npy": GOOD},
        ("de.en.npy: 8 dimensions", "has 4"),
    ),
    "an embeddings file missing": ("tatoeba", {"de.src.npy": GOOD}, ("de.en.npy: embeddings file not found",)),
    "BUCC gold id not among the ids": (
        "bucc2018",
        {
            "de.dev.src.npy": GOOD,
            "de.dev.src.ids": IDS,
            "de.dev.en.npy": GOOD,
            "de.dev.en.ids": IDS,
            "de.dev.gold": "s1\ts1\ns9\ts2\n",
        },
        ("de.dev.gold:2:", "'s9' is not in de.dev.src.ids"),
    ),
    "BUCC duplicate ids": (
        "bucc2018",
        {
            "de.dev.src.npy": GOOD,
            "de.dev.src.ids": IDS.replace("s3", "s2"),
            "de.dev.en.npy": GOOD,
            "de.dev.en.ids": IDS,
            "de.dev.gold": "s1\ts1\n",
        },
        ("de.dev.src.ids:4:", "appears twice"),
    ),
    "BUCC fewer ids than rows": (
        "bucc2018",
        {
            "de.dev.src.npy": GOOD,
            "de.dev.src.ids": "s0\ns1\n",
            "de.dev.en.npy": GOOD,
            "de.dev.en.ids": IDS,
            "de.dev.gold": "s1\ts1\n",
        },
        ("de.dev.src.ids: 2 ids for 6 embedding rows",),
    ),
    "BUCC gold file missing": (
        "bucc2018",
        {"de.dev.src.npy": GOOD, "de.dev.src.ids": IDS, "de.dev.en.npy": GOOD, "de.dev.en.ids": IDS},
        ("de.dev.gold: cannot read",),
    ),
    "BUCC without a dev split": (
        "bucc2018",
        {"de.test.src.npy": GOOD},
        ("de.dev.src.npy: the dev split chooses the threshold",),
    ),
    "BUCC NaN embedding": (
        "bucc2018",
        {
            "de.dev.src.npy": GOOD,
            "de.dev.src.ids": IDS,
            "de.dev.en.npy": WITH_NAN,
            "de.dev.en.ids": IDS,
            "de.dev.gold": "s1\ts1\n",
        },
        ("de.dev.en.npy: row 2",),
    ),
}


@pytest.mark.parametrize("case", sorted(RETRIEVAL_CASES))
def test_retrieval_eval_checks_rows_ids_and_values(case, cli, sandbox):
    task, files, fragments = RETRIEVAL_CASES[case]
    directory = _embeddings(sandbox / "work" / "emb", files)
    outcome = cli("retrieval-eval", "--task", task, "--embeddings", directory, "--lang", "de")
    refused(outcome, 2, *fragments)
    assert outcome.out == ""


def test_retrieval_eval_arguments(cli, sandbox):
    refused(
        cli("retrieval-eval", "--task", "tatoeba", "--embeddings", sandbox / "work" / "none", "--lang", "de"),
        2,
        "--embeddings",
        "not a directory",
    )
    refused(cli("retrieval-eval", "--task", "xnli", "--embeddings", sandbox / "work", "--lang", "de"), 2, "--task")


# --- other commands and options ------------------------------------------------------------------------------


def test_command_line_options_are_checked(cli, sandbox):
    refused(
        cli("latency", sandbox / "work", "--batch-sizes", "1,x"),
        2,
        "--batch-sizes: expected comma-separated whole numbers",
    )
    refused(cli("latency", sandbox / "work", "--lengths", "0"), 2, "--lengths")
    refused(cli("latency", sandbox / "work", "--repetitions", "1"), 2, "--repetitions")
    refused(cli("latency", sandbox / "work", "--precision", "fp8"), 2, "--precision")
    refused(cli("run", "--executor", "slurm", sandbox / "work" / "x.yaml"), 2, "--executor")
    refused(
        cli("demo", "--modes", "full,lora-fancy", "--output-dir", sandbox / "work" / "demo"), 2, "--modes", "lora-fancy"
    )
    assert not (sandbox / "work" / "demo").exists(), "the demo checks its options before writing"
    refused(cli("report", sandbox / "work" / "nothing"), 2, "nothing: no such directory")
    refused(cli("report", sandbox / "work"), 2, "no results and no plan.json")
    refused(cli("status", sandbox / "work"), 2, "no plan.json")
    refused(cli("latency", sandbox / "work"), 2, "no fine-tuned target results to time")
    refused(cli("frobnicate"), 2, "No such command")


def test_debug_shows_the_traceback(sandbox, capsys, monkeypatch):
    from xstilts.errors import ConfigError

    monkeypatch.delenv("XSTILTS_DEBUG", raising=False)
    with pytest.raises(ConfigError):
        main(["--debug", "run", str(sandbox / "work" / "nothing.yaml")])
