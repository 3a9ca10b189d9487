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


# Rows read at a time: a chunk's numbers in float64 stay small whatever the table's size.
CHUNK_ROWS = 50_000
# Logistic regression is fitted by L-BFGS on one-hot inputs held in memory: on at most this
# many training rows (the first ones: the split's order is shuffled and, for
# classification, stratified), so a million-row table with a 1,000-value category does
# not need gigabytes. Smaller tables use every row, as before.
LOGISTIC_MAX_ROWS = 50_000


def linear_inputs(data: TabularData, split: str, rows: slice = slice(None)) -> torch.Tensor:
    x_num, x_cat, _ = (t[rows] for t in data.split(split))
    parts = [x_num.double()]
    for i, cardinality in enumerate(data.prep.cardinalities):
        parts.append(torch.nn.functional.one_hot(x_cat[:, i], cardinality).double())
    return torch.cat(parts, dim=1)


def _offsets(data: TabularData) -> list[int]:
    """Where each category's one-hot block starts among the inputs."""
    out, at = [], data.prep.n_numeric
    for cardinality in data.prep.cardinalities:
        out.append(at)
        at += cardinality
    return out


def _linear(data: TabularData, split: str, weights: torch.Tensor) -> np.ndarray:
    """inputs @ weights + intercept (the last row), a category's one-hot product read as
    its weight row."""
    x_num, x_cat, _ = data.split(split)
    p, offsets = data.prep.n_numeric, _offsets(data)
    parts = []
    for start in range(0, len(x_num), CHUNK_ROWS):  # float64 copies of a chunk, not of the split
        rows = slice(start, start + CHUNK_ROWS)
        out = x_num[rows].double() @ weights[:p] + weights[-1]
        for i, at in enumerate(offsets):
            out += weights[at + x_cat[rows, i]]
        parts.append(out)
    return torch.cat(parts).numpy()


def fit(data: TabularData) -> Baseline:
    if data.classification:
        rows = slice(0, LOGISTIC_MAX_ROWS)
        weights = _logistic(linear_inputs(data, "train", rows), data.y["train"][rows], len(data.classes))
        name = "logistic regression"
    else:
        weights = _ridge(data)
        name = "ridge regression"
    return Baseline(name, metrics.scores(lambda split: _linear(data, split, weights), data))


def _ridge(data: TabularData) -> torch.Tensor:
    """Closed form with an unpenalised intercept: centre, solve, add the intercept back.
    X'X is summed chunk by chunk without building the one-hot inputs: a category's block
    against the numbers is a sum of rows per category, against itself its counts (a
    diagonal), against another category a table of pair counts. A million rows with a
    1,000-value category then take seconds, not a dense product of 1,300 columns."""
    x_num, x_cat, y_all = data.split("train")
    p, cards, offsets = data.prep.n_numeric, data.prep.cardinalities, _offsets(data)
    d = p + sum(cards)
    xtx = torch.zeros(d, d, dtype=torch.float64)
    xty = torch.zeros(d, dtype=torch.float64)
    sum_x = torch.zeros(d, dtype=torch.float64)
    n, sum_y = len(y_all), float(y_all.double().sum())
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        num, codes, y = x_num[rows].double(), x_cat[rows], y_all[rows].double()
        xtx[:p, :p] += num.T @ num
        xty[:p] += num.T @ y
        sum_x[:p] += num.sum(dim=0)
        for i, (a, m) in enumerate(zip(offsets, cards)):
            ci = codes[:, i]
            counts = torch.bincount(ci, minlength=m).double()
            sum_x[a:a + m] += counts
            xty[a:a + m] += torch.bincount(ci, weights=y, minlength=m)
            xtx[a:a + m, a:a + m] += torch.diag(counts)
            block = torch.zeros(m, p, dtype=torch.float64).index_add_(0, ci, num)
            xtx[a:a + m, :p] += block
            xtx[:p, a:a + m] += block.T
            for j in range(i + 1, len(cards)):
                b, mj = offsets[j], cards[j]
                pairs = torch.bincount(ci * mj + codes[:, j], minlength=m * mj).double().reshape(m, mj)
                xtx[a:a + m, b:b + mj] += pairs
                xtx[b:b + mj, a:a + m] += pairs.T
    mean_x, mean_y = sum_x / n, sum_y / n
    gram = xtx - n * torch.outer(mean_x, mean_x) + RIDGE_ALPHA * torch.eye(d, dtype=torch.float64)
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
