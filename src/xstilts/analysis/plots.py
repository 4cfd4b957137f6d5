"""The report's figures, each written as PNG and SVG.

- gains: one small panel per target (and the average), the gain over k = 0 against k with its interval as a
  band and a zero line, each panel on its own y axis; one line per chain mode.
- heatmap: per target, the gain over k = 0 of every language at every k.
- latency: latency / latency at k = 0 against k, one panel per input shape, one line per mode and target.
- trade-off: gain of the average against the latency ratio, one point per chain mode and k.
- cost: the combination study's gain of the average against training cost, one marker per method and k.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xstilts.files import scratch_beside
from xstilts.terms import TEST


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> list[Path]:
    """`path` as PNG and the same name as SVG; returns both."""
    plt = _pyplot()
    written = []
    for suffix in (".png", ".svg"):
        target = Path(path).with_suffix(suffix)
        scratch = scratch_beside(target)
        try:  # aside and renamed, as every file of a run: an interrupted report never leaves half a plot
            fig.savefig(scratch, format=suffix[1:])
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)
        written.append(target)
    plt.close(fig)
    return written


def _grid(count: int, width: float = 3.2, height: float = 2.6) -> tuple[Any, list[Any]]:
    plt = _pyplot()
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), dpi=110, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def gain_panels(effects: Mapping[str, Any], path: Path) -> list[Path]:
    """Gain over k = 0 per target, with the interval band and a zero line; nothing when there is no k > 0."""
    modes = sorted(m for m in effects if TEST in effects[m])
    names: list[str] = []
    for mode in modes:
        found = effects[mode][TEST]
        names += [n for n in found["targets"] if n not in names and found["targets"][n]["gains"]]
    if not names:
        return []
    average = next((effects[m][TEST].get("average") for m in modes if effects[m][TEST].get("average")), None)
    names = sorted(n for n in names if n != average) + ([average] if average in names else [])
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        for mode in modes:
            target = effects[mode][TEST]["targets"].get(name)
            if not target:
                continue
            gains = sorted(((int(k), v) for k, v in target["gains"].items()), key=lambda kv: kv[0])
            ks = [0, *(k for k, _ in gains)]
            values = [0.0, *(v["estimate"] for _, v in gains)]
            line = ax.plot(ks, values, marker="o", label=mode if len(modes) > 1 else None)[0]
            if all(v.get("lower") is not None for _, v in gains):
                lows = [0.0, *(v["lower"] for _, v in gains)]
                highs = [0.0, *(v["upper"] for _, v in gains)]
                ax.fill_between(ks, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(_pyplot().MaxNLocator(integer=True))
        ax.set_title(name, fontsize="small", fontweight="bold" if name == average else None)
        ax.set_xlabel("chain length k", fontsize="small")
        ax.set_ylabel("gain over k = 0", fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.3)
        if len(modes) > 1:
            ax.legend(fontsize="xx-small")
    fig.suptitle("Zero-shot gain over the pretrained encoder (test; band: 95% interval)", fontsize="small")
    fig.tight_layout()
    return save(fig, path)


def gain_heatmap(by_language: Mapping[tuple[int, str, str], tuple[float, float, int]], path: Path) -> list[Path]:
    """Per target, language x k of the mean gain over k = 0 (test); nothing when there is no k > 0."""
    targets = sorted(
        {t for (k, t, _) in by_language if k > 0} & {t for (k, t, _) in by_language if k == 0}
    )  # a gain needs k = 0
    if not targets:
        return []
    plt = _pyplot()
    fig, axes = _grid(len(targets), width=3.6, height=3.0)
    for ax, target in zip(axes, targets):
        languages = sorted(
            {lang for (k, t, lang) in by_language if t == target and k == 0}, key=lambda x: (x != "en", x)
        )
        lengths = sorted({k for (k, t, _) in by_language if t == target and k > 0})
        grid = [
            [
                by_language[(k, target, lang)][0] - by_language[(0, target, lang)][0]
                if (k, target, lang) in by_language
                else float("nan")
                for k in lengths
            ]
            for lang in languages
        ]
        finite = [abs(v) for row in grid for v in row if v == v]
        limit = max(finite) if finite and max(finite) > 0 else 1.0
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(lengths)), [str(k) for k in lengths], fontsize="x-small")
        ax.set_yticks(range(len(languages)), languages, fontsize="x-small")
        ax.set_xlabel("chain length k", fontsize="small")
        ax.set_title(target, fontsize="small")
        if len(languages) * len(lengths) <= 60:
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    if value == value:
                        ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize="xx-small")
        plt.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle("Gain over k = 0 by language (test, mean over runs)", fontsize="small")
    fig.tight_layout()
    return save(fig, path)


def latency_panels(latency: Mapping[str, Any], path: Path) -> list[Path]:
    """Latency ratio to k = 0 against chain length, one panel per shape, one line per mode and target."""
    shapes = sorted({(g["batch_size"], g["length"]) for g in latency["groups"]})
    if not shapes:
        return []
    fig, axes = _grid(len(shapes), width=4.2, height=3.6)
    for ax, shape in zip(axes, shapes):
        for group in (g for g in latency["groups"] if (g["batch_size"], g["length"]) == shape):
            models = sorted(
                (m for m in group["models"] if not m["name"].endswith("(twin)")), key=lambda m: m["chain_length"]
            )
            lengths = [m["chain_length"] for m in models]
            ratios = [m["ratio_to_k0"] for m in models]
            line = ax.plot(lengths, ratios, marker="o", label=f"{group['mode']} {group['target']}")[0]
            ax.fill_between(
                lengths,
                [m["ratio_ci95"][0] for m in models],
                [m["ratio_ci95"][1] for m in models],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
            low, high = group["noise_floor"]["ci95"]
            ax.axhspan(min(low, 1), max(high, 1), color="grey", alpha=0.15)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"batch {shape[0]} x {shape[1]} tokens ({latency['device']})", fontsize="small")
        ax.set_xlabel("chain length k")
        ax.set_ylabel("latency / latency at k = 0")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return save(fig, path)


def tradeoff(effects: Mapping[str, Any], latency: Mapping[str, Any] | None, path: Path) -> list[Path]:
    """Gain of the average (or the only target) against the latency ratio, one point per (mode, k), each with both
    intervals, over the band of the latency noise floor (the k = 0 model timed twice as two models): a ratio
    inside the band is not a measured slowdown."""
    if latency is None:
        return []
    points = []
    for mode, splits in sorted(effects.items()):
        found = splits.get(TEST)
        if not found or not found["targets"]:
            continue
        name = found.get("average") or sorted(found["targets"])[0]
        gains = {int(k): v for k, v in found["targets"][name]["gains"].items()}
        for k, gain in sorted(gains.items()):
            models = [
                m
                for g in latency["groups"]
                if g["mode"] == mode
                for m in g["models"]
                if m["chain_length"] == k and not m["name"].endswith("(twin)") and not m.get("combination")
            ]
            if models:
                ratio = float(np.mean([m["ratio_to_k0"] for m in models]))
                low = float(np.mean([m["ratio_ci95"][0] for m in models]))
                high = float(np.mean([m["ratio_ci95"][1] for m in models]))
                points.append((mode, k, ratio, gain, (low, high)))
    if not points:
        return []
    floors = [g["noise_floor"]["ci95"] for g in latency["groups"] if g.get("noise_floor", {}).get("ci95")]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=110)
    for mode in sorted({p[0] for p in points}):
        mine = [p for p in points if p[0] == mode]
        x, y = [p[2] for p in mine], [p[3]["estimate"] for p in mine]
        errors = [
            [p[3]["estimate"] - p[3]["lower"] if p[3].get("lower") is not None else 0 for p in mine],
            [p[3]["upper"] - p[3]["estimate"] if p[3].get("upper") is not None else 0 for p in mine],
        ]
        x_errors = [[p[2] - p[4][0] for p in mine], [p[4][1] - p[2] for p in mine]]
        ax.errorbar(
            x,
            y,
            xerr=x_errors,
            yerr=errors if any(any(e) for e in errors) else None,
            marker="o",
            linestyle="",
            label=mode,
        )
        for p in mine:
            ax.annotate(
                f"k={p[1]}", (p[2], p[3]["estimate"]), fontsize="x-small", xytext=(4, 4), textcoords="offset points"
            )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    if floors:
        low, high = min(f[0] for f in floors), max(f[1] for f in floors)
        ax.axvspan(low, high, color="grey", alpha=0.15, label="latency noise floor (k = 0 timed twice)")
    ax.set_xlabel("latency / latency at k = 0 (mean over measured targets), 95% interval")
    ax.set_ylabel("gain over k = 0 (test)")
    ax.set_title("Transfer against latency", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return save(fig, path)


def gain_against_cost(points: list[dict[str, Any]], path: Path) -> list[Path]:
    """The combination study: gain over k = 0 (test, with its interval) against the optimizer steps of the stages
    a model is built from, one marker per method and k (`points`: {"method", "k", "steps", "gain"})."""
    points = [p for p in points if p.get("gain") and p.get("steps") is not None]
    if not points:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0), dpi=110)
    markers = "osD^vP*Xh"
    methods = list(dict.fromkeys(p["method"] for p in points))
    steps = [p["steps"] for p in points]
    dodge = 0.012 * ((max(steps) - min(steps)) or max(steps) or 1.0)  # methods of equal cost side by side
    for index, method in enumerate(methods):
        mine = [p for p in points if p["method"] == method]
        x = [p["steps"] + (index - (len(methods) - 1) / 2) * dodge for p in mine]
        y = [p["gain"]["estimate"] for p in mine]
        errors = [
            [p["gain"]["estimate"] - p["gain"]["lower"] if p["gain"].get("lower") is not None else 0 for p in mine],
            [p["gain"]["upper"] - p["gain"]["estimate"] if p["gain"].get("upper") is not None else 0 for p in mine],
        ]
        ax.errorbar(x, y, yerr=errors, marker=markers[index % len(markers)], linestyle="", label=method)
        for p, position in zip(mine, x):
            ax.annotate(
                f"k={p['k']}",
                (position, p["gain"]["estimate"]),
                fontsize="x-small",
                xytext=(4, 4),
                textcoords="offset points",
            )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("training cost: optimizer steps of the stages a model is built from")
    ax.set_ylabel("gain over k = 0 (test), 95% interval")
    ax.set_title("Ways to combine k tasks: gain against training cost", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return save(fig, path)
