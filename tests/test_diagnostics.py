"""Representation diagnostics and transferability estimators on inputs whose answers are known."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau, ortho_group

from xstilts.metrics.representations import linear_cka, retrieval_accuracy
from xstilts.metrics.transferability import knn_accuracy, logme
from xstilts.tasks import kind_of


def test_linear_cka_exact_values():
    """The plain (biased) estimator, by hand."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert linear_cka(x, x, debiased=False) == pytest.approx(1.0)
    # y keeps only the first coordinate: X^T Y = [[2], [0]], ||.||^2 = 4; ||X^T X|| = ||2 I|| = 2*sqrt(2); ||Y^T Y|| = 2
    y = x[:, :1]
    assert linear_cka(x, y, debiased=False) == pytest.approx(4 / (2 * np.sqrt(2) * 2))
    assert linear_cka(x, x[:, 1:], debiased=False) == pytest.approx(1 / np.sqrt(2))
    # orthogonal: the two coordinates carry unrelated information
    assert linear_cka(x[:, :1], x[:, 1:], debiased=False) == pytest.approx(0.0)


def _unbiased_hsic(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC from two Gram matrices, written independently of the code under test."""
    n = len(gram_x)
    gram_x, gram_y = gram_x.copy(), gram_y.copy()
    np.fill_diagonal(gram_x, 0.0)
    np.fill_diagonal(gram_y, 0.0)
    ones = np.ones(n)
    return float(
        (
            np.trace(gram_x @ gram_y)
            + (ones @ gram_x @ ones) * (ones @ gram_y @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ gram_x @ gram_y @ ones
        )
        / (n * (n - 3))
    )


def test_debiased_linear_cka_is_the_unbiased_hsic_ratio_and_about_zero_for_unrelated_inputs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 7))
    x, y = x - x.mean(0), y - y.mean(0)
    gram_x, gram_y = x @ x.T, y @ y.T
    expected = _unbiased_hsic(gram_x, gram_y) / np.sqrt(_unbiased_hsic(gram_x, gram_x) * _unbiased_hsic(gram_y, gram_y))
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-12)
    for n, width in ((500, 1024), (100, 128), (50, 768)):  # few examples against many dimensions
        a, b = rng.normal(size=(n, width)), rng.normal(size=(n, width))
        assert linear_cka(a, b, debiased=False) > 0.5, "the plain estimator's upward bias, for the record"
        assert abs(linear_cka(a, b)) < 0.05, (n, width)
        assert linear_cka(a, 2.0 * a + 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_diagnostics_refuse_non_finite_numbers(bad):
    from xstilts.metrics.transferability import knn_accuracy, logme

    x = np.random.default_rng(0).normal(size=(20, 4))
    broken = x.copy()
    broken[3, 1] = bad
    labels = np.arange(20) % 2
    for call in (
        lambda: linear_cka(broken, x),
        lambda: linear_cka(x, broken, debiased=False),
        lambda: retrieval_accuracy(broken, x),
        lambda: logme(broken, labels),
        lambda: knn_accuracy(broken, labels),
    ):
        with pytest.raises(ValueError, match="1 of 80 values are NaN or infinite"):
            call()


def test_linear_cka_invariances_and_unrelated_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    rotation = ortho_group.rvs(16, random_state=1)
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0), "orthogonal, isotropic scale, shift"
    assert linear_cka(x, rng.normal(size=(200, 16))) < 0.15, "independent representations"
    with pytest.raises(ValueError, match="same n"):
        linear_cka(x, x[:10])


def test_retrieval_accuracy_counts_translations_found():
    english = np.eye(4)
    assert retrieval_accuracy(english + 0.1, english) == 100.0
    swapped = english[[1, 0, 2, 3]]
    assert retrieval_accuracy(swapped, english) == 50.0


def planted(rng: np.random.Generator, n: int, noise: float, classes: int = 3, dim: int = 20):
    """Features where the label is a linear function of the features plus noise of the given size."""
    labels = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, dim)) * 2
    return centers[labels] + noise * rng.normal(size=(n, dim)), labels


class PlantedEncoder(torch.nn.Module):
    """A frozen "encoder" whose first-token state is a fixed random vector of the sentence's second token:
    the label of a sentence is recoverable from its features exactly when it is a function of that token."""

    def __init__(self, vocabulary: int = 50, hidden: int = 64):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden, hidden_dropout_prob=0.0)
        self.table = torch.nn.Embedding(vocabulary, hidden)

    def forward(self, input_ids, attention_mask=None, **_):
        states = self.table(input_ids)
        states = torch.cat([states[:, 1:2], states[:, 1:]], dim=1)  # position 0 reads token 1
        return SimpleNamespace(last_hidden_state=states)


def test_a_probe_head_recovers_a_planted_signal_and_not_noise():
    from xstilts.evaluate.diagnostics import fit_probe_head
    from xstilts.tasks.registry import LocalFiles, TaskSpec

    spec = TaskSpec("planted", "classification", ("en",), LocalFiles(Path("unused")), labels=("a", "b", "c"))
    rng = np.random.default_rng(0)
    words = rng.integers(3, 50, 600)
    signal = words % 3  # a function of the planted token
    noise = rng.integers(0, 3, 600)
    encoder = PlantedEncoder()
    for labels, low, high in ((signal, 95, 100), (noise, 0, 45)):
        features = [{"input_ids": np.array([0, w, 2]), "label": int(y)} for w, y in zip(words, labels)]
        probe = fit_probe_head(encoder, spec, features[:400], pad_token_id=1, steps=300, seed=0)
        batch = kind_of(spec).collate(features[400:], 1)
        with torch.no_grad():
            predicted = probe("planted", batch).argmax(-1).numpy()
        accuracy = 100 * float((predicted == labels[400:]).mean())
        assert low <= accuracy <= high, accuracy
    assert all(p.requires_grad for p in encoder.parameters()), "the encoder's own trainability is restored"


def test_frozen_states_match_the_encoder_and_compute_each_example_once(tiny_encoder_dir):
    """The probe's lookup of frozen states gives the encoder's own states at every attended position, whatever
    the padding of the batch, and runs the encoder once per distinct example."""
    from xstilts.evaluate.diagnostics import FrozenStates
    from xstilts.train.modeling import load_encoder

    encoder = load_encoder(tiny_encoder_dir).eval()
    calls = []
    encoder.register_forward_hook(lambda module, args, kwargs_or_out: calls.append(1))
    states = FrozenStates(encoder)
    rows = [[0, 5, 6, 7, 2], [0, 8, 2], [0, 9, 10, 2]]

    def batch(selected):
        length = max(len(rows[i]) for i in selected)
        ids = torch.tensor([rows[i] + [1] * (length - len(rows[i])) for i in selected])
        return ids, (ids != 1).long()

    ids, mask = batch([0, 1])
    first = states(input_ids=ids, attention_mask=mask).last_hidden_state
    ids, mask = batch([1, 2])  # row 1 again, now with less padding after it
    second = states(input_ids=ids, attention_mask=mask).last_hidden_state
    with torch.no_grad():
        for index, found in ((0, first[0]), (1, second[0]), (2, second[1])):
            alone = torch.tensor([rows[index]])
            expected = encoder(input_ids=alone, attention_mask=torch.ones_like(alone)).last_hidden_state[0]
            torch.testing.assert_close(found[: len(rows[index])], expected, atol=1e-5, rtol=1e-4)
    assert first[1, 3:].abs().sum() == 0, "padding reads zeros"
    assert len(calls) == 2 + 3 and len(states.cache) == 3, "the second batch computed only the new example"


def test_estimators_rank_features_by_how_much_label_signal_they_carry():
    """Five feature sets with growing noise: both estimators must rank them in that order."""
    rng = np.random.default_rng(1)
    noises = [0.5, 1.5, 3.0, 6.0, 12.0]
    logmes, knns = [], []
    for noise in noises:
        x, y = planted(np.random.default_rng(2), 500, noise)  # the same labels and centres, more noise each time
        logmes.append(logme(x, y))
        knns.append(knn_accuracy(x, y))
    assert kendalltau(noises, logmes).statistic == pytest.approx(-1.0), logmes
    assert kendalltau(noises, knns).statistic == pytest.approx(-1.0), knns
    assert knns[0] > 99 and knns[-1] < 60
    # LogME of labels unrelated to the features is below that of labels the features determine
    x, y = planted(rng, 500, 0.5)
    assert logme(x, rng.permutation(y)) < logme(x, y)


def test_logme_matches_the_closed_form_evidence_at_its_fixed_point():
    """At convergence alpha and beta satisfy the evidence's stationarity equations (MacKay 1992)."""
    rng = np.random.default_rng(3)
    x, y = planted(rng, 300, 1.0, classes=2, dim=5)
    value = logme(x, y, iterations=200)
    # brute force: maximise the closed-form log evidence over a grid of (alpha, beta) for each class column
    evidences = []
    for label in (0, 1):
        t = (y == label).astype(float)
        best = -np.inf
        for alpha in np.logspace(-4, 3, 141):
            for beta in np.logspace(-3, 3, 121):
                a = alpha * np.eye(5) + beta * x.T @ x
                m = beta * np.linalg.solve(a, x.T @ t)
                e = (
                    5 / 2 * np.log(alpha)
                    + 300 / 2 * np.log(beta)
                    - beta / 2 * ((t - x @ m) ** 2).sum()
                    - alpha / 2 * (m @ m)
                    - 0.5 * np.linalg.slogdet(a)[1]
                    - 300 / 2 * np.log(2 * np.pi)
                )
                best = max(best, e / 300)
        evidences.append(best)
    assert value == pytest.approx(np.mean(evidences), abs=2e-3)


# ---- judged against measured results


def _row(chain, target, score, seed=0, language="en", control=None):
    row = {"chain": list(chain), "seed": seed, "mode": "full", "target": target, "split": "test"}
    return {**row, "language": language, "score": score, **({"control": control} if control else {})}


def _record(chain, estimate, seed=0):
    return {
        "identity": "-".join(chain) or "root",
        "chain": list(chain),
        "chain_length": len(chain),
        "seed": seed,
        "mode": "full",
        "drift": {"pretrained": [1.0]},
        "estimates": {"t": {"logme": estimate, "knn": -estimate}},
    }


def test_estimators_are_judged_by_rank_agreement_and_regret():
    from xstilts.results.diagnostics import judge_estimates

    chains = [(), ("a",), ("b",), ("a", "b"), ("b", "a")]
    scores = [50.0, 52.0, 49.0, 55.0, 51.0]
    rows = [_row(c, "t", s, language=lang) for c, s in zip(chains, scores) for lang in ("en", "de")]
    records = [_record(c, s / 10) for c, s in zip(chains, scores)]  # LogME ordered as the scores; k-NN reversed
    judged = judge_estimates(records, rows)["t"]
    assert judged["logme"]["kendall_tau"]["estimate"] == pytest.approx(1.0)
    assert judged["logme"]["regret_at_1"]["estimate"] == 0.0 and judged["logme"]["prefixes"] == 5
    assert judged["knn"]["kendall_tau"]["estimate"] == pytest.approx(-1.0)
    assert judged["knn"]["regret_at_1"]["estimate"] == pytest.approx(55.0 - 49.0), "its top choice is the worst"
    assert judged["knn"]["regret_at_3"]["estimate"] == pytest.approx(55.0 - 51.0)
    lower, upper = judged["logme"]["kendall_tau"]["lower"], judged["logme"]["kendall_tau"]["upper"]
    assert lower <= 1.0 <= upper + 1e-12


def test_regret_is_given_relative_to_the_best_too_and_a_constant_estimator_has_no_tau():
    from xstilts.analysis.diagnostics_tables import diagnostics_tables
    from xstilts.results.diagnostics import judge_estimates, summarise

    chains = [(), ("a",), ("b",), ("a", "b"), ("b", "a")]
    scores = [50.0, 52.0, 49.0, 55.0, 51.0]
    rows = [_row(c, "t", s) for c, s in zip(chains, scores)]
    records = [_record(c, s / 10) for c, s in zip(chains, scores)]
    knn = judge_estimates(records, rows)["t"]["knn"]
    assert knn["relative_regret_at_1"]["estimate"] == pytest.approx(100 * (55.0 - 49.0) / 55.0)
    assert knn["relative_regret_at_3"]["estimate"] == pytest.approx(100 * (55.0 - 51.0) / 55.0)
    assert "3 chains" in knn["kendall_tau"]["method"], "prefixes are drawn with their chain"
    constant = [_record(c, 1.0) for c in chains]
    logme = judge_estimates(constant, rows)["t"]["logme"]
    assert logme["kendall_tau"] == {"estimate": None, "n": 5, "undefined": "the estimates are all equal"}
    tables = diagnostics_tables(summarise(constant, rows))
    estimates = next(table for title, table, _ in tables if title.startswith("Transfer estimates"))
    assert estimates[0][3:6] == ["Kendall tau", "regret@1 (points)", "regret@1 (% of best)"]
    assert "undefined: the estimates are all equal" in estimates[1] and "nan" not in str(estimates)


def test_drawing_whole_clusters_is_wider_than_drawing_their_copies_as_independent_pairs():
    from xstilts.results.statistics import paired_statistic, seeded

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=4), rng.normal(size=4)
    copies = np.repeat(np.arange(4), 6)  # each pair six times, as the prefixes of a chain share its stages
    spread = {}
    for clusters in (None, list(copies)):
        found = paired_statistic(x[copies], y[copies], lambda a, b: float(np.mean(a - b)), seeded("t"), clusters)
        spread[clusters is None] = found.upper - found.lower
    assert spread[False] > 1.8 * spread[True], spread


