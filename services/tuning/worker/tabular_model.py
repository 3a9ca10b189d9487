"""The model family kubetune tunes, and the MLflow pyfunc that serves it.

MLflow logs this file as "models from code": a loaded model needs only this file,
its two artifacts (weights and a JSON spec) and torch, not kubetune itself.
Input: a DataFrame with the feature columns; output: a DataFrame with `prediction`
in the original target units (the label for classification) and, for
classification, a `proba_<label>` column per class."""

from __future__ import annotations

import json
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


class Preprocessing:
    """Standardisation learnt on the training split; applied by training and serving alike."""

    def __init__(self, spec: dict):
        self.features = spec["features"]
        self.x_mean = np.asarray(spec["x_mean"], dtype=np.float32)
        self.x_std = np.asarray(spec["x_std"], dtype=np.float32)
        self.y_mean = float(spec.get("y_mean", 0.0))
        self.y_std = float(spec.get("y_std", 1.0))
        self.classes = spec.get("classes") or []

    def features_tensor(self, frame: pd.DataFrame) -> torch.Tensor:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"missing feature columns: {', '.join(missing)}")
        x = frame[self.features].to_numpy(dtype=np.float32)
        return torch.from_numpy((x - self.x_mean) / self.x_std)


# MLflow nudges towards type-hinted predict(); rows arrive as a DataFrame either way.
warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


class TabularModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["spec"]) as f:
            self.spec = json.load(f)
        self.prep = Preprocessing(self.spec)
        self.net = build_mlp(**self.spec["architecture"])
        self.net.load_state_dict(torch.load(context.artifacts["weights"], weights_only=True))
        self.net.eval()

    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        with torch.no_grad():
            out = self.net(self.prep.features_tensor(frame))
        if self.prep.classes:
            proba = torch.softmax(out, dim=1).numpy()
            result = pd.DataFrame({"prediction": [self.prep.classes[i] for i in proba.argmax(axis=1)]})
            for i, label in enumerate(self.prep.classes):
                result[f"proba_{label}"] = proba[:, i]
            return result
        values = out.squeeze(-1).numpy().astype(np.float64) * self.prep.y_std + self.prep.y_mean
        return pd.DataFrame({"prediction": values})


mlflow.models.set_model(TabularModel())
