"""Training throughput: xstilts' stage trainer against the Hugging Face Trainer, on the same model and data.

Three ways to train the same encoder + head with the same hyperparameters on the same features:

- `xstilts`: `xstilts.train.loop.train` (length-grouped dynamic padding, no host-device sync in the step,
  fused AdamW, bf16 autocast and batches collated ahead in a thread on GPU, uniform-draw dropout masks
  on CPU (`xstilts.runtime.cpu_dropout`), the last layer for the first token only under pooled heads);
- `trainer-pad-max`: `transformers.Trainer` with every example padded to the maximum length, as the
  XTREME baseline scripts do;
- `trainer-best`: `transformers.Trainer` at its best: dynamic padding, `group_by_length`, the same
  precision, fused AdamW, SDPA attention (the transformers default, as for xstilts).

Tasks: pair classification (XNLI English dev from ../shared/data/real when present: real NLI lengths,
max length 128 as in XTREME's baselines) and extractive QA (XQuAD English: 384-token windows, stride 128).
All train exactly one epoch over the same tokenised features (so every method trains on the same real
tokens, in its own order); real tokens are the non-pad tokens of the batches trained on. A fourth
row, `xstilts-compile`, is xstilts with `compile: true` (its compile time shows in time to first step). Each (method, task) runs in its own process, so peak memory is that process's own.

    python benchmarks/train_throughput.py                       # CPU, tiny model (several runs per method; the
                                                                # record holds each run's time)
    python benchmarks/train_throughput.py --model xlmr-large    # GPU: XLM-R Large architecture, random weights

Writes benchmarks/results/train_throughput-<date>-<device>.json and prints a table. On GPU the record
also holds the model FLOPs utilisation of the xstilts run (6 x parameters x tokens plus attention, per
second, over the card's bf16 dense peak given with --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("xstilts", "xstilts-compile", "trainer-pad-max", "trainer-best")
MODELS = {
    # name: (hidden, layers, heads, intermediate, vocab)
    "tiny": (256, 4, 4, 1024, 8000),
    "xlmr-large": (1024, 24, 16, 4096, 250002),
}
TASKS = {
    # name: kind, batch size, max length, learning rate
    "pair": ("classification", 32, 128, 2e-5),
    "qa": ("qa", 16, 384, 3e-5),
    # every sequence exactly 256 tokens under a span head (no padding, every layer computed for every
    # token): the model FLOPs utilisation figure, at the length the issue names
    "fixed256": ("qa", 32, 256, 3e-5),
}
DEFAULT_STEPS = {"cpu": {"pair": 60, "qa": 16, "fixed256": 8}, "cuda": {"pair": 200, "qa": 100, "fixed256": 100}}


# --- data, tokenizer and model (built once, shared by the three workers) ------------------------------


def load_examples(task: str) -> tuple[list[dict], str]:
    """Real English examples when ../shared/data/real is there, else the demo generator's."""
    if task == "pair" and (REAL / "xnli" / "dev-en.tsv").is_file():
        from xstilts.readers.tabular import read_xtreme_pairs

        return read_xtreme_pairs(REAL / "xnli" / "dev-en.tsv"), "XNLI en dev (real)"
    if task == "qa" and (REAL / "xquad" / "xquad.en.json").is_file():
        from xstilts.readers.squad import read_squad_json

        return read_squad_json(REAL / "xquad" / "xquad.en.json"), "XQuAD en (real)"
    from xstilts.demo.benchmark import _examples
    from xstilts.demo.languages import LANGUAGES

    name = "demo_nli" if task == "pair" else "demo_qa"
    return _examples(name, LANGUAGES["en"], 2000, seed=0), f"{name} (generated; ../shared/data/real absent)"


def task_spec(task: str, directory: Path):
    from xstilts.tasks.registry import LocalFiles, TaskSpec

    if task == "pair":
        return TaskSpec(
            name="bench_pair",
            kind="classification",
            languages=("en",),
            data=LocalFiles(directory),
            labels=("contradiction", "entailment", "neutral"),
        )
    return TaskSpec(name="bench_qa", kind="qa", languages=("en",), data=LocalFiles(directory))


