"""Benchmark: BUCC margin mining, xstilts (faiss, blocked) against a straightforward numpy version.

Cases: the real zh-en sample (../shared/data/real/bucc2018, 8624 x 13589 sentences) embedded by a
tiny randomly initialised XLM-R with a tokenizer trained on the sample, and a synthetic N x N case
(default 200k x 200k) of random unit vectors with planted translations. Each (case, implementation)
runs in its own process so that its peak resident memory can be read; mining time excludes embedding.

    python benchmarks/bucc_mining.py                       # both cases, writes benchmarks/results/
    python benchmarks/bucc_mining.py --size 20000 --dim 64 # a smaller synthetic case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "bucc2018"
BLOCK = 1024  # rows of the dense similarity block: 1024 x 200k float32 = 0.8 GB (+ argpartition indices)


def numpy_mining(x: np.ndarray, y: np.ndarray, k: int = 4) -> list[tuple[float, int, int]]:
    """The obvious numpy way: blocked dense similarities, argpartition for the k best, same margin."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def top_k(a, b):
        sims, idx = np.empty((len(a), k), np.float32), np.empty((len(a), k), np.int64)
        for s in range(0, len(a), BLOCK):
            block = a[s : s + BLOCK] @ b.T
            part = np.argpartition(-block, k, axis=1)[:, :k]
            sims[s : s + BLOCK], idx[s : s + BLOCK] = np.take_along_axis(block, part, 1), part
        return sims, idx

    xs, xi = top_k(x, y)
    ys, yi = top_k(y, x)
    xm, ym = xs.mean(1), ys.mean(1)
    fwd = xs / ((xm[:, None] + ym[xi]) / 2)
    bwd = ys / ((ym[:, None] + xm[yi]) / 2)
    pairs = np.concatenate(
        [
            np.stack([np.arange(len(x)), xi[np.arange(len(x)), fwd.argmax(1)]], 1),
            np.stack([yi[np.arange(len(y)), bwd.argmax(1)], np.arange(len(y))], 1),
        ]
    )
    scores = np.concatenate([fwd.max(1), bwd.max(1)])
    kept, seen_x, seen_y = [], set(), set()
    for i in np.argsort(-scores):
        a, b = int(pairs[i, 0]), int(pairs[i, 1])
        if a not in seen_x and b not in seen_y:
            seen_x.add(a), seen_y.add(b)
            kept.append((float(scores[i]), a, b))
    return kept


def real_embeddings() -> tuple[np.ndarray, np.ndarray]:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xstilts.demo.pretrain import train_tokenizer
    from xstilts.evaluate.retrieval import EmbeddingSettings, encode_sentences, unique_texts
    from xstilts.readers.retrieval import read_bucc_sentences

    source, _ = unique_texts(read_bucc_sentences(REAL / "zh-en.dev.zh"))
    target, _ = unique_texts(read_bucc_sentences(REAL / "zh-en.dev.en"))
    tokenizer = train_tokenizer(source + target, vocab_size=8000, max_length=126)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    encoder = XLMRobertaModel(config, add_pooling_layer=False)
    settings = EmbeddingSettings(layer=1, max_length=128, batch_size=256)
    return encode_sentences(encoder, tokenizer, source, settings, torch.device("cpu")), encode_sentences(
        encoder, tokenizer, target, settings, torch.device("cpu")
    )


def synthetic_embeddings(size: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, dim), dtype=np.float32)
    y = rng.standard_normal((size, dim), dtype=np.float32)
    planted = size // 10  # a tenth of the sentences have a (noisy) translation on the other side
    y[:planted] = x[:planted] + 0.3 * rng.standard_normal((planted, dim), dtype=np.float32)
    return x, y


def worker(case: str, implementation: str, size: int, dim: int, out: Path) -> None:
    x, y = real_embeddings() if case == "real" else synthetic_embeddings(size, dim)
    started = time.perf_counter()
    if implementation == "xstilts":
        from xstilts.evaluate.retrieval import mine_candidates

        kept = mine_candidates([str(i) for i in range(len(x))], x, [str(i) for i in range(len(y))], y)
        top = [(c.score, int(c.source), int(c.target)) for c in kept[:1000]]
    else:
        kept = numpy_mining(x, y)
        top = kept[:1000]
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(
        json.dumps(
            {
                "case": case,
                "implementation": implementation,
                "source": len(x),
                "target": len(y),
                "dim": int(x.shape[1]),
                "mining_seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_mb),
                "kept_pairs": len(kept),
                "top_pairs": top,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=200_000, help="synthetic sentences per side")
    parser.add_argument(
        "--dim", type=int, default=64, help="synthetic embedding size (1024 for XLM-R Large; slow on a CPU)"
    )
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("CASE", "IMPL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.size, args.dim, Path(args.worker[2]))
        return
    cases = ([] if args.skip_real or not REAL.is_dir() else ["real"]) + ["synthetic"]
    rows = []
    for case in cases:
        for implementation in ("xstilts", "numpy"):
            out = ROOT / "benchmarks" / "results" / f".{case}-{implementation}.tmp.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--size",
                    str(args.size),
                    "--dim",
                    str(args.dim),
                    "--worker",
                    case,
                    implementation,
                    str(out),
                ],
                check=True,
            )
            rows.append(json.loads(out.read_text()))
            out.unlink()
    for case in cases:
        ours, plain = [r for r in rows if r["case"] == case]
        same = [p[1:] for p in ours["top_pairs"][:200]] == [p[1:] for p in plain["top_pairs"][:200]]
        for row in (ours, plain):
            row["same_top_200_pairs_as_other"] = same
    print(
        f"{'case':<10} {'impl':<8} {'source x target':>17} {'dim':>5} {'mining s':>9} {'peak RSS MB':>12} {'pairs':>8}"
    )
    for r in rows:
        print(
            f"{r['case']:<10} {r['implementation']:<8} {r['source']:>8} x {r['target']:<7} {r['dim']:>5} {r['mining_seconds']:>9} {r['peak_rss_mb']:>12} {r['kept_pairs']:>8}"
        )
    import faiss
    import torch

    record = {
        "benchmark": "bucc_mining",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {"numpy": np.__version__, "faiss": faiss.__version__, "torch": torch.__version__},
        "results": [{k: v for k, v in r.items() if k != "top_pairs"} for r in rows],
    }
    path = ROOT / "benchmarks" / "results" / f"bucc_mining-{time.strftime('%Y%m%d')}-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
