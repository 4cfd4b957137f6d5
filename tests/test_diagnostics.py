"""Representation diagnostics and transferability estimators on inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau, ortho_group

from xstilts.evaluate.representations import linear_cka, retrieval_accuracy
from xstilts.evaluate.transferability import fit_linear_probe, knn_accuracy, logme, probe_accuracy


def test_linear_cka_exact_values():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert linear_cka(x, x) == pytest.approx(1.0)
    # y keeps only the first coordinate: X^T Y = [[2], [0]], ||.||^2 = 4; ||X^T X|| = ||2 I|| = 2*sqrt(2); ||Y^T Y|| = 2
    y = x[:, :1]
    assert linear_cka(x, y) == pytest.approx(4 / (2 * np.sqrt(2) * 2))
    assert linear_cka(x, x[:, 1:]) == pytest.approx(1 / np.sqrt(2))
    # orthogonal: the two coordinates carry unrelated information
    assert linear_cka(x[:, :1], x[:, 1:]) == pytest.approx(0.0)


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


def test_a_linear_probe_recovers_a_planted_signal_and_not_noise():
    rng = np.random.default_rng(0)
    x, y = planted(rng, 600, noise=0.5)
    probe = fit_linear_probe(x[:400], y[:400])
    assert probe_accuracy(probe, x[400:], y[400:]) > 98
    random_labels = rng.integers(0, 3, 600)
    probe = fit_linear_probe(x[:400], random_labels[:400])
    assert probe_accuracy(probe, x[400:], random_labels[400:]) < 45, "no signal: near chance (33%)"


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
