"""What an encoder's frozen features promise for a target, in seconds instead of a fine-tune.

Two published estimators, computed on the same features:

- **LogME** (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model from the
  features to each one-hot label column, maximised over its two precisions by the paper's fixed-point
  iteration, averaged over the columns and divided by the number of examples. Higher is better; only
  differences between encoders on the same data mean anything.
- **k-NN accuracy**: leave-one-out accuracy of a cosine k-nearest-neighbour vote (the "k-NN probe" of
  Puigcerver et al. 2021 and the task-selection literature): how far the labels are already separated in
  the feature space, with no fitting at all.
"""

from __future__ import annotations

import numpy as np
import torch

from xstilts.metrics import finite_matrix

ESTIMATORS = ("logme", "knn")


def logme(features: np.ndarray, labels: np.ndarray, iterations: int = 11) -> float:
    """LogME of integer `labels` (n,) given `features` (n, d); the reference algorithm of You et al. 2021."""
    f = finite_matrix("logme: features", features)
    y = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(y) or len(f) < 2:
        raise ValueError(f"logme: expected features (n, d) and n labels, n >= 2; got {f.shape} and {y.shape}")
    n, d = f.shape
    v, s, vh = np.linalg.svd(f.T @ f, full_matrices=True)  # the eigenvectors and values of F^T F (d x d)
    evidences = []
    for value in np.unique(y):
        target = (y == value).astype(np.float64)
        projected = vh @ (f.T @ target)
        alpha, beta = 1.0, 1.0
        ratio = alpha / beta
        for _ in range(iterations):
            gamma = (s / (s + ratio)).sum()  # effective number of parameters
            m = v @ (projected * beta / (alpha + beta * s))  # posterior mean of the weights
            alpha_de = (m * m).sum()
            alpha = gamma / (alpha_de + 1e-5)  # the reference's epsilon keeps an exact fit finite
            beta_de = ((target - f @ m) ** 2).sum()
            beta = (n - gamma) / (beta_de + 1e-5)
            new_ratio = alpha / beta
            if abs(new_ratio - ratio) / ratio < 0.01:  # the reference implementation's stopping rule
                break
            ratio = new_ratio
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * s))
            - beta / 2.0 * beta_de
            - alpha / 2.0 * alpha_de
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy (%) of a majority vote of the k most cosine-similar other examples."""
    x = torch.as_tensor(finite_matrix("knn_accuracy: features", features).astype(np.float32))
    y = torch.as_tensor(np.asarray(labels)).long()
    if len(x) <= k:
        raise ValueError(f"knn_accuracy: needs more than k = {k} examples, got {len(x)}")
    x = torch.nn.functional.normalize(x - x.mean(0), dim=1)
    correct = 0
    for start in range(0, len(x), 1024):  # blocks of similarities: memory stays O(block x n)
        similarity = x[start : start + 1024] @ x.T
        rows = torch.arange(len(similarity))
        similarity[rows, rows + start] = -float("inf")  # never one's own neighbour
        neighbours = similarity.topk(k, dim=1).indices
        votes = torch.nn.functional.one_hot(y[neighbours], int(y.max()) + 1).sum(1).float()
        votes += 1e-3 * torch.nn.functional.one_hot(y[neighbours[:, 0]], votes.shape[1])  # ties: the nearest
        correct += int((votes.argmax(1) == y[start : start + 1024]).sum())
    return 100.0 * correct / len(x)
