"""Forward latency of the XLM-R Large architecture against chain length, `full` and `lora-stacked` (k = 0..9).

Random weights (latency does not depend on them). `full`: the plain encoder and a classification head,
the same architecture at every k. `lora-stacked`: k stage LoRAs plus the target's own LoRA, all active
(peft), as `xstilts` builds a stacked prefix. Uses the study harness (`xstilts.study.latency`): models
interleaved in rotating order, a noise twin (a copy of the k = 0 model), bootstrap intervals, verdicts.

    python benchmarks/latency_chain.py                       # GPU: bf16 and fp32, batch 1 and 32, lengths 128 and 512
    python benchmarks/latency_chain.py --model tiny --max-k 3 --precisions fp32 --lengths 64   # a CPU smoke run

Writes benchmarks/results/latency_chain-<date>-<device>-<model>.json and prints the verdicts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {
    "xlmr-large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, vocab_size=250002
    ),
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=8000),
}


def build_models(model: str, max_k: int, device: torch.device):
    """{mode: [TimedModel for k = 0..max_k]} sharing one random base encoder."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xstilts.study.latency import TimedModel
    from xstilts.tasks.registry import LocalFiles, TaskSpec
    from xstilts.train.adapters import AdapterSettings, add_lora
    from xstilts.train.modeling import MultiTaskModel

    torch.manual_seed(0)
    config = XLMRobertaConfig(
        **SHAPES[model],
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    base = XLMRobertaModel(config, add_pooling_layer=False).eval()
    spec = TaskSpec(
        name="target", kind="classification", languages=("en",), data=LocalFiles(Path(".")), labels=("a", "b", "c")
    )
    settings = AdapterSettings()
    models = {"full": [], "lora-stacked": []}
    for k in range(max_k + 1):
        full = MultiTaskModel(copy.deepcopy(base), {spec.name: spec}).to(device).eval()
        models["full"].append(TimedModel(f"k{k}", k, f"k{k}", full))
        encoder = copy.deepcopy(base)
        for stage in range(k + 1):  # k stage LoRAs and the target's
            encoder = add_lora(encoder, settings, f"stage{stage + 1}")
        stacked = MultiTaskModel(encoder, {spec.name: spec}).to(device).eval()
        models["lora-stacked"].append(TimedModel(f"k{k}", k, f"k{k}", stacked))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="xlmr-large")
    parser.add_argument("--max-k", type=int, default=9)
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from xstilts.study.latency import LatencySettings, TimedModel, summarize_models, time_interleaved, verdict

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = build_models(args.model, args.max_k, device)
    groups = []
    for precision in args.precisions.split(","):
        dtype = torch.bfloat16 if precision == "bf16" else None
        settings = LatencySettings(warmup=args.warmup, repetitions=args.repetitions, precision=precision)
        for mode, timed in models.items():
            twin = TimedModel("k0 (twin)", 0, "k0", copy.deepcopy(timed[0].model))
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                for length in (int(n) for n in args.lengths.split(",")):
                    ids = torch.randint(
                        5,
                        SHAPES[args.model]["vocab_size"],
                        (batch_size, length),
                        generator=torch.Generator().manual_seed(0),
                    ).to(device)
                    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                    time_interleaved([*timed, twin], "target", inputs, settings, device, dtype)
                    group = summarize_models([*timed, twin], settings, batch_size, length)
                    group.update(mode=mode, precision=precision, verdict=verdict(mode, group))
                    groups.append(group)
                    medians = " ".join(f"{m['median_ms']:.2f}" for m in group["models"][:-1])
                    print(
                        f"{precision} {mode:12} batch {batch_size:3} x {length:4}: medians ms k=0..{args.max_k}: {medians}\n  {group['verdict']}",
                        flush=True,
                    )
    import transformers

    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
    }
    record = {
        "benchmark": "latency_chain",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": machine,
        "model": args.model,
        "shape": SHAPES[args.model],
        "groups": groups,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"latency_chain-{datetime.now():%Y%m%d}-{device.type}-{args.model}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
