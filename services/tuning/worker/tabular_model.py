"""The model family kubetune tunes, its preprocessing, and the MLflow pyfunc that serves both.

MLflow logs this file as "models from code": a loaded model needs only this file,
its two artifacts (weights and a JSON spec) and torch, not kubetune itself. Training
uses the same `Preprocessing` to build its tensors, so prediction applies exactly the
steps training did, with values fitted on the training split alone.

Input: a DataFrame with the model's input columns, by name, in any order (extra
columns are ignored). Numeric and boolean columns take numbers (a missing value is
imputed); categorical columns take text (a missing or unseen category has a slot of
its own). Output: a DataFrame with `prediction` in the target's units (the label for
classification) and, for classification, a `proba_<label>` column per class."""

from __future__ import annotations

import json
import math
import warnings

import mlflow
import numpy as np
import pandas as pd
import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
NUMERIC, CATEGORICAL, BOOLEAN = "numeric", "categorical", "boolean"
# Category codes: 0 for a category training never saw, 1 for a missing value, then the vocabulary.
UNKNOWN, MISSING, FIRST_CATEGORY = 0, 1, 2
MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none"}
BOOLEAN_TEXT = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "t": 1.0, "f": 0.0, "y": 1.0, "n": 0.0,
                "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}


def build_mlp(n_features: int, n_outputs: int, layer_units: list[int], dropout: float, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for units in layer_units:
        layers += [nn.Linear(width, units), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def embedding_dim(cardinality: int) -> int:
    """Narrow: 2 up to ~50 categories, 16 from ~2,300. fast.ai's wider rule (13 for 40
    categories) let the 5,000-row multi-class table overfit within 1-3 epochs (validation
    accuracy 0.72-0.76 against 0.78-0.81 at 2), as a category's effect on a target is
    often a single number."""
    return int(min(16, max(2, round(cardinality ** 0.5 / 3))))


def fastai_embedding_dim(cardinality: int) -> int:
    """The rule models saved before `embedding_dims` was recorded were built with."""
    return int(min(16, max(2, round(1.6 * cardinality ** 0.56))))


class TabularNet(nn.Module):
    """An embedding per categorical column, concatenated with the numeric inputs, into an
    MLP; with `linear_skip`, plus a linear layer from the same inputs to the outputs
    ("wide and deep"): the linear model is then a special case the network reaches early,
    which on small or nearly linear tables is what it should not lose to. Models saved
    without the key load as they were trained."""

    def __init__(self, n_numeric: int, cardinalities: list[int], n_outputs: int, layer_units: list[int],
                 dropout: float, activation: str, linear_skip: bool = False, embedding_dims: list[int] | None = None):
        super().__init__()
        dims = embedding_dims if embedding_dims is not None else [fastai_embedding_dim(c) for c in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cardinalities, dims))
        width = n_numeric + sum(e.embedding_dim for e in self.embeddings)
        self.mlp = build_mlp(width, n_outputs, layer_units, dropout, activation)
        self.skip = nn.Linear(width, n_outputs) if linear_skip else None

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        if len(self.embeddings):
            x_num = torch.cat([x_num, *(e(x_cat[:, i]) for i, e in enumerate(self.embeddings))], dim=1)
        out = self.mlp(x_num)
        return out if self.skip is None else out + self.skip(x_num)


def canonical_text(value) -> str | None:
    """A category's text: numbers as they read in a CSV (3.0 -> "3"); None when missing."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    text = str(value).strip()
    return None if text.lower() in MISSING_TEXT else text


class InputError(ValueError):
    """A value the model cannot take, named by its row and column."""


def _numbers(series: pd.Series, name: str, boolean: bool) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
    else:
        values = np.empty(len(series), dtype=np.float64)
        for i, v in enumerate(series.tolist()):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                values[i] = np.nan
            elif isinstance(v, (bool, np.bool_)):
                values[i] = float(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                values[i] = float(v)
            else:
                text = str(v).strip().lower()
                if text in MISSING_TEXT:
                    values[i] = np.nan
                elif boolean and text in BOOLEAN_TEXT:
                    values[i] = BOOLEAN_TEXT[text]
                else:
                    try:
                        values[i] = float(text)
                    except ValueError:
                        raise InputError(f"row {i}, column {name!r}: {v!r} is not a number") from None
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.argmax(infinite))
        raise InputError(f"row {i}, column {name!r}: {values[i]} is infinite")
    if boolean:
        bad = ~np.isnan(values) & (values != 0.0) & (values != 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"row {i}, column {name!r}: {series.iloc[i]!r} is not a boolean (true/false, 1/0)")
    return values


class Preprocessing:
    """Column by column, what the training split taught: medians, missing indicators,
    means and standard deviations, category vocabularies; and the target's scale."""

    def __init__(self, spec: dict):
        self.columns: list[dict] = spec["columns"]
        self.y_mean = float(spec.get("y_mean", 0.0))
        self.y_std = float(spec.get("y_std", 1.0))
        self.classes: list[str] = spec.get("classes") or []
        self._codes = {c["name"]: {v: FIRST_CATEGORY + i for i, v in enumerate(c["categories"])}
                       for c in self.columns if c["kind"] == CATEGORICAL}

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def n_numeric(self) -> int:
        return sum(1 + int(c["indicator"]) for c in self.columns if c["kind"] != CATEGORICAL)

    @property
    def cardinalities(self) -> list[int]:
        return [FIRST_CATEGORY + len(c["categories"]) for c in self.columns if c["kind"] == CATEGORICAL]

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: dict[str, str], train: np.ndarray, y: np.ndarray | None = None,
            classes: list[str] | None = None) -> "Preprocessing":
        """Learnt from the rows `train` of `frame` alone (and of the target `y`)."""
        columns = []
        for name, kind in kinds.items():
            if kind == CATEGORICAL:
                texts = _texts(frame[name].iloc[train])
                present = sorted({t for t in texts if t is not None})
                columns.append({"name": name, "kind": kind, "categories": present})
                continue
            values = _numbers(frame[name].iloc[train], name, kind == BOOLEAN)
            present = values[~np.isnan(values)]
            median = float(np.median(present)) if present.size else 0.0
            filled = np.where(np.isnan(values), median, values)
            std = float(filled.std()) if filled.size else 1.0
            columns.append({"name": name, "kind": kind, "median": median, "indicator": bool(present.size < values.size),
                            "mean": float(filled.mean()) if filled.size else 0.0, "std": std if std > 0 else 1.0})
        spec = {"columns": columns, "classes": list(classes or [])}
        if y is not None and not classes:
            target = y[train].astype(np.float64)
            spec["y_mean"] = float(target.mean())
            spec["y_std"] = float(target.std()) or 1.0
        return cls(spec)

    def spec(self) -> dict:
        return {"columns": self.columns, "y_mean": self.y_mean, "y_std": self.y_std, "classes": self.classes}

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(numeric inputs float32 [n, n_numeric], category codes int64 [n, n_categorical])."""
        missing = [c for c in self.names if c not in frame.columns]
        if missing:
            raise InputError(f"missing input columns: {', '.join(missing)}")
        n = len(frame)
        numeric = np.empty((n, self.n_numeric), dtype=np.float32)
        codes = np.empty((n, len(self.cardinalities)), dtype=np.int64)
        j = k = 0
        for c in self.columns:
            if c["kind"] == CATEGORICAL:
                vocab = self._codes[c["name"]]
                codes[:, k] = [MISSING if t is None else vocab.get(t, UNKNOWN) for t in _texts(frame[c["name"]])]
                k += 1
                continue
            values = _numbers(frame[c["name"]], c["name"], c["kind"] == BOOLEAN)
            absent = np.isnan(values)
            numeric[:, j] = (np.where(absent, c["median"], values) - c["mean"]) / c["std"]
            j += 1
            if c["indicator"]:
                numeric[:, j] = absent
                j += 1
        return numeric, codes

    def tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        numeric, codes = self.transform(frame)
        return torch.from_numpy(numeric), torch.from_numpy(codes)

    def outputs(self, out: torch.Tensor) -> pd.DataFrame:
        """The network's raw outputs as predictions in the target's terms."""
        if self.classes:
            proba = torch.softmax(out, dim=1).numpy().astype(np.float64)
            result = pd.DataFrame({"prediction": [self.classes[i] for i in proba.argmax(axis=1)]})
            for i, label in enumerate(self.classes):
                result[f"proba_{label}"] = proba[:, i]
            return result
        values = out.squeeze(-1).numpy().astype(np.float64) * self.y_std + self.y_mean
        return pd.DataFrame({"prediction": values})


def _texts(series: pd.Series) -> list[str | None]:
    return [canonical_text(v) for v in series.tolist()]


# MLflow nudges towards type-hinted predict(); rows arrive as a DataFrame either way.
warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class TabularModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["spec"]) as f:
            self.spec = json.load(f)
        self.prep = Preprocessing(self.spec)
        self.net = TabularNet(**self.spec["architecture"])
        self.net.load_state_dict(torch.load(context.artifacts["weights"], weights_only=True))
        self.net.eval()

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        x_num, x_cat = self.prep.tensors(frame)
        with torch.no_grad():
            out = self.net(x_num, x_cat)
        return self.prep.outputs(out)


mlflow.models.set_model(TabularModel())