def test_control_prefixes_are_not_points_of_the_study():
    from xstilts.results.diagnostics import summarise

    rows = [_row((), "t", 50.0), _row(("a",), "t", 52.0), _row(("squad",), "t", 60.0, control="positive")]
    rows.append(_row((), "t", 49.0, seed=1000, control="a_a"))
    records = [_record((), 5.0), _record(("a",), 5.2), _record(("squad",), 6.0), _record((), 4.9, seed=1000)]
    summary = summarise(records, rows)
    assert {k: v["prefixes"] for k, v in summary["by_length"]["full"].items()} == {0: 1, 1: 1}
    assert summarise(records[::-1], rows) == summary, "the order records are read in changes nothing"
    assert summary["estimates"]["t"]["logme"]["prefixes"] == 2


@pytest.mark.slow
def test_every_prefix_is_diagnosed_once_and_reported(tmp_path, tiny_encoder_dir, demo_tasks):
    import json

    import xstilts
    from xstilts.config import parse_config
    from xstilts.demo.benchmark import write_parallel

    raw = {
        "encoder": str(tiny_encoder_dir),
        "output_dir": str(tmp_path / "run"),
        "tasks": demo_tasks,
        "chain": ["demo_paraphrase", "demo_swag"],
        "evaluate_every_prefix": True,
        "targets": [{"task": t, "languages": ["en", "x-lex"]} for t in ("demo_nli", "demo_ner")],
        "training": {
            "max_steps": 6,
            "batch_size": 8,
            "eval_every_steps": 6,
            "eval_examples": 8,
            "max_length": 64,
            "learning_rate": 1e-3,
        },
        "diagnostics": {
            "parallel_dir": str(write_parallel(tmp_path / "parallel", 40)),
            "probe_sentences": 60,
            "probe_steps": 10,
            "forgetting_examples": 48,
        },
    }
    xstilts.run(parse_config(raw), progress=False)
    files = sorted((tmp_path / "run" / "diagnostics").glob("*.json"))
    records = {len(r["chain"]): r for r in (json.loads(f.read_text()) for f in files)}
    assert sorted(records) == [0, 1, 2], "k = 0, 1 and 2, one record each"
    root, first, second = records[0], records[1], records[2]
    assert root["drift"]["pretrained"] == pytest.approx([1.0] * root["layers"]), "the pretrained encoder itself"
    assert first["drift"]["parent"] == pytest.approx(first["drift"]["pretrained"]), "its parent is the pretrained one"
    assert second["drift"]["parent"][-1] > second["drift"]["pretrained"][-1], "two stages move it further than one"
    assert set(root["alignment"]["languages"]) == {"x-lex", "x-ord", "x-scr"} and root["alignment"]["sentences"] == 40
    assert set(second["estimates"]) == {"demo_nli", "demo_ner"} and {"logme", "knn"} <= set(
        second["estimates"]["demo_ner"]
    )
    assert "forgetting" not in root, "nothing was trained before k = 0"
    assert [(e["task"], e["trained_at"]) for e in first["forgetting"]] == [("demo_paraphrase", 1)]
    assert [(e["task"], e["trained_at"]) for e in second["forgetting"]] == [("demo_paraphrase", 1), ("demo_swag", 2)]
    for entry in second["forgetting"]:
        assert entry["metric"] == "accuracy" and 0 <= entry["own_head"] <= 100 and 0 <= entry["probe"] <= 100
    stage = json.loads(next((tmp_path / "run" / "stages").glob("*-demo_paraphrase/stage.json")).read_text())
    # right after its own stage, its own head scores what the stage recorded on the same dev examples
    assert first["forgetting"][0]["own_head"] == pytest.approx(stage["dev_metrics"]["accuracy"])
    stamps = [f.stat().st_mtime_ns for f in files]
    xstilts.run(parse_config(raw), progress=False)
    assert [f.stat().st_mtime_ns for f in files] == stamps, "a finished diagnosis is not computed again"
    report = xstilts.write_report(tmp_path / "run").read_text()
    assert "## What each added task does to the encoder" in report and "## Cross-lingual alignment by layer" in report
    assert "| demo_ner | LogME | 3 |" in report and "## Forgetting of earlier tasks" in report
    assert "| 1 | 1 |" in report, "one (task, later prefix) pair one task later: demo_paraphrase after demo_swag"


