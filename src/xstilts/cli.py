"""The command line: a thin layer over the Python API, with one error path for every command (`main`).

Bad input (a config, a data file, an argument) prints one line per problem and exits with status 2; a run
that fails for another reason (diverged training, a held run directory, a full disk) exits with 1. No
traceback unless `--debug` or XSTILTS_DEBUG=1 asks for one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import typer

from xstilts.chain_modes import CHAIN_MODES, FULL, MERGE_METHODS
from xstilts.errors import BAD_INPUT, RUN_FAILED, ConfigError, XstiltsError, describe_os_error
from xstilts.rundir.layout import RUN_LOG
from xstilts.terms import SelectionRule

DEVICE_NAMES = ("h100", "h200", "a100", "cpu")  # xstilts.study.price.DEVICES, named without importing it

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # -h as well, as git, pip and torchrun take it
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP_OPTIONS,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Cross-lingual intermediate-task training (X-STILTs).",
)
DEBUG_VARIABLE = "XSTILTS_DEBUG"
_debug = {"on": False}  # set by --debug for the command being run


def _print_version(value: bool) -> None:
    if value:
        from xstilts import __version__

        typer.echo(f"xstilts {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: bool = typer.Option(
        False, "--debug", help=f"Show the full traceback of an error (also: {DEBUG_VARIABLE}=1)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _debug["on"] = debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _quiet_libraries() -> None:
    """Keep the Hugging Face libraries' own progress bars and load reports out of our output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVEL_HELP = (
    f"Messages shown on stderr: debug, info (default), warning or error. RUN_DIR/{RUN_LOG} always gets info."
)


def _setup(log_level: str | None = None, verbose: bool = False, quiet: bool = False, training: bool = True) -> None:
    """Logging at the level the options ask for (`--log-level` wins over -v / -q), the libraries kept quiet
    (with `training`, transformers too: commands that only read files never import it).
    """
    from xstilts.logs import setup_logging

    if verbose and quiet:
        raise _usage_error("--verbose/--quiet", "give one of them, not both")
    setup_logging(log_level or ("debug" if verbose else "warning" if quiet else "info"))
    if training:
        _quiet_libraries()


def _usage_error(option: str, message: str) -> XstiltsError:
    return XstiltsError(f"{option}: {message}")


def _run_directory(path: Path) -> Path:
    """A RUN_DIR argument that names something other than a directory fails here, saying what it names."""
    if not path.exists():
        raise XstiltsError(f"{path}: no such directory (RUN_DIR is the output_dir of a run)")
    if not path.is_dir():
        raise XstiltsError(f"{path}: is a file, not a run directory (RUN_DIR is the output_dir of a run)")
    return path


