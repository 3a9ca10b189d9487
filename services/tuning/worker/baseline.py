"""A study's linear baseline: ridge regression or logistic regression on the trials' own
inputs (the same preprocessing, fitted on the same training split), so a user sees at
once whether the network earned its keep.

The inputs are what the network sees before its embeddings: the imputed, standardised
numbers with their missing indicators, and each category one-hot (its unknown and
missing slots included). Regularisation as scikit-learn's defaults: Ridge(alpha=1) and
LogisticRegression(C=1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from services.tuning.worker import metrics
from services.tuning.worker.training import TabularData

RIDGE_ALPHA = 1.0
LOGISTIC_C = 1.0
LOGISTIC_STEPS = 200


@dataclass
class Baseline:
    model: str  # "ridge regression" or "logistic regression"
    metrics: dict[str, float]


# Rows one-hot encoded at a time: a million rows with a 1,000-value category would be
# ~8 GB of inputs at once; in chunks the memory is bounded and the result the same.
CHUNK_ROWS = 50_000


def linear_inputs(data: TabularData, split: str, rows: slice = slice(None)) -> torch.Tensor:
    x_num, x_cat, _ = (t[rows] for t in data.split(split))
    parts = [x_num.double()]
    for i, cardinality in enumerate(data.prep.cardinalities):
        parts.append(torch.nn.functional.one_hot(x_cat[:, i], cardinality).double())
    return torch.cat(parts, dim=1)


def _chunks(data: TabularData, split: str):
    n = len(data.y[split])
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        yield linear_inputs(data, split, rows), data.y[split][rows]


def fit(data: TabularData) -> Baseline:
    if data.classification:
        weights = _logistic(linear_inputs(data, "train"), data.y["train"], len(data.classes))
        name = "logistic regression"
    else:
        weights = _ridge(_chunks(data, "train"))
        name = "ridge regression"

    def outputs(split: str) -> np.ndarray:
        return torch.cat([x @ weights[:-1] + weights[-1] for x, _ in _chunks(data, split)]).numpy()

    return Baseline(name, metrics.scores(outputs, data))


def _ridge(chunks) -> torch.Tensor:
    """Closed form with an unpenalised intercept: centre, solve, add the intercept back.
    The centred Gram matrix is summed chunk by chunk (X'X - n mean mean'), so the inputs
    are never all in memory at once."""
    n, sum_x, sum_y, xtx, xty = 0, 0.0, 0.0, 0.0, 0.0
    for x, y in chunks:
        y = y.double()
        n += len(x)
        sum_x, sum_y = sum_x + x.sum(dim=0), sum_y + y.sum()
        xtx, xty = xtx + x.T @ x, xty + x.T @ y
    mean_x, mean_y = sum_x / n, sum_y / n
    gram = xtx - n * torch.outer(mean_x, mean_x) + RIDGE_ALPHA * torch.eye(len(mean_x), dtype=mean_x.dtype)
    w = torch.linalg.solve(gram, xty - n * mean_x * mean_y)
    return torch.cat([w, (mean_y - mean_x @ w).reshape(1)]).reshape(-1, 1)


def _logistic(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Logistic regression by L-BFGS: mean cross-entropy + ||w||^2 / (2 C n), as
    scikit-learn's objective divided by C n. Two classes take one weight vector (the
    second class's logit against a first fixed at 0), as scikit-learn does: two vectors
    would halve the penalty on their difference."""
    n, d = x.shape
    w = torch.zeros(d + 1, 1 if k == 2 else k, dtype=x.dtype, requires_grad=True)
    xb = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    optimizer = torch.optim.LBFGS([w], max_iter=LOGISTIC_STEPS, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def logits(weights: torch.Tensor) -> torch.Tensor:
        out = xb @ weights
        return torch.cat([torch.zeros_like(out), out], dim=1) if k == 2 else out

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits(w), y) + (w[:-1] ** 2).sum() / (2 * LOGISTIC_C * n)
        loss.backward()
        return loss

    optimizer.step(closure)
    w = w.detach()
    return torch.cat([torch.zeros_like(w), w], dim=1) if k == 2 else w