def prepare(workdir: Path, model: str, tasks: list[str]) -> dict:
    """Tokenizer trained on the benchmark text, a randomly initialised encoder, and the examples, on disk."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xstilts.demo.pretrain import train_tokenizer
    from xstilts.readers.jsonl import write_jsonl

    text = []
    sources = {}
    for task in ("pair", "qa"):  # the tokenizer learns from both, whichever tasks run
        examples, sources[task] = load_examples(task)
        write_jsonl(workdir / f"{task}.jsonl", examples)
        text += [e.get("text_a") or e.get("context") for e in examples] + [
            e.get("text_b") or e.get("question") for e in examples
        ]
    sources["fixed256"] = "random token ids, 256 per sequence"
    hidden, layers, heads, intermediate, vocab = MODELS[model]
    tokenizer = train_tokenizer([t for t in text if t], vocab_size=min(vocab, 8000), max_length=512)
    config = XLMRobertaConfig(
        vocab_size=max(vocab, len(tokenizer)),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(workdir / "encoder")
    tokenizer.save_pretrained(workdir / "encoder")
    return {task: sources[task] for task in tasks}


def features_for(workdir: Path, task: str, tokenizer, settings) -> tuple[list[dict], float]:
    """xstilts features (from the feature cache when warm) and the seconds it took."""
    from xstilts.data.examples import build_features
    from xstilts.readers.jsonl import read_jsonl

    started = time.perf_counter()
    if task == "fixed256":
        return fixed_length_features(tokenizer, settings.max_length, count=4096), time.perf_counter() - started
    examples = [record for _, record in read_jsonl(workdir / f"{task}.jsonl")]
    features = build_features(task_spec(task, workdir), examples, tokenizer, settings, training=True)
    return features, time.perf_counter() - started


def fixed_length_features(tokenizer, length: int, count: int) -> list[dict]:
    """QA features of exactly `length` random tokens (speed does not depend on the tokens)."""
    import numpy as np

    rng = np.random.default_rng(0)
    features = []
    for index in range(count):
        ids = rng.integers(len(tokenizer.all_special_ids) + 1, len(tokenizer), size=length)
        ids[0], ids[-1] = tokenizer.bos_token_id, tokenizer.eos_token_id
        start = int(rng.integers(1, length - 10))
        features.append(
            {
                "input_ids": ids,
                "offsets": np.full((length, 2), -1, dtype=np.int32),
                "example_index": index,
                "start_position": start,
                "end_position": start + 3,
            }
        )
    return features


# --- workers ---------------------------------------------------------------------------------------------


def settings_for(task: str, steps: int, device: str):
    from xstilts.settings import TrainingSettings

    _, batch, length, lr = TASKS[task]
    return TrainingSettings(
        learning_rate=lr,
        batch_size=batch,
        max_length=length,
        doc_stride=128,
        max_steps=steps,
        warmup_ratio=0.1,
        weight_decay=0.01,
        eval_every_steps=10**9,
        patience=None,
        log_every_steps=5,
        precision="bf16" if device == "cuda" else "fp32",
    )


def worker(method: str, task: str, workdir: Path, steps: int, device: str) -> dict:
    import torch

    from xstilts.train.modeling import load_tokenizer

    torch.manual_seed(0)
    started = time.perf_counter()
    tokenizer = load_tokenizer(workdir / "encoder")
    settings = settings_for(task, steps, device)
    features, tokenise_seconds = features_for(workdir, task, tokenizer, settings)
    features = features[
        : steps * settings.batch_size
    ]  # one epoch of the same features for every method: same real tokens
    if method == "xstilts-compile":
        settings = settings.model_copy(update={"compile": True})
    result = (
        run_xstilts(task, workdir, features, tokenizer, settings)
        if method.startswith("xstilts")
        else run_trainer(method, task, workdir, features, tokenizer, settings, device)
    )
    result.update(
        method=method,
        task=task,
        wall_seconds=time.perf_counter() - started,
        tokenise_seconds=tokenise_seconds,
        examples=steps * settings.batch_size,
        real_tokens_per_second=result["real_tokens"] / result["train_seconds"],
        padded_tokens_per_second=result["padded_tokens"] / result["train_seconds"],
        peak_memory_mb=(torch.cuda.max_memory_allocated() / 2**20)
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        threads=torch.get_num_threads(),
    )
    return result


def run_xstilts(task: str, workdir: Path, features: list[dict], tokenizer, settings) -> dict:
    import torch

    import xstilts.train.loop as training
    from xstilts.train.modeling import MultiTaskModel, load_encoder

    spec = task_spec(task, workdir)
    accelerator = training.get_accelerator()
    model = MultiTaskModel(load_encoder(workdir / "encoder"), {spec.name: spec}).to(accelerator.device)
    counts = {"padded": 0}
    kind = training.kind_of(spec)
    original_collate = kind.collate

    def counting_collate(batch_features, pad_token_id):
        batch = original_collate(batch_features, pad_token_id)
        counts["padded"] += batch["input_ids"].numel()
        return batch

    kind.collate = counting_collate
    first_step = {}
    original_step = torch.optim.AdamW.step

    def timed_step(self, *args, **kwargs):
        out = original_step(self, *args, **kwargs)
        if "at" not in first_step:
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            first_step["at"] = time.perf_counter()
        return out

    torch.optim.AdamW.step = timed_step
    began = time.perf_counter()
    result = training.train(
        model,
        {spec.name: features},
        settings,
        accelerator,
        tokenizer.pad_token_id,
        lambda m: 0.0,
        seed=0,
        progress=False,
    )
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize()
    torch.optim.AdamW.step = original_step
    losses = [[entry["step"], entry["loss"]] for entry in result.history if "loss" in entry]
    return {
        "train_seconds": result.seconds,
        "first_step_seconds": first_step["at"] - began,
        "real_tokens": result.tokens,
        "padded_tokens": counts["padded"],
        "losses": losses,
        "steps": result.steps,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def trainer_features(features: list[dict], task: str) -> list[dict]:
    """The same features in the Hugging Face models' input names."""
    rows = []
    for f in features:
        row = {"input_ids": f["input_ids"].tolist(), "attention_mask": [1] * len(f["input_ids"])}
        if task == "pair":
            row["labels"] = f["label"]
        else:
            row["start_positions"], row["end_positions"] = f["start_position"], f["end_position"]
        rows.append(row)
    return rows