def _int_list(option: str, text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise _usage_error(option, f"expected comma-separated whole numbers, got {text!r}") from None


OVERRIDES_HELP = (
    "Settings that replace the file's, as KEY.PATH=VALUE (VALUE is YAML; list items by index: targets.0.task=xnli). "
    "Paths given here are relative to the working directory."
)
LOG_LEVEL = typer.Option(None, "--log-level", help=LOG_LEVEL_HELP)
VERBOSE = typer.Option(False, "--verbose", "-v", help="Debug messages too (--log-level debug).")
QUIET = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr (--log-level warning).")
PROGRESS = typer.Option(
    True,
    "--progress/--no-progress",
    help="Progress bars; shown only on a terminal (a batch job's log gets progress lines instead).",
)


def _load_with_overrides(
    config: Path,
    overrides: list[str] | None,
    output_dir: Path | None,
    seed: int | None,
    require_data: bool = True,
    trackers: list[str] | None = None,
) -> Any:
    """The config with the command line's settings applied (`--output-dir`, `--seed`, `--tracker` after the
    KEY=VALUE ones)."""
    import json

    from xstilts.config import load_config

    given = list(overrides or []) + ([f"output_dir={output_dir}"] if output_dir is not None else [])
    given += [f"trackers={json.dumps(trackers)}"] if trackers else []
    return load_config(config, require_data=require_data, overrides=given, seed=seed)


@app.command()
def run(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Experiment YAML file."),
    overrides: list[str] = typer.Argument(None, metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Where the run writes (replaces output_dir)."),
    seed: int = typer.Option(None, "--seed", help="The run's seed (a study: study.seeds = [SEED])."),
    tracker: list[str] = typer.Option(
        None,
        "--tracker",
        metavar="<tensorboard|wandb|mlflow>",
        help="An experiment tracker (repeat for several; replaces the config's trackers).",
    ),
    progress: bool = PROGRESS,
    log_level: LogLevel = LOG_LEVEL,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
    executor: Literal["local", "ray"] = typer.Option(
        "local",
        help="local: this process (or the processes of accelerate launch / torchrun); ray: the plan's nodes as Ray tasks.",
    ),
    address: str = typer.Option(
        None, help="Ray cluster address (ray executor; default: start a local cluster, or RAY_ADDRESS)."
    ),
    gpus_per_stage: float = typer.Option(
        None, help="Ray executor: GPUs per stage task (default: 1 when the cluster has GPUs)."
    ),
    cpus_per_stage: int = typer.Option(1, help="Ray executor: CPUs per stage task (also its torch threads)."),
    rehearse: bool = typer.Option(
        False,
        "--rehearse",
        help="Walk the whole plan at the real model's shapes, one step and a few examples each, in a scratch "
        "directory removed after; print what would break (missing data, failures, memory, disk). Writes no run.",
    ),
    memory_limit: float = typer.Option(
        None, "--memory-limit", metavar="GB", help="Rehearsal: the memory the real run has (default: this machine's)."
    ),
    rehearse_examples: int = typer.Option(1, "--rehearse-examples", min=1, help="Rehearsal: examples per language."),
    rehearse_batch: int = typer.Option(1, "--rehearse-batch", min=1, help="Rehearsal: examples per training step."),
) -> None:
    """Train the chain's intermediate stages, fine-tune each target, and evaluate it in every language.

    A killed run resumes where it stopped when started again with the same config. Everything logged also
    goes to OUTPUT_DIR/run.log. With --rehearse, nothing is run for real: the exit status is 1 when the
    rehearsal found something that would break.

    \b
    Examples:
      xstilts run exp.yaml
      xstilts run exp.yaml training.learning_rate=2e-5 --seed 3 -o runs/lr2e-5
      xstilts run exp.yaml --executor ray --address auto --no-progress
      xstilts run exp.yaml --tracker tensorboard   # then: tensorboard --logdir OUTPUT_DIR/trackers
      xstilts run configs/paper/x-stilts.yaml --rehearse --memory-limit 80
    """
    _setup(log_level, verbose, quiet)
    if rehearse:
        _rehearse(
            config, overrides, output_dir, seed, tracker, progress, memory_limit, rehearse_examples, rehearse_batch
        )
        return
    experiment = _load_with_overrides(config, overrides, output_dir, seed, trackers=tracker)  # validated first
    from xstilts.analysis.report import write_report_files
    from xstilts.runtime.device import is_main_process
    from xstilts.study.experiment import run_experiment

    if executor == "ray":
        from xstilts.study.ray_executor import run_on_ray

        run_on_ray(experiment, address, progress, gpus_per_stage, cpus_per_stage)
    else:
        run_experiment(experiment, progress=progress)  # logs to OUTPUT_DIR/run.log once it holds the run
    if is_main_process():  # under `accelerate launch` / torchrun every process runs this; one reports
        _print_report(write_report_files(experiment.output_dir))


def _rehearse(
    config: Path,
    overrides: list[str] | None,
    output_dir: Path | None,
    seed: int | None,
    tracker: list[str] | None,
    progress: bool,
    memory_limit: float | None,
    examples: int,
    batch_size: int,
) -> None:
    """`run --rehearse`: the data may be missing (that is one thing a rehearsal finds)."""
    experiment = _load_with_overrides(config, overrides, output_dir, seed, require_data=False, trackers=tracker)
    if memory_limit is not None and memory_limit <= 0:
        raise _usage_error("--memory-limit", f"expected a positive number of GB, got {memory_limit}")
    from xstilts.rehearsal import format_findings, rehearse, would_break

    limit = int(memory_limit * 1e9) if memory_limit else None
    findings = rehearse(experiment, examples=examples, batch_size=batch_size, memory_limit=limit, progress=progress)
    typer.echo(format_findings(findings))
    if would_break(findings):
        raise typer.Exit(1)


@app.command()
def plan(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Experiment or study YAML file."),
    overrides: list[str] = typer.Argument(None, metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP),
    output_dir: Path = typer.Option(
        None, "--output-dir", "-o", help="The run directory whose finished stages count as done (replaces output_dir)."
    ),
    seed: int = typer.Option(None, "--seed", help="The run's seed (a study: study.seeds = [SEED])."),
    device: str = typer.Option(
        None, "--device", help="Price the study on this device: " + ", ".join(DEVICE_NAMES) + "."
    ),
    utilisation: float = typer.Option(
        0.4, "--utilisation", min=0.01, max=1.0, help="The fraction of the device's peak FLOP/s assumed (--device)."
    ),
) -> None:
    """Print the stage graph (shared prefixes once) and what the run would train and evaluate; with --device, its
    price: training tokens, FLOPs, device-hours and disk per stage and in total.

    Works before the data is downloaded: identities are then marked provisional and the missing data is listed.

    \b
    Examples:
      xstilts plan configs/scaling/xlmr-large-9-tasks-3-orders.yaml
      xstilts plan exp.yaml study.max_chain_length=2
      xstilts plan configs/paper/x-stilts.yaml --device h100
    """
    from xstilts.config import missing_data
    from xstilts.rundir.runs import RunDirectory
    from xstilts.study.plan import build_plan, format_plan

    _setup(training=False)
    experiment = _load_with_overrides(config, overrides, output_dir, seed, require_data=False)
    if experiment.study is not None and experiment.study.search is not None:
        _print_search_plan(experiment)
        return
    registry = experiment.registry()
    study_plan = build_plan(experiment, registry, RunDirectory(experiment.output_dir).store)
    typer.echo(format_plan(study_plan, experiment, registry))
    from xstilts.study.preflight import shape_problems
    from xstilts.study.price import encoder_shape

    with contextlib.suppress(XstiltsError):  # a hub model not downloaded yet: its shape is checked when it is
        for problem in shape_problems(experiment, registry, encoder_shape(experiment.encoder)):
            typer.echo(f"\nwould fail: {problem}")
    if device is not None:
        from xstilts.study.price import DEVICES, encoder_shape, format_price, price_plan

        if device not in DEVICES:
            raise _usage_error("--device", f"expected one of {', '.join(DEVICES)}, got {device!r}")
        shape = encoder_shape(experiment.encoder)
        priced = price_plan(study_plan, experiment, registry, shape)
        typer.echo("\n" + format_price(priced, shape, DEVICES[device], utilisation))
    missing = missing_data(experiment)
    if missing:
        typer.echo(
            f"\ndata not on disk yet ({len(missing)}; `xstilts run` needs it, `xstilts data prepare` writes it): {missing[0]}"
            + (" ..." if len(missing) > 1 else "")
        )


@app.command("config")
def show_config(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Experiment or study YAML file."),
    overrides: list[str] = typer.Argument(None, metavar="KEY.PATH=VALUE", help=OVERRIDES_HELP),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Replaces output_dir."),
    seed: int = typer.Option(None, "--seed", help="The run's seed (a study: study.seeds = [SEED])."),
) -> None:
    """Print the config fully resolved (every default filled, overrides applied, paths absolute), as a run would
    use it and save it in config.resolved.yaml; trains nothing and needs no data.

    \b
    Examples:
      xstilts config exp.yaml
      xstilts config exp.yaml training.learning_rate=2e-5 --seed 3 > resolved.yaml
    """
    from xstilts.config import config_to_yaml

    _setup(training=False)
    typer.echo(config_to_yaml(_load_with_overrides(config, overrides, output_dir, seed, require_data=False)), nl=False)


@app.command()
def env() -> None:
    """Versions, devices and cache locations, to paste into a bug report.

    \b
    Example:
      xstilts env > env.txt
    """
    import importlib.metadata
    import platform

    from xstilts import __version__
    from xstilts.data.cache import cache_root

    _setup(training=False)
    lines = [f"xstilts {__version__}", f"python {platform.python_version()} ({platform.platform()})"]
    for package in ("torch", "transformers", "accelerate", "datasets", "peft", "faiss-cpu", "faiss-gpu", "ray"):
        try:
            lines.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    lines += _device_lines()
    hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    lines += [
        f"xstilts cache: {cache_root()} (XSTILTS_CACHE)",
        f"Hugging Face cache: {hf_home} (HF_HOME); offline: {os.environ.get('HF_HUB_OFFLINE', '0')} (HF_HUB_OFFLINE)",
        f"CPU cores: {os.cpu_count()}",
    ]
    typer.echo("\n".join(lines))


def _device_lines() -> list[str]:
    import torch

    lines = [f"torch threads: {torch.get_num_threads()}"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            lines.append(
                f"cuda:{index} {properties.name}, {properties.total_memory / 2**30:.0f} GiB, "
                f"capability {properties.major}.{properties.minor}, bf16 {torch.cuda.is_bf16_supported()}"
            )
        lines.append(f"CUDA {torch.version.cuda}")
    else:
        lines.append("no CUDA device (training runs on CPU)")
    return lines


def _print_search_plan(experiment: Any) -> None:
    """A searching study's plan is made round by round: print its bounds against the exhaustive study."""
    from xstilts.results.search import exhaustive_stage_count
    from xstilts.study.search import most_stages, prefix_budget, runs_per_prefix

    study, search = experiment.study, experiment.study.search
    limit = len(study.pool) if study.max_chain_length is None else study.max_chain_length
    width = 1 if search.strategy == "greedy" else search.width
    runs = runs_per_prefix(experiment)
    bound = most_stages(len(study.pool), limit, width, prefix_budget(experiment)) * runs
    exhaustive = exhaustive_stage_count(len(study.pool), limit) * runs
    ranked = (
        "on the targets' mean dev score"
        if search.guide == "dev"
        else "by the diagnostics' transfer estimate (targets are fine-tuned after k = 0 and the chain found only)"
    )
    typer.echo(
        f"a {search.strategy} search (width {width}) over {len(study.pool)} tasks up to K = {limit}, seeds "
        f"{study.seeds}, chain modes {', '.join(experiment.chain_modes)}: its chains are chosen round by round "
        f"{ranked}, so the stage graph is not known in advance"
    )
    typer.echo(f"stages to train, at most          {bound:>8}  (every seed and chain mode: {runs} per prefix)")
    typer.echo(f"stages of the exhaustive study     {exhaustive:>8}  (orders: {{all: true}})")
    if search.budget is not None:
        typer.echo(f"budget                            {search.budget:>8}  stages")


@app.command()
def demo(
    output_dir: Path = typer.Option(
        Path("runs/demo"), "--output-dir", "-o", help="Where the demo writes its data, stages and report."
    ),
    progress: bool = PROGRESS,
    log_level: LogLevel = LOG_LEVEL,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
    modes: str = typer.Option(FULL, help=f"Comma-separated chain modes: {', '.join(CHAIN_MODES)}."),
    latency: bool = typer.Option(
        True, "--latency/--no-latency", help="Time every target model against chain length at the end."
    ),
) -> None:
    """A complete small study offline: a tiny self-pretrained encoder, generated languages, chains of up to two
    tasks in three orders and two seeds, controls, latency and the report (README's quick start gives the time
    measured, and on what).

    \b
    Examples:
      xstilts demo
      xstilts demo -o /tmp/demo --modes full,lora-merged --no-latency
    """

    chain_modes = tuple(mode.strip() for mode in modes.split(","))
    unknown = [mode for mode in chain_modes if mode not in CHAIN_MODES]
    if unknown or len(set(chain_modes)) != len(chain_modes):
        raise _usage_error("--modes", f"expected distinct chain modes from {', '.join(CHAIN_MODES)}, got {modes!r}")
    _setup(log_level, verbose, quiet)
    from xstilts.demo import check_demo_folder, run_demo
    from xstilts.logs import run_log

    started = time.perf_counter()
    check_demo_folder(output_dir)  # before its log is written there
    with run_log(output_dir):
        _print_report(run_demo(output_dir, progress=progress, modes=chain_modes, latency=latency))
    typer.echo(f"demo finished in {time.perf_counter() - started:.0f} s")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(
        ..., metavar="RUN_DIR", help="A run's output directory, or several to merge into one report."
    ),
    output_dir: Path = typer.Option(
        None, "--output-dir", "-o", help="Where a merged report goes (default: the one run directory)."
    ),
    selection: SelectionRule = typer.Option(None, help="How choices are made (default: the run's `selection`)."),
) -> None:
    """Write report.md, report.html, results.csv/json and the plots for a run (finished or not), or for several runs
    merged (the same stage in two runs is one result; the same cell from different models is an error).

    \b
    Examples:
      xstilts report runs/demo
      xstilts report runs/singles runs/mixture -o runs/paper
    """
    from xstilts.analysis.report import write_report

    run_dirs = [_run_directory(path) for path in run_dirs]
    typer.echo(f"report: {write_report(run_dirs if len(run_dirs) > 1 else run_dirs[0], output_dir, selection)}")


@app.command()
def status(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run's output directory (running or finished)."),
) -> None:
    """What a run has done: stages done, in progress (last checkpoint) or waiting, and results found.

    \b
    Example:
      xstilts status runs/demo
    """
    from xstilts.study.status import run_status

    typer.echo(run_status(_run_directory(run_dir)))


@app.command()
def latency(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished run's output directory."),
    batch_sizes: str = typer.Option("1,32", help="Comma-separated batch sizes."),
    lengths: str = typer.Option("128,512", help="Comma-separated sequence lengths (tokens, no padding)."),
    repetitions: int = typer.Option(30, help="Timed forward passes per model and shape (interleaved)."),
    warmup: int = typer.Option(5, help="Untimed forward passes per model first."),
    precision: Literal["auto", "fp32", "bf16"] = typer.Option(
        "auto", help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16."
    ),
    progress: bool = PROGRESS,
    log_level: LogLevel = LOG_LEVEL,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Time every trained target model of a run against chain length; adds latency to the report.

    \b
    Example:
      xstilts latency runs/demo --batch-sizes 1,32 --lengths 128 --precision bf16
    """
    from pydantic import ValidationError

    from xstilts.settings import LatencySettings

    options = {
        "batch_sizes": _int_list("--batch-sizes", batch_sizes),
        "lengths": _int_list("--lengths", lengths),
        "repetitions": repetitions,
        "warmup": warmup,
        "precision": precision,
    }
    try:
        settings = LatencySettings(**options)  # the same type and limits as the config's latency block
    except ValidationError as error:
        first = error.errors()[0]
        raise _usage_error("--" + str(first["loc"][0]).replace("_", "-"), first["msg"]) from None
    _setup(log_level, verbose, quiet)
    from xstilts.analysis.report import write_report
    from xstilts.logs import run_log
    from xstilts.rundir.lock import run_lock
    from xstilts.study.latency import measure_run

    _run_directory(run_dir)
    with run_lock(run_dir), run_log(run_dir):
        result = measure_run(run_dir, settings, progress)
    for group in result["groups"]:
        typer.echo(f"{group['target']} batch {group['batch_size']} x {group['length']}: {group['verdict']}")
    typer.echo(f"report: {write_report(run_dir)}")


@app.command()
def merge(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run whose single-task stages are merged."),
    tasks: str = typer.Option(..., "--tasks", help="Comma-separated tasks whose single-task (k = 1) stages to merge."),
    method: str = typer.Option("task_arithmetic", help="A merge method: " + ", ".join(MERGE_METHODS) + "."),
    weight: float = typer.Option(1.0, "--weight", help="lambda: the scale of the combined task vectors."),
    density: float = typer.Option(None, "--density", help="The fraction of each task vector kept (TIES, DARE)."),
    seed: int = typer.Option(0, "--seed", help="The seed the single-task stages were trained under."),
    mode: str = typer.Option(FULL, "--mode", help="Their chain mode: full or lora-merged."),
    merge_seed: int = typer.Option(0, "--merge-seed", help="The seed of DARE's drop masks."),
) -> None:
    """Merge single-task stages of a run into one encoder (a stage of the run), with no training.

    The merged encoder is a Hugging Face model directory: give it as `encoder:` of another config to train
    on top of the merge, or load it with AutoModel.

    \b
    Example:
      xstilts merge runs/demo --tasks demo_paraphrase,demo_swag --method ties --density 0.5
    """
    from xstilts.logs import run_log
    from xstilts.rundir.lock import run_lock
    from xstilts.rundir.stage_directory import StageDirectory
    from xstilts.study.merge import merge_in_run
    from xstilts.train.request import MergeSettings

    _setup(quiet=True)
    _run_directory(run_dir)
    names = [task.strip() for task in tasks.split(",") if task.strip()]
    if not names:
        raise _usage_error("--tasks", "expected one or more comma-separated task names")
    settings = MergeSettings(method, weight, density, merge_seed)  # type: ignore[arg-type]  # checked inside
    with run_lock(run_dir), run_log(run_dir):
        stage_dir, built = merge_in_run(run_dir, names, settings, seed, mode)
    encoder = StageDirectory(stage_dir).encoder_dir
    typer.echo(f"{'merged' if built else 'already merged'} {'+'.join(names)} ({method}): {encoder}")


@app.command("shaped-encoder")
def shaped_encoder(
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="The Hugging Face model directory to write."),
    like: str = typer.Option("xlm-roberta-large", "--like", help="The encoder whose shapes to copy."),
    text: list[Path] = typer.Argument(
        None, metavar="TEXT_FILE...", help="Text files the tokenizer learns from (default: the demo's generated text)."
    ),
    layers: int = typer.Option(None, "--layers", min=1, help="Fewer layers than the real model (every width kept)."),
) -> None:
    """Write an encoder with a real model's shapes and random weights, and a tokenizer with its vocabulary size,
    offline: for rehearsing a study, benchmarks and tests where the hub cannot be reached.

    \b
    Example:
      xstilts shaped-encoder --like xlm-roberta-large -o models/xlmr-large-shaped data/xnli/dev-*.tsv
    """
    from xstilts.demo.benchmark import corpus_sentences
    from xstilts.demo.shaped import build_shaped_encoder, text_lines

    _setup(quiet=True)
    for path in text or []:
        if not path.is_file():
            raise _usage_error("TEXT_FILE", f"{path}: no such file")
    sentences = text_lines(text) if text else corpus_sentences(2000)
    directory = build_shaped_encoder(output_dir, like, sentences, layers)
    typer.echo(f"wrote an encoder shaped like {like}{f' ({layers} layers)' if layers else ''}: {directory}")


@app.command()
def score(
    task: str = typer.Option(..., "--task", help="Task name (xnli, pawsx, udpos, panx, xquad, mlqa, tydiqa, ...)."),
    lang: str = typer.Option(None, "--lang", help="Language of the gold and prediction files."),
    gold: Path = typer.Option(None, "--gold", help="Gold file: the task's data file or an XTREME label file."),
    predictions: Path = typer.Option(None, "--predictions", help="Predictions in the XTREME leaderboard format."),
    gold_dir: Path = typer.Option(None, "--gold-dir", help="Directory of test-LANG.* gold files."),
    predictions_dir: Path = typer.Option(None, "--predictions-dir", help="Directory of test-LANG.* prediction files."),
    config: Path = typer.Option(
        None,
        "--config",
        help="An experiment config (or the resolved config in a run directory) whose own tasks to know too.",
    ),
) -> None:
    """Score predictions made anywhere, printing the metrics as JSON.

    \b
    Examples:
      xstilts score --task panx --gold-dir data/panx --predictions-dir submission/panx
      xstilts score --task xnli --lang de --gold test-de.tsv --predictions pred-de.tsv
    """
    from xstilts.evaluate.scoring import check_and_score, score_directories
    from xstilts.files import json_text
    from xstilts.tasks import default_registry

    if config is not None:
        from xstilts.config import load_config

        registry = load_config(config, require_data=False).registry()
    else:
        registry = default_registry()
    spec = registry.get(task)
    if gold_dir and predictions_dir:
        result = score_directories(spec, gold_dir, predictions_dir)
    elif gold and predictions and lang:
        if lang not in spec.languages:
            raise _usage_error(
                "--lang", f"{lang!r} is not a language of {task}; expected one of {', '.join(spec.languages)}"
            )
        scored = check_and_score(spec, lang, gold, predictions)
        result = {"task": task, "language": lang, "metrics": scored.metrics, "predictions": scored.counts}
    else:
        raise _usage_error("score", "give --lang, --gold and --predictions, or --gold-dir and --predictions-dir")
    typer.echo(json_text(result))


@app.command("export-predictions")
def export_predictions(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run's output directory."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where the submission folders go."),
    selection: SelectionRule = typer.Option(None, help="How the model per target is chosen (default: the run's)."),
) -> None:
    """Write the test predictions of the model chosen on dev for each target, in XTREME's submission layout
    (OUT/<task>/test-<lang>.*), and say which chain each comes from.

    \b
    Example:
      xstilts export-predictions runs/paper -o submission
    """
    from xstilts.export.submission import export_predictions as export

    for target, exported in export(_run_directory(run_dir), output_dir, selection).items():
        how = "the other targets' dev scores" if exported["by_other_targets"] else "its dev score"
        typer.echo(f"{target:<14} {exported['chain']:<50} (chosen by {how})  {len(exported['files'])} files")
    typer.echo(f"predictions: {output_dir}")


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run's output directory."),
    chain: str = typer.Option(
        ...,
        "--chain",
        help="The chain label, as in results/ and by-chain/ (e.g. k2-mnli+squad_v2, lora-merged-k1-mnli, k1-mnli-seed2).",
    ),
    target: str = typer.Option(..., "--target", help="The target task fine-tuned after that chain."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="The Hugging Face model directory to write."),
    push_to_hub: str = typer.Option(
        None, "--push-to-hub", help="Also upload to this hub repository (user/name; needs a token)."
    ),
) -> None:
    """Write a fine-tuned target as a Hugging Face model: AutoModelFor... with the standard head and label names,
    its tokenizer and a model card with the chain, settings and dev/test scores per language. The export is
    checked to compute xstilts' own logits before it is written.

    \b
    Examples:
      xstilts export runs/demo --chain k1-demo_swag --target demo_ner -o models/ner
      xstilts export runs/paper --chain k1-mnli --target xnli -o xnli-mnli --push-to-hub me/xlmr-mnli-xnli
    """
    _setup(quiet=True)
    from xstilts.export.model import export_model

    exported = export_model(_run_directory(run_dir), chain, target, output_dir, push_to_hub)
    typer.echo(
        f"exported {exported.target} after {exported.chain_label} ({exported.kind}) to {exported.directory} "
        f"(largest logit difference from xstilts' model on sample inputs: {exported.max_logit_difference:.1e})"
    )
    if push_to_hub:
        typer.echo(f"pushed to https://huggingface.co/{push_to_hub}")


@app.command("retrieval-eval")
def retrieval_eval(
    task: Literal["tatoeba", "bucc2018"] = typer.Option(..., "--task", help="tatoeba or bucc2018."),
    embeddings: Path = typer.Option(
        ..., "--embeddings", help="Directory of .npy embeddings (see the README for file names)."
    ),
    lang: str = typer.Option(..., "--lang", help="The non-English language."),
) -> None:
    """Score sentence embeddings made by any model on Tatoeba or BUCC, printing JSON.

    \b
    Example:
      xstilts retrieval-eval --task tatoeba --embeddings emb/ --lang de
    """
    from xstilts.evaluate.retrieval import bucc_from_embeddings, tatoeba_from_embeddings
    from xstilts.files import json_text

    if not embeddings.is_dir():
        raise _usage_error("--embeddings", f"{embeddings} is not a directory")
    runners = {"tatoeba": tatoeba_from_embeddings, "bucc2018": bucc_from_embeddings}
    result = runners[task](embeddings, lang)
    typer.echo(json_text({"task": task, "language": lang, "metrics": result}))


data_app = typer.Typer(no_args_is_help=True, context_settings=HELP_OPTIONS, help="Prepare and check task data.")
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    tasks: str = typer.Option(..., "--tasks", help="Comma-separated task names, or 'all'."),
    output_dir: Path = typer.Option(
        ..., "--output-dir", "-o", help="Directory for the prepared copy (a config's data_dir)."
    ),
    source: Path = typer.Option(None, "--from", help="Directory with files in the upstream or XTREME layouts."),
    from_hub: bool = typer.Option(
        False, "--from-hub", help="Load the public Hugging Face hub copies (needs network once)."
    ),
    tag_inventory: Path = typer.Option(
        None,
        "--tag-inventory",
        help="CCG's fixed supertag inventory (one tag per line, or jiant's tags_to_id.json); "
        "default: the training split's tags. Tags outside it become one unknown class.",
    ),
    log_level: LogLevel = LOG_LEVEL,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
) -> None:
    """Write a validated local copy of the tasks' data that runs use offline.

    \b
    Examples:
      xstilts data prepare --tasks xnli,pawsx,squad_v1 -o data --from-hub
      xstilts data prepare --tasks all -o data --from ~/xtreme/download
    """
    _setup(log_level, verbose, quiet)
    from xstilts.data.prepare import prepare
    from xstilts.tasks import default_registry

    registry = default_registry()
    names = (
        [n for n in registry.names() if registry.get(n).kind != "retrieval"]
        if tasks == "all"
        else [t.strip() for t in tasks.split(",") if t.strip()]
    )
    for name in names:
        registry.get(name)
    if source is not None and not source.is_dir():
        raise _usage_error(
            "--from",
            f"{source}: {'is a file' if source.exists() else 'no such directory'}; expected the directory of upstream or XTREME files",
        )
    reports = prepare(registry, names, output_dir, source, from_hub, tag_inventory)
    for report in reports:
        unknown = f"  ({report.unknown_tags} unknown tags)" if report.unknown_tags else ""
        typer.echo(
            f"{report.task:<14} {report.split:<5} {report.language:<4} {report.examples:>8}  "
            f"<- {', '.join(report.files)}{unknown}"
        )
    missing = sorted(set(names) - {r.task for r in reports})
    if missing:
        typer.echo(f"no data found for: {', '.join(missing)}", err=True)
        raise typer.Exit(2)


@data_app.command("check")
def data_check(
    directory: Path = typer.Argument(
        ..., metavar="DIRECTORY", help="A directory of upstream files or a prepared copy."
    ),
) -> None:
    """Count examples per task, split and language, and report every problem found.

    \b
    Example:
      xstilts data check ~/xtreme/download
    """
    from xstilts.data.prepare import check
    from xstilts.tasks import default_registry

    if not directory.is_dir():
        raise XstiltsError(
            f"{directory}: {'is a file' if directory.exists() else 'no such directory'}; expected a directory of task files"
        )
    reports, unrecognised = check(default_registry(), directory)
    if not reports:
        found = f"none of its {len(unrecognised)} files belongs" if unrecognised else "it holds no file that belongs"
        raise XstiltsError(
            f"{directory}: {found} to a known task layout (upstream, XTREME or a prepared copy; see xstilts data prepare --help)"
        )
    problems = warnings = 0
    for report in reports:
        files = ", ".join(
            str(Path(f).relative_to(directory)) if Path(f).is_relative_to(directory) else f for f in report.files
        )
        typer.echo(f"{report.task:<14} {report.split:<5} {report.language:<4} {report.examples:>8}  {files}")
        for problem in report.problems:
            typer.echo(f"  problem: {problem}")
        for warning in report.warnings:
            typer.echo(f"  warning: {warning}")
        problems += len(report.problems)
        warnings += len(report.warnings)
    for path in unrecognised:
        typer.echo(f"(not a file of any known task layout) {path.relative_to(directory)}")
    typer.echo(
        f"{len(reports)} files checked, {sum(r.examples for r in reports)} examples, {problems} problems, {warnings} warnings"
    )
    if problems:
        raise typer.Exit(1)


def _print_report(written: Any) -> None:
    """The end of a run: the answer (the report's headline) and the files written."""
    typer.echo(written.headline.split("\n", 2)[-1].strip())  # without the report's title
    typer.echo("\nwritten:")
    for path in written.files:
        if path.is_file():
            typer.echo(f"  {path}")


class Stopped(BaseException):
    """SIGTERM (a scheduler preempting the job, `kill`) or SIGINT (Ctrl-C), raised where the process is, so that
    every `finally` runs: the run lock is released and the log says so. Not an Exception, and not
    KeyboardInterrupt (which typer turns into a silent exit status): nothing on the way may swallow it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


RESUMES = "a run resumes from its last completed stage and mid-stage checkpoint when started again"
STOPPED = {2: "interrupted (Ctrl-C)", 15: "terminated (SIGTERM)"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status; every error ends here as plain lines (see the module doc).

    Ctrl-C exits with 130 and SIGTERM with 143 (128 + the signal, as shells report them), after the run lock is
    released; what was written before stays intact (every file is written aside and renamed)."""
    import signal
    import threading

    _debug["on"] = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    owns_signals = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)} if owns_signals else {}
    for signum in previous:
        signal.signal(signum, _stop)
    try:
        status = app(args=list(argv) if argv is not None else None, prog_name="xstilts", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except Exception as error:  # noqa: BLE001 - the one boundary where every error becomes a message
        if _debug["on"]:
            raise
        return _report_error(error)
    except Stopped as stopped:
        typer.echo(f"{STOPPED.get(stopped.signum, f'stopped by signal {stopped.signum}')}; {RESUMES}", err=True)
        return 128 + stopped.signum
    finally:
        for signum, handler in previous.items():  # the caller's (a test runner's, a notebook's) handlers again
            signal.signal(signum, handler)


def _click_error(error: Exception, name: str) -> bool:
    """Whether `error` is click's exception `name` (typer ships its own copy of click, so match by class name)."""
    return any(cls.__name__ == name for cls in type(error).__mro__)


def _report_error(error: Exception) -> int:
    """Print `error` as one line per problem on stderr; returns the exit status it calls for."""
    lines: list[str]
    if _click_error(error, "NoArgsIsHelpError"):  # `xstilts` or `xstilts data` alone: the help
        typer.echo(error.ctx.get_help() if error.ctx is not None else error.format_message())
        return 0
    if _click_error(error, "UsageError"):  # click words it, naming the option; we print it as ours
        if error.ctx is not None:
            help_option = error.ctx.help_option_names[-1] if error.ctx.help_option_names else "--help"
            typer.echo(f"{error.ctx.get_usage()}\nTry '{error.ctx.command_path} {help_option}' for help.", err=True)
        typer.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    if _click_error(error, "ClickException"):
        typer.echo(f"error: {error.format_message()}", err=True)
        return error.exit_code
    if _click_error(error, "Abort"):  # an end of input at a prompt
        typer.echo("aborted", err=True)
        return RUN_FAILED
    if isinstance(error, ConfigError):
        lines, status = error.problems, BAD_INPUT
    elif isinstance(error, XstiltsError):
        lines, status = [str(error)], error.exit_status
    elif isinstance(error, OSError):
        lines, status = [describe_os_error(error)], RUN_FAILED
    elif isinstance(error, UnicodeDecodeError):
        lines, status = [f"a file is not valid UTF-8 ({error.reason} at byte {error.start})"], BAD_INPUT
    elif isinstance(error, MemoryError):
        lines, status = ["out of memory; try a smaller batch_size, eval_batch_size or max_length"], RUN_FAILED
    else:
        lines = [
            f"internal error: {type(error).__name__}: {error} (this is a bug in xstilts; run the command again with --debug and report the traceback)"
        ]
        status = RUN_FAILED
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
