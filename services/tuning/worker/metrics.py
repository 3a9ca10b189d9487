"""A model's quality on one split, in the target's units: the numbers a user compares.

Plain numpy, so the worker image needs no scikit-learn; the formulas are
scikit-learn's (tests check them against it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SPLITS = ("train", "val", "test")
REGRESSION = ("rmse", "mae", "r2")
CLASSIFICATION = ("accuracy", "f1_macro", "log_loss", "roc_auc")


def regression(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    truth = np.asarray(truth, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - truth
    total = float(((truth - truth.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        # As scikit-learn: 1 for a perfect fit of a constant target, 0 otherwise.
        "r2": 1.0 - float((error**2).sum()) / total if total > 0 else float(np.all(error == 0)),
    }


def classification(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """`truth`: class indices; `proba`: [rows, classes] probabilities."""
    truth = np.asarray(truth, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    predicted = proba.argmax(axis=1)
    f1 = []
    for c in range(k):
        tp = float(np.sum((predicted == c) & (truth == c)))
        fp = float(np.sum((predicted == c) & (truth != c)))
        fn = float(np.sum((predicted != c) & (truth == c)))
        if tp + fp + fn == 0:
            continue  # a class neither present nor predicted: left out, as scikit-learn's labels do
        f1.append(2 * tp / (2 * tp + fp + fn))
    eps = np.finfo(np.float64).eps
    picked = np.clip(proba[np.arange(len(truth)), truth], eps, 1.0)
    out = {
        "accuracy": float(np.mean(predicted == truth)),
        "f1_macro": float(np.mean(f1)) if f1 else 0.0,
        "log_loss": float(-np.mean(np.log(picked))),
    }
    if k == 2:
        out["roc_auc"] = roc_auc(truth == 1, proba[:, 1])
    return out


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The Mann-Whitney form with average ranks for ties; NaN with one class only."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, position, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[position]  # 1-based, ties share their average rank
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def named(split: str, values: dict[str, float]) -> dict[str, float]:
    """`{"rmse": 1.2}` for the test split -> `{"test/rmse": 1.2}`: MLflow groups them by split."""
    return {f"{split}/{k}": v for k, v in values.items()}


def scores(outputs: Callable[[str], np.ndarray], data) -> dict[str, float]:
    """Every split's metrics for a model whose raw outputs on a split are `outputs(split)`
    (logits for classification, the standardised target for regression)."""
    out: dict[str, float] = {}
    for split in SPLITS:
        raw = np.asarray(outputs(split), dtype=np.float64)
        truth = data.y[split].numpy()
        if data.classification:
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            out |= named(split, classification(truth, shifted / shifted.sum(axis=1, keepdims=True)))
        else:
            scale = lambda v: np.asarray(v, dtype=np.float64).reshape(-1) * data.y_std + data.y_mean  # noqa: E731
            out |= named(split, regression(scale(truth), scale(raw)))
    return out