def test_summaries_do_not_depend_on_the_order_records_are_read_in():
    from xstilts.results.diagnostics import summarise

    chains = [(), ("a",), ("b",), ("c",), ("d",)]
    rows = [_row(c, "t", 50.0 + i) for i, c in enumerate(chains)]
    records = [{**_record(c, 5.0 + i), "drift": {"pretrained": [1.0 - 0.05 * i]}} for i, c in enumerate(chains)]
    summary = summarise(records, rows)
    assert summary["by_length"]["full"][1]["cka_pretrained_last"]["lower"] is not None
    assert summarise([records[i] for i in (3, 0, 4, 1, 2)], rows) == summary


@pytest.mark.parametrize("windows", ["xtreme", "huggingface"])
def test_qa_transfer_estimates_read_context_tokens_only(windows, tiny_tokenizer):
    """An XLM-R tokenizer returns no token type ids, so they cannot separate question from context: the probe
    features of a QA target are the context tokens by the tokenizer's sequence ids, nothing of the question."""
    from xstilts.evaluate.diagnostics import context_tokens
    from xstilts.settings import TrainingSettings
    from xstilts.tasks import KIND_IMPLEMENTATIONS
    from xstilts.tasks.registry import LocalFiles, TaskSpec

    context = "the cat sees the dog near the river and the bird sings"
    question = "who sings near the river"
    example = {
        "id": "q0",
        "question": question,
        "context": context,
        "answers": {"text": ["the bird"], "answer_start": [42]},
    }
    spec = TaskSpec(name="qa_probe", kind="qa", languages=("en",), data=LocalFiles(Path(".")))
    settings = TrainingSettings(max_length=64, doc_stride=16, qa_windows=windows)
    kind = KIND_IMPLEMENTATIONS["qa"]
    features = kind.build_features([example], tiny_tokenizer, spec, settings, training=True)
    assert "token_type_ids" not in tiny_tokenizer(question, context), "the XLM-R-style tokenizer has no type ids"
    batch = kind.collate(features, tiny_tokenizer.pad_token_id)
    mask = context_tokens(features, batch["input_ids"].shape[1])
    selected = batch["input_ids"][mask].tolist()
    context_ids = tiny_tokenizer(context, add_special_tokens=False)["input_ids"]
    assert selected == context_ids, "exactly the context's tokens, in order"
    assert mask.sum() < batch["attention_mask"].sum(), "the question and special tokens are left out"


