"""Simulated studies with a known answer: the calibration of every interval and verdict the report prints.

A `Design` describes a study as a researcher would run it (orders x seeds of chains up to K, k = 0 under
several seeds, an A/A control) and a generative model with the structure real evaluations have:

- **Test items.** Each target has `items` items per language. A parallel target (XNLI-like) holds the same
  items in every language: an item's difficulty and its sensitivity to the model's skill are shared by all
  its translations, and whether a model gets it right is correlated across languages (`language_correlation`)
  and across models (`model_correlation`). An independent target (PAN-X-like) draws each language's items
  apart. Outcomes are 0/1 per item (accuracy units).
- **Training noise.** Every trained model, k = 0 included, has its own seed noise; every intermediate stage
  adds noise its descendants inherit; every distinct chain prefix has an order (task) effect that its
  extensions inherit, so chains sharing a prefix are correlated as real ones are.
- **Truth.** The probability of a correct answer is linear in the model's skill (never clipped), so the true
  score of chain length k averaged over items, orders and seeds is known exactly: the gain at k is
  `gains[k]` points for every target.

`simulate_rows` returns result rows and the per-unit statistics a real run would have written, and `truth`
the known answer; the calibration suite (`benchmarks/calibration.py`, `tests/test_calibration.py`) runs the
report's own analysis (`xstilts.results.effects.analyse`) on them and counts how often each interval covers
the truth and how often a verdict calls an effect that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from xstilts.metrics.units import Units

A_A_OFFSET = 1000


@dataclass(frozen=True)
class SimulatedTarget:
    name: str
    languages: int
    items: int
    parallel: bool


@dataclass(frozen=True)
class Design:
    """A study design and its generative model; effects and noise in points (0-100 scale)."""

    name: str
    seeds: int = 2
    orders: int = 3
    max_length: int = 2
    pool: int = 3  # tasks the orders are drawn from (>= max_length)
    baseline_runs: int = 3
    gains: tuple[float, ...] = (0.0, 0.0, 0.0)  # true gain over k = 0 at k = 0..K (gains[0] = 0)
    targets: tuple[SimulatedTarget, ...] = (
        SimulatedTarget("parallel", 15, 300, True),
        SimulatedTarget("independent", 4, 300, False),
    )
    seed_sd: float = 1.0  # the target fine-tune's seed noise, every model
    stage_sd: float = 0.5  # each intermediate stage's seed noise, inherited by its descendants
    order_sd: float = 0.7  # each distinct prefix's order (task) effect, inherited by its extensions
    language_correlation: float = 0.6  # of a model's item outcomes across a parallel item's translations
    model_correlation: float = 0.5  # of different models' outcomes on the same item
    a_a: bool = True
    distinct_first: bool = True  # orders start with different tasks where the pool allows (the demo's rotations)

    def __post_init__(self) -> None:
        if len(self.gains) != self.max_length + 1 or self.gains[0] != 0:
            raise ValueError("gains: one per k = 0..K, starting at 0")


@dataclass
class SimulatedStudy:
    rows: list[dict[str, Any]]
    units: dict[str, Units] = field(default_factory=dict)  # units "file" -> units
    levels: dict[str, float] = field(default_factory=dict)  # target -> true score at k = 0 (this study's languages)

    def load(self, row: Mapping[str, Any]) -> Units | None:
        info = row.get("units")
        return self.units.get(info["file"]) if isinstance(info, Mapping) else None


def truth(design: Design) -> dict[int, float]:
    """The known answer: the true gain over k = 0 at each k, the same for every target and their average."""
    return {k: float(g) for k, g in enumerate(design.gains)}


def _orders(design: Design, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Random orders of the pool cut at K; with `distinct_first`, each starts with another task (while the pool
    has tasks left), so that the orders share no trained stage."""
    firsts = rng.permutation(design.pool).tolist()
    orders = []
    for i in range(design.orders):
        order = rng.permutation(design.pool).tolist()
        if design.distinct_first and i < design.pool:
            order.remove(firsts[i])
            order = [firsts[i], *order]
        orders.append(tuple(order[: design.max_length]))
    return orders


