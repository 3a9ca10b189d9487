"""Messy tables end to end, as a user would bring them: categories, booleans, an id, a
date and missing values, for regression, two classes and several, registered from S3 and
uploaded; a study with its baseline; the best model registered; predictions from rows
with shuffled and extra columns, unseen categories and missing values, through the
gateway and the CLI, equal to the model's own in process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pandas as pd
import pytest

from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from testing.tables import Table, binary_table, multiclass_table, regression_table, write_table
from testing.platform import running_platform
from testing.studies import completed, param_float, param_int, wait_for_study

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")
KINDS = {data_pb2.COLUMN_KIND_NUMERIC: "numeric", data_pb2.COLUMN_KIND_CATEGORICAL: "categorical",
         data_pb2.COLUMN_KIND_BOOLEAN: "boolean"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, s3_endpoint):
    """A platform whose data service reads the test's S3 endpoint."""
    home = tmp_path_factory.mktemp("real-tables")
    with running_platform(home, env={"KUBETUNE_DATA_S3_ENDPOINT_URL": s3_endpoint}, sample=False) as p:
        ch, stub = p.stub()
        yield p, stub
        ch.close()


def s3_put(endpoint: str, path: Path, key: str) -> str:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="tables") if "tables" not in [b["Name"] for b in s3.list_buckets()["Buckets"]] else None
    s3.upload_file(str(path), "tables", key)
    return f"s3://tables/{key}"


def upload(gateway: gateway_pb2_grpc.GatewayStub, path: Path, name: str, target: str) -> data_pb2.DatasetVersion:
    def parts():
        yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(
            name=name, filename=path.name, options=data_pb2.IngestOptions(target_column=target)))
        yield data_pb2.UploadDatasetRequest(chunk=path.read_bytes())

    return gateway.UploadDataset(parts(), timeout=300).version


def check_columns(version: data_pb2.DatasetVersion, table: Table) -> None:
    """Every column typed as the table's structure says, ids and dates excluded with the reason."""
    s = table.structure
    columns = {c.name: c for c in version.columns}
    for name in s.numeric:
        assert KINDS[columns[name].kind] == "numeric", name
    for name in s.categorical:
        assert KINDS[columns[name].kind] == "categorical", name
    for name in s.boolean:
        assert KINDS[columns[name].kind] == "boolean", name
    if s.id_column:
        assert columns[s.id_column].role == data_pb2.COLUMN_ROLE_EXCLUDED and "distinct" in columns[s.id_column].note
    if s.date_column:
        assert columns[s.date_column].role == data_pb2.COLUMN_ROLE_EXCLUDED and "ISO dates" in columns[s.date_column].note
    for name in s.missing_columns:
        assert columns[name].missing == round(s.missing_rate * table.rows), name


def messy_rows(table: Table, model_inputs: list[str]) -> pd.DataFrame:
    """Twelve rows of the table with the columns shuffled, the target and an index kept as
    extras, an unseen category and missing values in every input kind."""
    rows = table.frame.sample(12, random_state=3).reset_index(drop=True)
    rows.insert(0, "row_id", range(100, 112))
    s = table.structure
    if s.categorical:
        rows.loc[0, s.categorical[0]] = "never-seen-before"
        rows.loc[1, s.categorical[0]] = None
    rows.loc[2, s.numeric[0]] = np.nan
    if s.boolean:
        rows[s.boolean[0]] = rows[s.boolean[0]].astype(object)
        rows.loc[3, s.boolean[0]] = None
    order = list(np.random.default_rng(5).permutation(rows.columns))
    assert set(model_inputs) <= set(order)
    return rows[order]


def model_frame(rows: pd.DataFrame, schema: list[str], kinds: dict[str, str]) -> pd.DataFrame:
    """What the model itself gets in process: its columns, typed as its signature says."""
    out = {}
    for name in schema:
        if kinds[name] == "categorical":
            out[name] = [None if pd.isna(v) else str(v) for v in rows[name]]
        else:
            out[name] = pd.to_numeric(rows[name].map(lambda v: {"yes": 1, "no": 0, True: 1, False: 0}.get(v, v)),
                                      errors="coerce").astype("float64")
    return pd.DataFrame(out)


def cells(rows: pd.DataFrame) -> list[registry_pb2.FeatureRow]:
    return [registry_pb2.FeatureRow(text_values=["" if pd.isna(v) else str(v) for v in row])
            for row in rows.itertuples(index=False)]


