"""Predict by column name through the platform's front door: the gateway's API and
`kubetune model predict --csv`, on a model logged as a worker logs one (numeric and
categorical inputs, imputation inside), checked against the model run in process."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import mlflow
import numpy as np
import pandas as pd
import pytest

from kubetune.registry.v1 import registry_pb2 as pb
from testing.models import log_trial_run, seed_data

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")


@pytest.fixture(scope="module")
def models(platform, gateway):
    """A regression and a classification model registered through the gateway."""
    exp = "kubetune/predict-" + uuid.uuid4().hex[:6]
    names = {}
    for kind, classes in (("reg", None), ("clf", ["low", "high"])):
        run_id, _ = log_trial_run(platform.mlflow_uri, exp, classes=classes)
        names[kind] = f"predict-{kind}-" + uuid.uuid4().hex[:6]
        gateway.RegisterModel(pb.RegisterModelRequest(run_id=run_id, name=names[kind], alias="champion"), timeout=60)
    for name in names.values():
        warm_up(gateway, f"{name}@champion")
    mlflow.set_tracking_uri(platform.mlflow_uri)
    return {k: (f"{n}@champion", mlflow.pyfunc.load_model(f"models:/{n}@champion")) for k, n in names.items()}


def warm_up(gateway, ref: str) -> None:
    """The registry's first load (mlflow, torch) can outlast the gateway's deadline on a
    busy machine; the load goes on, and a later call finds it."""
    x, _ = seed_data()
    request = pb.PredictRequest(model=ref, columns=list(x.columns), rows=[pb.FeatureRow(text_values=["1"] * 6)])
    for attempt in range(6):
        try:
            gateway.Predict(request, timeout=120)
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED or attempt == 5:
                raise


def frame() -> pd.DataFrame:
    """Twelve seed rows with a missing value, a missing region and an unseen one."""
    x, _ = seed_data()
    x = x.head(12).copy()
    x.loc[1, "x0"] = np.nan
    x.loc[2, "region"] = None
    x.loc[3, "region"] = "atlantis"
    return x


def text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def cli(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBETUNE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KUBETUNE_GATEWAY": platform.gateway})


def test_gateway_predicts_by_name_and_refuses_inf(gateway, models):
    ref, model = models["reg"]
    x = frame()
    expected = model.predict(x)["prediction"].to_numpy()
    shuffled = x[list(reversed(x.columns))].assign(target=1.0)
    out = gateway.Predict(pb.PredictRequest(model=ref, columns=list(shuffled.columns), rows=[
        pb.FeatureRow(text_values=[text(v) for v in r]) for r in shuffled.itertuples(index=False)]), timeout=120)
    assert list(out.ignored_columns) == ["target"] and len(out.predictions) == 12
    np.testing.assert_allclose([p.value for p in out.predictions], expected, rtol=1e-6)

    numeric = ["x0", "x1", "x2", "x3", "x4"]
    request = pb.PredictRequest(model=ref, columns=numeric + ["region"],
                                rows=[pb.FeatureRow(values=[*r, math.nan]) for r in x[numeric].to_numpy().tolist()])
    out = gateway.Predict(request, timeout=60)  # NaN passes the door: a missing value
    np.testing.assert_allclose([p.value for p in out.predictions],
                               model.predict(x.assign(region=None))["prediction"].to_numpy(), rtol=1e-6)
    request.rows[5].values[3] = math.inf
    with pytest.raises(grpc.RpcError) as err:
        gateway.Predict(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 5, column 'x3': inf is not a finite number" in err.value.details()


def test_cli_predicts_every_row_by_name(platform, models, tmp_path):
    for kind in ("reg", "clf"):
        ref, model = models[kind]
        x = frame()
        local = model.predict(x)
        table = x[["region", "x3", "x1", "x0", "x4", "x2"]].assign(target=7)
        table.insert(0, "id", range(100, 112))
        rows = tmp_path / f"{kind}.csv"
        table.to_csv(rows, index=False)
        out = tmp_path / f"{kind}-out.csv"
        result = cli(platform, "model", "predict", ref, "--csv", str(rows), "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "kubetune: ignored columns the model does not use: id, target"
        with open(out) as f:
            written = list(csv.DictReader(f))
        assert len(written) == 12
        if kind == "reg":
            np.testing.assert_allclose([float(r["prediction"]) for r in written], local["prediction"], rtol=1e-6)
        else:
            assert list(written[0]) == ["prediction", "proba_high", "proba_low"]
            assert [r["prediction"] for r in written] == list(local["prediction"])
            np.testing.assert_allclose([float(r["proba_high"]) for r in written], local["proba_high"], rtol=1e-5)

    # Without a header, the first row is data: kept, in the model's order.
    ref, model = models["reg"]
    x = frame()
    headerless = tmp_path / "headerless.csv"
    x.to_csv(headerless, index=False, header=False)
    result = cli(platform, "model", "predict", ref, "--csv", str(headerless), "--json")
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)["predictions"]
    np.testing.assert_allclose([p["value"] for p in served], model.predict(x)["prediction"], rtol=1e-6)


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("1,2,3,4,5\n6,7,8,9,10\n", "has no header row (its first row is data) and 5 values per row; without a header "
                                "a row needs exactly the model's 6 columns in this order: x0, x1, x2, x3, x4, region"),
    ("x0,x1,x2,x4,region\n1,2,3,4,north\n", "the model needs column x3, missing from the header"),
    ("x0,x1,x2,x3,x4,region\n1,2,3,4,5,north\n1,2,three,4,5,south\n", "line 3, column 'x2': 'three' is not a number"),
    ("x0,x1,x2,x3,x4,region\n1,2,3,inf,5,north\n", "line 2, column 'x3': 'inf' is not a finite number"),
])
def test_cli_refusals_are_one_line_and_write_nothing(platform, models, tmp_path, content, message):
    rows = tmp_path / "rows.csv"
    rows.write_text(content)
    out = tmp_path / "out.csv"
    result = cli(platform, "model", "predict", models["reg"][0], "--csv", str(rows), "-o", str(out))
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kubetune: ") and message in result.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["rows.csv"]