def run_trainer(method: str, task: str, workdir: Path, features: list[dict], tokenizer, settings, device: str) -> dict:
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    rows = trainer_features(features, task)
    best = method == "trainer-best"
    if best:
        collator = DataCollatorWithPadding(tokenizer)
    else:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=settings.max_length)
    counts = {"real": 0, "padded": 0}

    def counting_collator(batch):
        out = collator(batch)
        counts["real"] += int(out["attention_mask"].sum())
        counts["padded"] += out["input_ids"].numel()
        return out

    model_class = AutoModelForSequenceClassification if task == "pair" else AutoModelForQuestionAnswering
    kwargs = {"num_labels": 3} if task == "pair" else {}
    model = model_class.from_pretrained(workdir / "encoder", **kwargs)

    class Timing(TrainerCallback):
        def __init__(self):
            self.begin = self.first = self.end = None

        def on_train_begin(self, args, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.first is None:
                if device == "cuda":
                    torch.cuda.synchronize()
                self.first = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.end = time.perf_counter()

    timing = Timing()
    args = TrainingArguments(
        output_dir=str(workdir / f"trainer-{method}-{task}"),
        per_device_train_batch_size=settings.batch_size,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        warmup_steps=int(settings.warmup_ratio * settings.max_steps),
        weight_decay=settings.weight_decay,
        adam_epsilon=settings.adam_epsilon,
        max_grad_norm=settings.max_grad_norm,
        lr_scheduler_type="linear",
        logging_steps=settings.log_every_steps,
        save_strategy="no",
        report_to=[],
        seed=0,
        data_seed=0,
        train_sampling_strategy="group_by_length" if best else "random",
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        disable_tqdm=True,
        optim="adamw_torch_fused" if best else "adamw_torch",
        dataloader_pin_memory=device == "cuda",
        dataloader_num_workers=2 if best and device == "cuda" else 0,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=counting_collator, callbacks=[timing])
    trainer.train()
    losses = [[entry["step"], float(entry["loss"])] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "train_seconds": timing.end - timing.begin,
        "first_step_seconds": timing.first - timing.begin,
        "real_tokens": counts["real"],
        "padded_tokens": counts["padded"],
        "losses": losses,
        "steps": trainer.state.global_step,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# --- driver ----------------------------------------------------------------------------------------------


def model_flops_per_token(parameters: int, layers: int, hidden: int, length: float, embedding_parameters: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding parameters) + 12 x layers x hidden x length (attention scores and values)."""
    return 6 * (parameters - embedding_parameters) + 12 * layers * hidden * length


def common_logged_steps(runs: list[dict], keep: int = 3) -> list[int]:
    """The last `keep` steps at which every run logged its mean loss (xstilts also logs the final step), so
    loss curves are compared at the same steps: each logged value is the mean over the steps since the last."""
    steps = set.intersection(*(set(step for step, _ in run["losses"]) for run in runs))
    return sorted(steps)[-keep:]


def median_runs(runs: list[dict]) -> dict[tuple[str, str], dict]:
    """The median run (by real tokens per second) of each (task, method): a shared machine's noise moves
    single short runs by 10% either way, and the median is not pulled by one lucky or unlucky run."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["task"], run["method"]), []).append(run)
    return {
        key: sorted(group, key=lambda r: r["real_tokens_per_second"])[(len(group) - 1) // 2]
        for key, group in grouped.items()
    }


def model_flops_utilisation(reported: dict, tasks: list[str], model: str, peak_tflops: float) -> dict:
    """MFU of each task's reported xstilts run: model FLOPs of the real tokens per second over the card's
    dense bf16 peak. Padding is not counted as useful work (fixed256 has none); the count is the full
    encoder's, so for pooled heads, where xstilts skips most of the last layer, it is a slight overcount."""
    hidden, layers, _, _, vocab = MODELS[model]
    figures = {}
    for task in tasks:
        run = reported[(task, "xstilts")]
        mean_length = run["padded_tokens"] / (run["steps"] * TASKS[task][1])
        flops = model_flops_per_token(run["parameters"], layers, hidden, mean_length, (vocab + 514 + 1) * hidden)
        achieved = flops * run["real_tokens_per_second"]
        figures[task] = {
            "formula": "6 x (parameters - embedding parameters) + 12 x layers x hidden x mean padded length, per real token",
            "flops_per_token": flops,
            "mean_padded_length": mean_length,
            "real_tokens_per_second": run["real_tokens_per_second"],
            "achieved_tflops": achieved / 1e12,
            "peak_tflops": peak_tflops,
            "mfu": achieved / (peak_tflops * 1e12),
        }
    return figures


def machine() -> dict:
    import torch
    import transformers

    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument(
        "--tasks",
        default=None,
        help="comma-separated, from pair, qa, fixed256 (default: pair,qa on CPU; all three on GPU)",
    )
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps per run (default: {DEFAULT_STEPS})")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved runs per (method, task); the median run is reported, all are kept",
    )
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="the GPU's measured dense bf16 rate, for MFU")
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "TASK", "WORKDIR", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        method, task, workdir, steps = args.worker
        print(json.dumps(worker(method, task, Path(workdir), int(steps), device)))
        return

    tasks = (args.tasks or ("pair,qa" if device == "cpu" else "pair,qa,fixed256")).split(",")
    if unknown := set(tasks) - set(TASKS):
        sys.exit(f"--tasks: unknown {sorted(unknown)}; expected some of {sorted(TASKS)}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("XSTILTS_CACHE", str(workdir / "cache"))
        sources = prepare(workdir, args.model, tasks)
        runs = []
        for task in tasks:
            steps = args.steps or DEFAULT_STEPS[device][task]
            for repeat in range(args.repeats):
                # interleaved, so drift affects every method alike, and rotated, so no method is always the
                # first process after the setup (a cold first run measured up to 15% slow)
                for method in METHODS[repeat % len(METHODS) :] + METHODS[: repeat % len(METHODS)]:
                    output = subprocess.run(
                        [sys.executable, __file__, "--worker", method, task, str(workdir), str(steps)],
                        capture_output=True,
                        text=True,
                        env=os.environ,
                    )
                    if output.returncode:
                        sys.exit(f"{method} on {task} failed:\n{output.stderr[-3000:]}")
                    run = json.loads(output.stdout.strip().splitlines()[-1])
                    run["repeat"] = repeat
                    runs.append(run)
                    print(
                        f"{task:5} {method:16} run {repeat}: {run['real_tokens_per_second']:10.0f} real tok/s  {run['train_seconds']:7.2f} s",
                        flush=True,
                    )

    reported = median_runs(runs)
    compared_steps = {task: common_logged_steps([run for run in runs if run["task"] == task]) for task in tasks}
    summary = []
    for task in tasks:
        ours = reported[(task, "xstilts")]["real_tokens_per_second"]
        for method in METHODS:
            run = reported[(task, method)]
            summary.append(
                {
                    "task": task,
                    "method": method,
                    "real_tokens_per_second": round(run["real_tokens_per_second"], 1),
                    "speedup_of_xstilts": round(ours / run["real_tokens_per_second"], 3),
                    "train_seconds": round(run["train_seconds"], 3),
                    "wall_seconds": round(run["wall_seconds"], 3),
                    "first_step_seconds": round(run["first_step_seconds"], 3),
                    "peak_memory_mb": round(run["peak_memory_mb"], 1),
                    "padding_share": round(1 - run["real_tokens"] / run["padded_tokens"], 3),
                    "losses_at_common_steps": {
                        step: round(loss, 4) for step, loss in run["losses"] if step in compared_steps[task]
                    },
                }
            )
    record = {
        "benchmark": "train_throughput",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine(),
        "device": device,
        "model": args.model,
        "model_shape": dict(zip(("hidden", "layers", "heads", "intermediate", "vocab"), MODELS[args.model])),
        "data": sources,
        "tasks": {t: dict(zip(("kind", "batch_size", "max_length", "learning_rate"), TASKS[t])) for t in tasks},
        "summary": summary,
        "runs": runs,
    }
    if device == "cuda":
        record["mfu"] = model_flops_utilisation(reported, tasks, args.model, args.peak_tflops)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"train_throughput-{datetime.now():%Y%m%d}-{device}-{args.model}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print()
    print(
        "| task | method | real tok/s | xstilts speed-up | train s | wall s | first step s | peak MB | padding | mean loss at steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in summary:
        print(
            f"| {row['task']} | {row['method']} | {row['real_tokens_per_second']:.0f} | {row['speedup_of_xstilts']:.2f}x | {row['train_seconds']:.2f} | {row['wall_seconds']:.2f} | {row['first_step_seconds']:.2f} | {row['peak_memory_mb']:.0f} | {row['padding_share']:.0%} | {row['losses_at_common_steps']} |"
        )
    for task, figure in record.get("mfu", {}).items():
        print(
            f"MFU {task}: {figure['achieved_tflops']:.1f} TFLOP/s of {figure['peak_tflops']:.0f} = {figure['mfu']:.1%} ({figure['flops_per_token'] / 1e9:.2f} GFLOP per token)"
        )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