def test_the_transfer_against_latency_plot_draws_both_intervals_over_the_noise_floor(tmp_path, monkeypatch):
    """Latency ratios of 1.003 and 1.005 inside a 6.5% noise floor must not read as a trend: each point carries its
    latency interval and the plot shades the floor."""
    from xstilts.analysis import plots

    gains = {str(k): {"estimate": g, "lower": g - 2, "upper": g + 2} for k, g in ((1, 1.0), (2, 1.5))}
    effects = {"full": {"test": {"targets": {"t": {"gains": gains}}, "average": None}}}
    models = [
        {"name": f"k{k}", "chain_length": k, "ratio_to_k0": r, "ratio_ci95": [r - 0.02, r + 0.03]}
        for k, r in ((0, 1.0), (1, 1.003), (2, 1.005))
    ]
    latency = {"groups": [{"mode": "full", "models": models, "noise_floor": {"ci95": [0.97, 1.065]}}]}
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, path: drawn.append(fig) or [path])
    assert plots.tradeoff(effects, latency, tmp_path / "tradeoff.png")
    axes = drawn[0].axes[0]
    low, high = axes.get_xlim()
    assert low <= 0.97 and high >= 1.065, "the axis shows the whole noise floor"
    assert any(patch.get_label().startswith("latency noise floor") for patch in axes.patches)
    bars = [c for c in axes.containers if getattr(c, "has_xerr", False)]
    assert bars and bars[0].has_yerr, "latency and gain intervals on every point"