def _models(design: Design, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Every model the study trains with its skill (true gain + order effect + noise), in points."""
    orders = _orders(design, rng)
    order_effect: dict[tuple[int, ...], float] = {(): 0.0}
    stage_noise: dict[tuple[tuple[int, ...], int], float] = {}
    seeds = list(range(design.seeds))
    baseline = list(range(max(design.seeds, design.baseline_runs)))  # the study's seeds, then the next
    models = [{"chain": (), "seed": s, "skill": rng.normal(0, design.seed_sd)} for s in baseline]
    if design.a_a:  # under k = 0's seeds, + A_A_OFFSET
        control = baseline
        models += [
            {"chain": (), "seed": s + A_A_OFFSET, "skill": rng.normal(0, design.seed_sd), "control": "aa"}
            for s in control
        ]
    seen = set()
    for seed in seeds:
        for order in orders:
            for k in range(1, design.max_length + 1):
                prefix = order[:k]
                if (prefix, seed) in seen:
                    continue
                seen.add((prefix, seed))
                if prefix not in order_effect:
                    order_effect[prefix] = order_effect[prefix[:-1]] + rng.normal(0, design.order_sd)
                if (prefix, seed) not in stage_noise:
                    stage_noise[(prefix, seed)] = stage_noise.get((prefix[:-1], seed), 0.0) + rng.normal(
                        0, design.stage_sd
                    )
                skill = design.gains[k] + order_effect[prefix] + stage_noise[(prefix, seed)]
                models.append({"chain": prefix, "seed": seed, "skill": skill + rng.normal(0, design.seed_sd)})
    return models


def _label(model: Mapping[str, Any], design: Design) -> str:
    chain = "+".join(f"t{t}" for t in model["chain"]) or "pretrained"
    kind = f"control-{model['control']}-" if model.get("control") else ""
    return f"{kind}k{len(model['chain'])}-{chain}-seed{model['seed']}"


def simulate_rows(design: Design, rng: np.random.Generator, split: str = "test") -> SimulatedStudy:
    """One simulated study: result rows (as `xstilts run` writes them) and their units, in memory."""
    models = _models(design, rng)
    skills = np.array([m["skill"] for m in models]) / 100.0  # probability scale
    study = SimulatedStudy([])
    for target in design.targets:
        outcomes, level = _outcomes(target, design, skills, rng)  # (models, languages, items)
        study.levels[target.name] = level
        for m, model in enumerate(models):
            label = _label(model, design)
            for lang in range(target.languages):
                language = f"l{lang:02d}"
                keys = np.array([f"i{i}" for i in range(target.items)]) if target.parallel else None
                units = Units("mean", outcomes[m, lang], keys)
                file = f"{label}/{target.name}/{split}-{language}.units.npy"
                study.units[file] = units
                study.rows.append(
                    {
                        "chain": [f"t{t}" for t in model["chain"]],
                        "chain_length": len(model["chain"]),
                        "chain_label": label,
                        "mode": "full",
                        "seed": model["seed"],
                        "target": target.name,
                        "language": language,
                        "split": split,
                        "metric": "accuracy",
                        "score": units.score(),
                        "units": {**units.describe(), "file": file},
                        **({"control": model["control"]} if model.get("control") else {}),
                    }
                )
    return study


def _outcomes(
    target: SimulatedTarget, design: Design, skills: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """0/1 outcomes (models, languages, items), P(correct) = base + item difficulty + sensitivity x skill, and
    the true score at k = 0 of these languages (the mean of P over the item population)."""
    languages, items = target.languages, target.items
    shape = (items,) if target.parallel else (languages, items)
    difficulty = rng.uniform(-0.15, 0.15, size=shape) + rng.uniform(-0.05, 0.05, size=(languages, items))
    sensitivity = rng.uniform(0.5, 1.5, size=shape)
    language_shift = rng.uniform(-0.05, 0.05, size=(languages, 1))
    probability = (0.5 + language_shift + difficulty)[None] + sensitivity[None] * skills[:, None, None]
    if probability.min() < 0 or probability.max() > 1:
        raise ValueError("the simulated skills leave [0, 1]: lower the noise or the gains")
    # Correlated uniforms (a Gaussian copula keeps each outcome's probability exact): a shared item part across
    # models, a per-model item part shared across the translations of a parallel item, and the rest.
    lam = design.model_correlation
    per_item = np.sqrt(lam) * rng.standard_normal(shape)[None] + np.sqrt(1 - lam) * rng.standard_normal(
        (len(skills), *shape)
    )
    if target.parallel:
        rho = design.language_correlation
        noise = rng.standard_normal((len(skills), languages, items))
        latent = np.sqrt(rho) * per_item[:, None, :] + np.sqrt(1 - rho) * noise
    else:
        latent = per_item
    level = 100.0 * (0.5 + float(language_shift.mean()))
    return (ndtr(latent) < probability).astype(float), level


def summarize_coverage(found: Mapping[str, Any], design: Design, study: SimulatedStudy) -> dict[str, list[bool]]:
    """For one analysed study: per interval kind, whether each printed interval that holds the training noise
    covers the truth. Kinds: score and gain at each k, step k vs k - 1, further-task trend, for each target (by
    name) and for the average over targets ("average")."""
    gains = truth(design)
    covered: dict[str, list[bool]] = {}
    average_level = float(np.mean(list(study.levels.values())))
    for name, target in found["targets"].items():
        scope = "average" if name == found.get("average") else name
        level = average_level if scope == "average" else study.levels[name]
        for k, score in target["scores"].items():
            _count(covered, f"{scope}: score at k = {k}", score, level + gains[int(k)])
        for k, gain in target["gains"].items():
            _count(covered, f"{scope}: gain at k = {k}", gain, gains[int(k)])
        for k, step in target["steps"].items():
            _count(covered, f"{scope}: step k = {k} vs {int(k) - 1}", step, gains[int(k)] - gains[int(k) - 1])
        if target.get("further"):
            lengths = np.arange(1, design.max_length + 1)
            trend = np.polyfit(lengths, [gains[int(k)] for k in lengths], 1)[0]
            _count(covered, f"{scope}: each further task", target["further"], float(trend))
    return covered


def _count(covered: dict[str, list[bool]], kind: str, entry: Mapping[str, Any], truth_value: float) -> None:
    if entry.get("lower") is None or entry.get("includes") != "training and test sample" or entry.get("leaves_out"):
        return
    covered.setdefault(kind, []).append(bool(entry["lower"] <= truth_value <= entry["upper"]))


def false_calls(found: Mapping[str, Any]) -> bool:
    """Whether any verdict called an effect (for a null design: a family-wise false positive)."""
    for target in found["targets"].values():
        calls = target.get("calls", {})
        if calls.get("first") in ("helps", "hurts") or calls.get("further") in ("adds", "takes away"):
            return True
    return False


def detected_first(found: Mapping[str, Any], target: str) -> bool:
    return found["targets"][target]["calls"].get("first") == "helps"


def a_a_alarm(found: Mapping[str, Any]) -> bool | None:
    """Whether any A/A control failed (None: no judged A/A control)."""
    judged = [c for c in found.get("controls", {}).values() if c["kind"] == "aa" and c.get("passed") is not None]
    return any(not c["passed"] for c in judged) if judged else None
