"""A trial model logged exactly as the registry's contract says a worker logs one,
so registry tests need no worker: a tiny torch network in an mlflow.pyfunc
PythonModel, files under the run's `model` artifact path, lineage in run tags.

Input: a DataFrame with the feature columns; output: `prediction` (regression: in
target units; classification: the label as str) and `proba_<label>` columns."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient

from services.common import lineage

SEED = Path(__file__).resolve().parents[2] / "services" / "data" / "sample"


class TinyTorchModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.spec = spec
        self.net = torch.nn.Linear(len(spec["features"]), len(spec.get("classes") or [None]))
        self.net.load_state_dict(torch.load(context.artifacts["weights"]))
        self.net.eval()

    def predict(self, context, model_input, params=None):
        s = self.spec
        x = (model_input[s["features"]].to_numpy(dtype=np.float32) - np.float32(s["x_mean"])) / np.float32(s["x_std"])
        with torch.no_grad():
            out = self.net(torch.from_numpy(x))
        classes = s.get("classes")
        if not classes:
            return pd.DataFrame({"prediction": (out.squeeze(-1).numpy() * s["y_std"] + s["y_mean"]).astype(float)})
        proba = torch.softmax(out, dim=-1).numpy().astype(float)
        frame = pd.DataFrame({"prediction": [classes[i] for i in proba.argmax(axis=1)]})
        for j, c in enumerate(classes):
            frame[f"proba_{c}"] = proba[:, j]
        return frame


def seed_data() -> tuple[pd.DataFrame, np.ndarray]:
    x = pd.read_csv(SEED / "X.csv", index_col=0, header=None)
    x.columns = [f"x{i}" for i in range(x.shape[1])]
    y = pd.read_csv(SEED / "y.csv", header=None).to_numpy(dtype=np.float64).ravel()[: len(x)]
    return x, y


def train(x: pd.DataFrame, y: np.ndarray, classes: list[str] | None = None) -> tuple[dict, dict]:
    torch.manual_seed(0)
    xm, xs = x.mean().to_numpy(), x.std().to_numpy()
    xt = torch.tensor(((x - xm) / xs).to_numpy(), dtype=torch.float32)
    net = torch.nn.Linear(x.shape[1], len(classes) if classes else 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    spec = {"features": list(x.columns), "x_mean": xm.tolist(), "x_std": xs.tolist()}
    if classes:
        target = torch.tensor(y, dtype=torch.long)
        loss_fn = torch.nn.CrossEntropyLoss()
        spec["classes"] = classes
    else:
        spec.update(y_mean=float(y.mean()), y_std=float(y.std()))
        target = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32).unsqueeze(-1)
        loss_fn = torch.nn.MSELoss()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(net(xt), target)
        loss.backward()
        opt.step()
    if not classes:
        # The RMSE the run records, computed in training, not through the pyfunc.
        with torch.no_grad():
            pred = net(xt).squeeze(-1).numpy() * spec["y_std"] + spec["y_mean"]
        spec["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
    return net.state_dict(), spec


def log_trial_run(tracking_uri: str, experiment: str, *, classes: list[str] | None = None,
                  state: str = "COMPLETE", with_model: bool = True, trial: int = 0) -> tuple[str, dict]:
    """A trial run like a worker's: returns (run_id, metrics)."""
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    x, y = seed_data()
    if classes:
        y = (y > np.median(y)).astype(int)
    tags = {
        lineage.TAG_KIND: lineage.KIND_TRIAL, lineage.TAG_STUDY: "study-1", lineage.TAG_TRIAL: str(trial),
        lineage.TAG_STATE: state, lineage.TAG_DATASET: "seed@1", lineage.TAG_FEATURES: json.dumps(list(x.columns)),
        lineage.TAG_TASK: "classification" if classes else "regression",
    }
    if state == "PRUNED":
        tags[lineage.TAG_REASON] = "median pruner at epoch 2"
    run = client.create_run(exp_id, tags=tags, run_name=lineage.trial_run_name("study-1", trial))
    metrics = {}
    if with_model:
        weights, spec = train(x, y, classes)
        model = TinyTorchModel()
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.save(weights, tmp / "weights.pt")
            (tmp / "spec.json").write_text(json.dumps(spec))
            mlflow.pyfunc.save_model(tmp / "model", python_model=model,
                                     artifacts={"weights": str(tmp / "weights.pt"), "spec": str(tmp / "spec.json")},
                                     pip_requirements=["mlflow", "torch", "pandas"])
            client.log_artifacts(run.info.run_id, str(tmp / "model"), lineage.MODEL_ARTIFACT)
        if not classes:
            metrics["rmse"] = spec["rmse"]
            metrics["val_loss"] = spec["rmse"] ** 2 / float(y.var())
        for k, v in metrics.items():
            client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)
    return run.info.run_id, metrics
