"""scikit-learn reference models on a `testing.tables.Table`, on the platform's own split:
HistGradientBoosting with default settings and a linear baseline (ridge / logistic
regression with median imputation, missing indicators, one-hot and standardisation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, root_mean_squared_error
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from testing.tables import Table

# The data service's default split seed (IngestOptions.split_seed 0 means 42).
DEFAULT_SPLIT_SEED = 42


def class_indices(table: Table) -> np.ndarray | None:
    """The target as the platform stores it for classification: the index of each label
    among the sorted labels; None for regression."""
    if not table.structure.classification:
        return None
    _, index = np.unique(table.frame[table.target].astype(str).to_numpy(), return_inverse=True)
    return index.astype(np.int64)


def platform_split(table: Table, seed: int = DEFAULT_SPLIT_SEED) -> dict[str, np.ndarray]:
    """Row indices of train/val/test exactly as a worker splits the stored table (no row
    of these tables lacks its target, so the stored rows are the table's, in order)."""
    from services.tuning.worker.training import split_indices

    return split_indices(table.rows, seed, class_indices(table))


def features(table: Table) -> pd.DataFrame:
    """The feature columns as models take them: numbers and booleans float64 (NaN =
    missing), categories pandas `category` (NaN = missing), the ISO date as year, month
    and day of week; the id column left out."""
    s, frame = table.structure, table.frame
    out = {name: pd.to_numeric(frame[name], errors="coerce").astype(np.float64) for name in s.numeric}
    for name in s.boolean:
        out[name] = frame[name].astype(np.float64)
    if s.date_column:
        date = pd.to_datetime(frame[s.date_column], format="%Y-%m-%d", errors="coerce")
        out[f"{s.date_column}_year"] = date.dt.year.astype(np.float64)
        out[f"{s.date_column}_month"] = date.dt.month.astype(np.float64)
        out[f"{s.date_column}_dayofweek"] = date.dt.dayofweek.astype(np.float64)
    for name in s.categorical:
        out[name] = frame[name].astype("category")
    return pd.DataFrame(out, index=frame.index)


def hgb(table: Table):
    """scikit-learn's gradient boosting with default settings; NaN and categories natively."""
    cls = HistGradientBoostingClassifier if table.structure.classification else HistGradientBoostingRegressor
    return cls(categorical_features="from_dtype", random_state=0)


def linear_baseline(table: Table, x: pd.DataFrame) -> Pipeline:
    """Ridge / logistic regression after median imputation with missing indicators and
    standardisation of numbers, one-hot of categories (missing its own category)."""
    categorical = [c for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)]
    numeric = [c for c in x.columns if c not in categorical]
    prep = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="(missing)"),
            OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    model = LogisticRegression(max_iter=5000) if table.structure.classification else Ridge(alpha=1.0)
    return Pipeline([("prep", prep), ("model", model)])


def _as_object(x: pd.DataFrame) -> pd.DataFrame:
    """Categories as text with NaN for missing: what SimpleImputer recognises."""
    out = x.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
    return out


@dataclass(frozen=True)
class Scores:
    metric: str  # "rmse" or "accuracy"
    hgb: float
    linear: float
    train_rows: int
    test_rows: int


def metric_name(table: Table) -> str:
    return "accuracy" if table.structure.classification else "rmse"


def score(table: Table, y_true, y_pred) -> float:
    if table.structure.classification:
        return float(accuracy_score(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)))
    return float(root_mean_squared_error(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)))


def reference_scores(table: Table, split: dict[str, np.ndarray] | None = None) -> Scores:
    """Both models fitted on the train split, scored on the test split; validation rows
    are unused (HGB's defaults hold out their own early-stopping rows above 10,000)."""
    split = split if split is not None else platform_split(table)
    x = features(table)
    y = table.frame[table.target]
    if table.structure.classification:
        y = y.astype(str)
    train, test = split["train"], split["test"]
    xo = _as_object(x)
    # One thread: on a shared machine with more threads than free cores, OpenMP's
    # barriers make gradient boosting tens of times slower; one thread is steady.
    with threadpool_limits(limits=1):
        booster = hgb(table).fit(x.iloc[train], y.iloc[train])
        linear = linear_baseline(table, x).fit(xo.iloc[train], y.iloc[train])
        return Scores(
            metric=metric_name(table),
            hgb=score(table, y.iloc[test], booster.predict(x.iloc[test])),
            linear=score(table, y.iloc[test], linear.predict(xo.iloc[test])),
            train_rows=len(train), test_rows=len(test),
        )
