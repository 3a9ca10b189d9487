"""A trial model logged exactly as the registry's contract says a worker logs one,
so registry tests need no worker: a tiny torch network in an mlflow.pyfunc
PythonModel with its preprocessing inside, files under the run's `model` artifact
path, lineage and the input schema in run tags.

Input: a DataFrame with named columns in any order (extra ones ignored): numeric
columns float (NaN = missing: train median + a missing indicator), a categorical
column str (None = missing, its own category; an unseen value -> an "unknown" slot).
Output: `prediction` (regression: in target units; classification: the label as
str) and `proba_<label>` columns. The signature names every input: double / string."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import cloudpickle
import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from services.common import mlflow_tags

SEED = Path(__file__).resolve().parents[1] / "services" / "data" / "sample"
NUMERIC = [f"x{i}" for i in range(5)]
CATEGORICAL = "region"
REGIONS = ["north", "south", "east"]
REGION_EFFECT = {"north": 0.0, "south": 60.0, "east": -60.0}
INPUT_SCHEMA = [{"name": n, "kind": "numeric"} for n in NUMERIC] + [{"name": CATEGORICAL, "kind": "categorical"}]


def encode(frame: pd.DataFrame, spec: dict) -> np.ndarray:
    """The model's preprocessing, fitted on the training rows (spec): by column name."""
    num = frame[spec["numeric"]].to_numpy(dtype=np.float64)
    missing = np.isnan(num)
    num = np.where(missing, np.asarray(spec["median"]), num)
    num = (num - np.asarray(spec["mean"])) / np.asarray(spec["std"])
    vocab = spec["vocab"]  # the categories seen in training, then "missing", then "unknown"
    slot = {v: i for i, v in enumerate(vocab)}
    onehot = np.zeros((len(frame), len(vocab) + 2))
    for i, v in enumerate(frame[spec["categorical"]].tolist()):
        missing_value = v is None or (isinstance(v, float) and np.isnan(v))
        onehot[i, len(vocab) if missing_value else slot.get(str(v), len(vocab) + 1)] = 1.0
    return np.hstack([num, missing.astype(np.float64), onehot]).astype(np.float32)


class TinyTorchModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.spec = spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.net = torch.nn.Linear(spec["width"], len(spec.get("classes") or [None]))
        self.net.load_state_dict(torch.load(context.artifacts["weights"]))
        self.net.eval()

    def predict(self, context, model_input, params=None):
        s = self.spec
        with torch.no_grad():
            out = self.net(torch.from_numpy(encode(model_input, s)))
        classes = s.get("classes")
        if not classes:
            return pd.DataFrame({"prediction": (out.squeeze(-1).numpy() * s["y_std"] + s["y_mean"]).astype(float)})
        proba = torch.softmax(out, dim=-1).numpy().astype(float)
        frame = pd.DataFrame({"prediction": [classes[i] for i in proba.argmax(axis=1)]})
        for j, c in enumerate(classes):
            frame[f"proba_{c}"] = proba[:, j]
        return frame


def seed_data() -> tuple[pd.DataFrame, np.ndarray]:
    """The seed's five numeric columns, every 7th x2 missing, and a region that moves
    the target; regions cycle over the rows, one row in 11 has none."""
    x = pd.read_csv(SEED / "X.csv", index_col=0, header=None)
    x.columns = NUMERIC
    x = x.reset_index(drop=True)
    y = pd.read_csv(SEED / "y.csv", header=None).to_numpy(dtype=np.float64).ravel()[: len(x)]
    region = [None if i % 11 == 5 else REGIONS[i % 3] for i in range(len(x))]
    y = y + np.array([REGION_EFFECT.get(r, 0.0) if r else 0.0 for r in region])
    x.loc[x.index % 7 == 3, "x2"] = np.nan
    x[CATEGORICAL] = pd.Series(region, dtype=object)
    return x, y


