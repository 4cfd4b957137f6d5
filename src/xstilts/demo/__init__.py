"""`xstilts demo`: a real small X-STILTs study offline, from an empty cache, on CPU (README's quick start gives the
time measured, and on what).

1. Pretrain (or take from the cache) a tiny XLM-R-architecture encoder on generated text in four
   languages (see `languages.py` for how they differ from English).
2. Write the generated benchmark (`benchmark.py`) under the output directory.
3. Write an ordinary study config for it (`demo.yaml`) and run it with the same engine as any study:
   three orders of three English intermediate tasks (each task first once), chains up to k = 2, two seeds,
   two targets (tagging and QA) fine-tuned after every prefix and evaluated on dev and test in four languages, and two
   controls with known answers: an A/A refit of k = 0 (its "gain" must fall inside its interval) and a
   positive control (plenty of English QA before the QA target, which trains on little: its gain must be
   above zero beyond its interval); and the combination study of one task set (its chain against merges of
   its single-task stages and a mixture of both). Latency of the `full` chain (and of one merged model) is
   measured at the end.
4. Write the report: the answer with intervals and verdicts first, then the detail and the plots.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from xstilts.analysis.report import WrittenReport, write_report_files
from xstilts.config import load_config
from xstilts.demo.benchmark import write_benchmark, write_parallel
from xstilts.demo.pretrain import PretrainSettings, pretrain_encoder
from xstilts.errors import XstiltsError
from xstilts.rundir.layout import foreign_files
from xstilts.study.experiment import run_experiment

DEMO_POOL = ["demo_paraphrase", "demo_squad2", "demo_swag"]
DEMO_ORDERS = [DEMO_POOL[i:] + DEMO_POOL[:i] for i in range(len(DEMO_POOL))]  # each task first once
DEMO_MAX_LENGTH = 2
DEMO_SEEDS = [0, 1]
# Targets that a 0.6M-parameter encoder learns in English within the time limit (demo_nli needs about twice as
# long to stop depending on the seed by 10 points: it stays in the benchmark for studies of your own).
DEMO_TARGETS = ["demo_ner", "demo_qa"]
DEMO_POSITIVE_CONTROL = {"task": "demo_squad", "targets": ["demo_qa"], "training": {"max_train_examples": 4000}}
# The combination study on one task set of the chains (paraphrase and SQuAD 2.0, which the chain
# demo_paraphrase -> demo_squad2 trains in sequence): a TIES merge of the two single-task stages (lambda 1,
# density 0.5) and one mixture stage of both, each under both seeds. Every further method or grid point costs
# four target fine-tunes here (two targets, two seeds): the demo keeps to one, to stay within its time.
DEMO_COMBINE = {
    "sets": [DEMO_POOL[:2]],
    "methods": ["ties"],
    "weights": [1.0],
    "densities": [0.5],
    "mixture": True,
}

# Settings for a 0.6M-parameter encoder on tiny data: a far larger learning rate than the protocol's
# 1e-5 (tuned for XLM-R Large; 1e-3 beat 3e-4 on every demo target), short sequences, one validation at
# the end of each stage. Intermediate stages see 1000 examples once; targets as below.
DEMO_TRAINING: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 32,
    "max_length": 96,
    "doc_stride": 48,
    "epochs": 1,
    "max_train_examples": 1000,
    "eval_every_steps": 10_000,
    "eval_examples": 200,
}
DEMO_TARGET_TRAINING: dict[str, dict[str, Any]] = {
    "demo_nli": {"epochs": 2, "max_train_examples": 2000},
    "demo_ner": {"epochs": 2, "max_train_examples": 700},
    "demo_qa": {"epochs": 2, "max_train_examples": 1000, "learning_rate": 2e-3},
}
PARALLEL_DIR = "parallel"  # under the demo's data/: en.txt, x-lex.txt, ... aligned line by line
DEMO_EVAL_SIZE = 200  # examples per language and split


def demo_config(
    output_dir: Path,
    encoder_dir: Path,
    tasks: dict[str, Any],
    modes: tuple[str, ...] = ("full",),
    latency: bool = True,
) -> dict[str, Any]:
    """The demo study's config, written as `output_dir/demo.yaml`: paths relative to it, so the run directory can move."""
    local_tasks = {
        name: {**task, "data_dir": os.path.relpath(task["data_dir"], output_dir)} for name, task in tasks.items()
    }
    config = {
        "name": "xstilts demo: 3 orders x 2 seeds of up to 2 English intermediate tasks",
        "encoder": str(encoder_dir),
        "output_dir": ".",
        "seed": 0,
        "tasks": local_tasks,
        "study": {
            "pool": DEMO_POOL,
            "orders": {"explicit": DEMO_ORDERS},
            "max_chain_length": DEMO_MAX_LENGTH,
            "seeds": DEMO_SEEDS,
            "combine": DEMO_COMBINE,
        },
        "targets": [{"task": t, "training": DEMO_TARGET_TRAINING.get(t, {})} for t in DEMO_TARGETS],
        "training": DEMO_TRAINING,
        "controls": {"a_a": True, "positive": [DEMO_POSITIVE_CONTROL]},
        "chain_modes": list(modes),
    }
    config["diagnostics"] = {  # drift, alignment and transfer estimates after every prefix (seconds each)
        "probe_sentences": 400,
        "parallel_dir": f"data/{PARALLEL_DIR}",
        "parallel_sentences": 300,
        "estimate_examples": 500,
        "max_length": 64,
        "forgetting_examples": 200,
        "probe_steps": 100,
    }
    if latency:  # the demo encoder has 256 positions: short inputs, few repetitions (a CPU minute at most)
        config["latency"] = {"batch_sizes": [32], "lengths": [64], "repetitions": 20, "warmup": 3}
    return config


def check_demo_folder(output_dir: Path) -> None:
    """The demo writes its data, config and run into a new or empty folder or an earlier demo's, nowhere else."""
    if foreign_files(output_dir):
        raise XstiltsError(
            f"{output_dir} holds files that are not an earlier demo's; the demo writes its data, config and run "
            "into a new or empty folder (or an earlier demo's): choose another --output-dir"
        )


def run_demo(
    output_dir: str | Path = "runs/demo",
    progress: bool = True,
    pretrain: PretrainSettings = PretrainSettings(),
    train_size: int = 2000,
    modes: tuple[str, ...] = ("full",),
    latency: bool = True,
) -> WrittenReport:
    """Run the demo study (in each chain mode given, optionally timing the targets); returns what its report wrote."""
    output_dir = Path(output_dir).absolute()
    check_demo_folder(output_dir)
    encoder_dir = pretrain_encoder(pretrain, progress=progress)
    tasks = write_benchmark(output_dir / "data", train_size=train_size, eval_size=DEMO_EVAL_SIZE)
    write_parallel(output_dir / "data" / PARALLEL_DIR)
    config_path = output_dir / "demo.yaml"
    config_path.write_text(
        yaml.safe_dump(demo_config(output_dir, encoder_dir, tasks, modes, latency), sort_keys=False), encoding="utf-8"
    )
    run_experiment(load_config(config_path), progress=progress)
    return write_report_files(output_dir)