@pytest.mark.parametrize(("make", "n_rows"), [(regression_table, 300), (binary_table, 300), (multiclass_table, 300),
                                            (multiclass_table, 50_000)],
                         ids=["regression", "binary", "multiclass", "multiclass-50k"])
def test_a_messy_table_from_s3_to_predictions_by_name(shop, s3_endpoint, tmp_path, make, n_rows):
    platform, gateway = shop
    table = make(rows=n_rows, seed=1)
    files = write_table(table, tmp_path)
    name = f"shop-{table.structure.task}-{n_rows}"
    uri = s3_put(s3_endpoint, files["csv"], f"{name}/{name}.csv")
    version = gateway.RegisterDataset(data_pb2.RegisterDatasetRequest(
        name=name, uri=uri, options=data_pb2.IngestOptions(target_column=table.target)), timeout=300).version
    check_columns(version, table)
    assert version.row_count == table.rows
    # The same table as Parquet, uploaded: the same column types.
    uploaded = upload(gateway, files["parquet"], name + "-pq", table.target)
    check_columns(uploaded, table)

    spec = pb.StudySpec(
        dataset=f"{version.name}@{version.version}", n_trials=4, max_parallel=2, max_epochs=25 if n_rows <= 1000 else 3,
        early_stopping_patience=6, pruner=pb.PRUNER_NONE,
        cv_folds=3 if table.structure.task == "binary" else 0,
        search_space=[param_float("learning_rate", 3e-3, 3e-2, log=True), param_int("units", 16, 64, log=True)])
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    study = wait_for_study(gateway, study.id, completed, timeout=900)
    assert study.counts.complete == 4
    lead = "rmse" if table.structure.task == "regression" else "accuracy"
    assert f"test/{lead}" in study.best_trial.metrics and f"val/{lead}" in study.best_trial.metrics
    linear = "ridge regression" if table.structure.task == "regression" else "logistic regression"
    assert study.baseline.model == linear and f"test/{lead}" in study.baseline.metrics
    if spec.cv_folds:
        assert {f"cv/fold_{i}/val_loss" for i in (1, 2, 3)} <= set(study.best_trial.metrics)
        assert study.best_values[0] == pytest.approx(study.best_trial.metrics["cv/mean_val_loss"])
    else:
        assert study.best_values[0] == pytest.approx(study.best_trial.metrics["val/loss"])

    model = f"{name}-net"
    gateway.RegisterModel(registry_pb2.RegisterModelRequest(
        run_id=study.best_trial.mlflow_run_id, name=model, alias="champion"), timeout=120)
    mlflow.set_tracking_uri(platform.mlflow_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    schema = loaded.metadata.get_input_schema()
    inputs = schema.input_names()
    kinds = {c.name: ("categorical" if str(c.type) in ("string", "DataType.string") else "number")
             for c in schema.inputs}
    rows = messy_rows(table, inputs)
    expected = loaded.predict(model_frame(rows, inputs, kinds))

    answer = gateway.Predict(registry_pb2.PredictRequest(
        model=f"{model}@champion", columns=list(rows.columns), rows=cells(rows)), timeout=300)
    assert len(answer.predictions) == len(rows)
    assert set(answer.ignored_columns) == set(rows.columns) - set(inputs)
    assert table.target in answer.ignored_columns and "row_id" in answer.ignored_columns
    if table.structure.classification:
        assert [p.label for p in answer.predictions] == list(expected["prediction"])
        for p, (_, want) in zip(answer.predictions, expected.iterrows()):
            assert p.probabilities == pytest.approx({c[len("proba_"):]: want[c] for c in expected.columns
                                                     if c.startswith("proba_")}, abs=1e-5)
    else:
        assert [p.value for p in answer.predictions] == pytest.approx(list(expected["prediction"]), rel=1e-5)

    # The CLI, from a CSV with the same shuffled and extra columns.
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    out = tmp_path / "predictions.csv"
    env = {**os.environ, "KUBETUNE_GATEWAY": platform.gateway}
    done = subprocess.run([KUBETUNE, "model", "predict", f"{model}@champion", "--csv", str(path), "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out) as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows)
    if table.structure.classification:
        assert [r["prediction"] for r in written] == list(expected["prediction"])
    else:
        assert [float(r["prediction"]) for r in written] == pytest.approx(list(expected["prediction"]), rel=1e-5)