def train(x: pd.DataFrame, y: np.ndarray, classes: list[str] | None = None) -> tuple[dict, dict]:
    torch.manual_seed(0)
    num = x[NUMERIC]
    median = num.median()
    filled = num.fillna(median)
    spec = {"numeric": NUMERIC, "categorical": CATEGORICAL, "median": median.tolist(),
            "mean": filled.mean().tolist(), "std": filled.std().tolist(),
            "vocab": sorted({v for v in x[CATEGORICAL] if v is not None})}
    spec["width"] = 2 * len(NUMERIC) + len(spec["vocab"]) + 2
    xt = torch.from_numpy(encode(x, spec))
    net = torch.nn.Linear(spec["width"], len(classes) if classes else 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
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


def signature(classes: list[str] | None) -> ModelSignature:
    inputs = Schema([ColSpec("double", n) for n in NUMERIC] + [ColSpec("string", CATEGORICAL)])
    outputs = [ColSpec("string" if classes else "double", "prediction")]
    outputs += [ColSpec("double", f"proba_{c}") for c in classes or []]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


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
        mlflow_tags.TAG_KIND: mlflow_tags.KIND_TRIAL, mlflow_tags.TAG_STUDY: "study-1", mlflow_tags.TAG_TRIAL: str(trial),
        mlflow_tags.TAG_STATE: state, mlflow_tags.TAG_DATASET: "seed@1",
        mlflow_tags.TAG_FEATURES: json.dumps([c["name"] for c in INPUT_SCHEMA]),
        mlflow_tags.TAG_INPUT_SCHEMA: json.dumps(INPUT_SCHEMA),
        mlflow_tags.TAG_TASK: "classification" if classes else "regression",
    }
    if state == "PRUNED":
        tags[mlflow_tags.TAG_REASON] = "median pruner at epoch 2"
    run = client.create_run(exp_id, tags=tags, run_name=mlflow_tags.trial_run_name("study-1", trial))
    metrics = {}
    if with_model:
        # By value: a platform's registry process cannot import this test module.
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        weights, spec = train(x, y, classes)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.save(weights, tmp / "weights.pt")
            (tmp / "spec.json").write_text(json.dumps(spec))
            mlflow.pyfunc.save_model(tmp / "model", python_model=TinyTorchModel(), signature=signature(classes),
                                     artifacts={"weights": str(tmp / "weights.pt"), "spec": str(tmp / "spec.json")},
                                     pip_requirements=["mlflow", "torch", "pandas"])
            client.log_artifacts(run.info.run_id, str(tmp / "model"), mlflow_tags.MODEL_ARTIFACT)
        if not classes:
            metrics["rmse"] = spec["rmse"]
            metrics["val_loss"] = spec["rmse"] ** 2 / float(y.var())
        for k, v in metrics.items():
            client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)
    return run.info.run_id, metrics


def log_packed_trial_run(tracking_uri: str, experiment: str) -> tuple[str, pd.DataFrame, np.ndarray]:
    """A trial run as a worker logs one now: the worker's own training on the seed's
    numeric columns and its one-file model (services/common/packed_model.py). Returns
    (run_id, the input frame, the trained network's own predictions for it)."""
    from services.tuning.worker.tabular_model import TabularNet  # noqa: PLC0415
    from services.tuning.worker.training import prepare, train as train_trial  # noqa: PLC0415
    from services.tuning.worker.trials import input_schema, log_model  # noqa: PLC0415

    x = pd.read_csv(SEED / "X.csv", index_col=0, header=None)
    x.columns = NUMERIC
    x = x.reset_index(drop=True)
    y = pd.read_csv(SEED / "y.csv", header=None).to_numpy(dtype=np.float64).ravel()[: len(x)]
    data = prepare(x, {c: "numeric" for c in NUMERIC}, y, seed=7)
    result = train_trial(data, dict(learning_rate=1e-2, dropout=0.0, weight_decay=0.0, momentum=0.9, n_layers=1,
                                    units=16, layer_units=[16], batch_size=16, activation="relu", optimizer="adam",
                                    max_epochs=40), seed=7, patience=40)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=mlflow_tags.trial_run_name("study-2", 0), tags={
        mlflow_tags.TAG_KIND: mlflow_tags.KIND_TRIAL, mlflow_tags.TAG_STUDY: "study-2", mlflow_tags.TAG_TRIAL: "0",
        mlflow_tags.TAG_STATE: "COMPLETE", mlflow_tags.TAG_DATASET: "seed@1", mlflow_tags.TAG_TASK: "regression",
        mlflow_tags.TAG_FEATURES: json.dumps(NUMERIC), mlflow_tags.TAG_INPUT_SCHEMA: json.dumps(input_schema(data))})
    log_model(client, run.info.run_id, result, data)
    client.set_terminated(run.info.run_id)
    net = TabularNet(**result.architecture)
    net.load_state_dict(result.state_dict)
    net.eval()
    with torch.no_grad():
        expected = data.prep.outputs(net(*data.prep.tensors(x)))["prediction"].to_numpy()
    return run.info.run_id, x, expected
