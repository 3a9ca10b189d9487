"""The registry service over real gRPC, with a real MLflow server and real NATS."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import grpc
import mlflow
import numpy as np
import pandas as pd
import pytest
import pytest_asyncio

from kubetune.events.v1 import events_pb2 as ev
from kubetune.registry.v1 import registry_pb2 as pb
from kubetune.registry.v1 import registry_pb2_grpc
from kubetune_common import subjects
from kubetune_common.channels import channel
from services.common import packed_model
from services.common.events import EventBus
from services.registry.app import start
from services.registry.config import Settings
from services.registry.predictor import Predictor, load_pyfunc
from testing.models import CATEGORICAL, INPUT_SCHEMA, log_packed_trial_run, log_trial_run, seed_data

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(mlflow_uri, nats_url):
    server = await start(Settings(port=0, mlflow_uri=mlflow_uri, nats_url=nats_url))
    ch = channel(f"127.0.0.1:{server.port}")
    bus = await EventBus.open(nats_url, "registry-tests")
    seen: list[ev.Event] = []

    async def on_event(event):
        seen.append(event)

    await bus.subscribe("kubetune.registry.>", on_event)
    exp = "kubetune/registry-" + uuid.uuid4().hex[:6]
    best, metrics = await asyncio.to_thread(log_trial_run, mlflow_uri, exp)
    pruned, _ = await asyncio.to_thread(log_trial_run, mlflow_uri, exp, state="PRUNED", with_model=False, trial=1)
    clf, _ = await asyncio.to_thread(log_trial_run, mlflow_uri, exp, classes=["low", "high"], trial=2)
    yield {"stub": registry_pb2_grpc.RegistryServiceStub(ch), "server": server, "best": best, "metrics": metrics,
           "pruned": pruned, "clf": clf, "events": seen, "uri": mlflow_uri}
    await bus.close()
    await ch.close()
    await server.stop(0)


def text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def rows(x: pd.DataFrame) -> list[pb.FeatureRow]:
    """A frame's rows as text, in its column order (missing values empty)."""
    return [pb.FeatureRow(text_values=[text(v) for v in r]) for r in x.itertuples(index=False)]


def by_name(model: str, x: pd.DataFrame) -> pb.PredictRequest:
    return pb.PredictRequest(model=model, columns=list(x.columns), rows=rows(x))


def local_predictions(uri: str, model: str, x: pd.DataFrame) -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(f"models:/{model}").predict(x)


async def test_register_alias_and_predict_like_pyfunc(env):
    stub, name = env["stub"], "diabetes-" + uuid.uuid4().hex[:6]
    r = await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name, alias="champion",
                                                         description="best of study-1", tags={"team": "a"}))
    v = r.version
    assert (v.version, v.run_id, v.study_id, v.dataset_version) == ("1", env["best"], "study-1", "seed@1")
    assert list(v.aliases) == ["champion"] and v.task_kind == "regression" and v.tags["team"] == "a"
    assert v.metrics["rmse"] == pytest.approx(env["metrics"]["rmse"])
    assert list(v.feature_names) == [c["name"] for c in INPUT_SCHEMA]
    assert [(c.name, c.kind) for c in v.inputs] == [(c["name"], c["kind"]) for c in INPUT_SCHEMA]
    # Registering the same run again is a retry, not a new version.
    again = await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name))
    assert again.version.version == "1"

    x, y = seed_data()
    out = await stub.Predict(by_name(f"{name}@champion", x))
    assert (out.model, out.version, list(out.ignored_columns)) == (name, "1", [])
    served = np.array([p.value for p in out.predictions])
    local = local_predictions(env["uri"], f"{name}@champion", x)["prediction"].to_numpy()
    np.testing.assert_allclose(served, local, rtol=1e-6)
    rmse = float(np.sqrt(np.mean((served - y) ** 2)))
    assert rmse == pytest.approx(env["metrics"]["rmse"], rel=1e-4)

    # Without `columns`, a row holds the model's inputs in order, exactly that many.
    headerless = await stub.Predict(pb.PredictRequest(model=f"{name}/1", rows=rows(x.head(3))))
    np.testing.assert_allclose([p.value for p in headerless.predictions], served[:3], rtol=1e-5)
    await asyncio.sleep(0.3)
    registered = [e.model_registered for e in env["events"] if e.HasField("model_registered")]
    assert any(e.name == name and e.version == "1" and e.run_id == env["best"] and e.dataset_version == "seed@1"
               and e.study_id == "study-1" for e in registered)
    assert any(e.alias_set.name == name and e.alias_set.alias == "champion"
               for e in env["events"] if e.HasField("alias_set"))
    assert env["server"].predictor.loads == 1  # loaded once, served from the cache after


async def test_a_workers_one_file_model_registers_as_a_full_pyfunc(env):
    """A worker logs one file per trial; registering the run makes the full pyfunc in the
    run's `model/` folder, which Predict serves and MLflow loads like any model."""
    stub, tag = env["stub"], uuid.uuid4().hex[:6]
    run_id, x, expected = await asyncio.to_thread(log_packed_trial_run, env["uri"], f"kubetune/registry-packed-{tag}")
    client = mlflow.MlflowClient(env["uri"])
    listed = lambda: sorted(a.path for a in client.list_artifacts(run_id, "model"))  # noqa: E731
    assert listed() == [packed_model.PACKED_PATH]
    r = await stub.RegisterModel(pb.RegisterModelRequest(run_id=run_id, name=f"packed-{tag}", alias="champion"))
    assert (r.version.version, r.version.run_id, r.version.study_id) == ("1", run_id, "study-2")
    assert "model/MLmodel" in listed() and packed_model.PACKED_PATH in listed()
    out = await stub.Predict(by_name(f"packed-{tag}@champion", x))
    served = np.array([p.value for p in out.predictions])
    local = local_predictions(env["uri"], f"packed-{tag}@champion", x)["prediction"].to_numpy()
    np.testing.assert_allclose(served, local, rtol=1e-5)
    # What the trained network itself predicts: weights and preprocessing came through whole.
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-3)
    assert np.std(served) > 1.0  # not a constant
    # A second model from the same run finds the pyfunc already made.
    again = await stub.RegisterModel(pb.RegisterModelRequest(run_id=run_id, name=f"packed-{tag}-b"))
    assert again.version.version == "1"


async def _status(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_refusals_name_the_problem(env):
    stub, name = env["stub"], "refusals-" + uuid.uuid4().hex[:6]
    e = await _status(stub.RegisterModel(pb.RegisterModelRequest(run_id=env["pruned"], name=name)))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pruned" in e.details() and "no model" in e.details()
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name, alias="champion"))
    e = await _status(stub.Predict(pb.PredictRequest(model=f"{name}@champion", rows=[pb.FeatureRow(values=[1, 2, 3])])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 0 has 3 values; the model expects 6: x0, x1, x2, x3, x4, region" in e.details()
    e = await _status(stub.Predict(pb.PredictRequest(model=f"{name}@champion", rows=[
        pb.FeatureRow(text_values=["1", "2", "3", "4", "5", "a"]),
        pb.FeatureRow(text_values=["1", "2", "abc", "4", "5", "a"])])))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "row 1, column 'x2': 'abc' is not a number" in e.details()
    e = await _status(stub.Predict(pb.PredictRequest(model=f"{name}@nope", rows=[pb.FeatureRow(values=[1] * 5)])))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "alias 'nope'" in e.details()
    e = await _status(stub.Predict(pb.PredictRequest(model="no-such-model/1", rows=[pb.FeatureRow(values=[1] * 5)])))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    for ref in (f"runs:/{env['best']}/model", "/etc/passwd", "models:/x/1", name):
        e = await _status(stub.Predict(pb.PredictRequest(model=ref, rows=[pb.FeatureRow(values=[1] * 5)])))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, ref
    e = await _status(stub.RegisterModel(pb.RegisterModelRequest(run_id="0" * 32, name=name)))
    assert e.code() == grpc.StatusCode.NOT_FOUND


async def test_models_aliases_tags_lineage_and_delete(env):
    stub, name = env["stub"], "lineage-" + uuid.uuid4().hex[:6]
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name, description="d"))
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["clf"], name=name))
    await stub.SetAlias(pb.SetAliasRequest(name=name, alias="challenger", version="2"))
    await stub.SetModelTags(pb.SetModelTagsRequest(name=name, tags={"owner": "me"}))
    await stub.SetModelTags(pb.SetModelTagsRequest(name=name, version="1", tags={"checked": "yes"}))
    model = (await stub.GetModel(pb.GetModelRequest(name=name))).model
    assert [v.version for v in model.versions] == ["2", "1"] and dict(model.aliases) == {"challenger": "2"}
    assert model.tags["owner"] == "me" and model.versions[1].tags["checked"] == "yes" and model.description == "d"
    assert model.versions[0].task_kind == "classification"
    listed = (await stub.ListModels(pb.ListModelsRequest(name_contains=name[:12]))).models
    assert [m.name for m in listed] == [name]
    # The list carries each model's versions (newest first, aliases on them), as GetModel does.
    assert [(v.version, list(v.aliases)) for v in listed[0].versions] == [("2", ["challenger"]), ("1", [])]
    assert listed[0].versions[1].run_id == env["best"] and listed[0].versions[1].tags["checked"] == "yes"
    everything = (await stub.ListModels(pb.ListModelsRequest())).models
    assert [len(m.versions) for m in everything if m.name == name] == [2]
    by_run = (await stub.GetLineage(pb.GetLineageRequest(run_id=env["best"]))).versions
    assert name in {v.name for v in by_run}
    by_data = (await stub.GetLineage(pb.GetLineageRequest(dataset_version="seed@1"))).versions
    assert {(name, "1"), (name, "2")} <= {(v.name, v.version) for v in by_data}
    (one,) = (await stub.GetLineage(pb.GetLineageRequest(model=f"{name}@challenger"))).versions
    assert (one.run_id, one.study_id, one.trial, one.dataset_version) == (env["clf"], "study-1", 2, "seed@1")
    await stub.DeleteAlias(pb.DeleteAliasRequest(name=name, alias="challenger"))
    e = await _status(stub.DeleteAlias(pb.DeleteAliasRequest(name=name, alias="challenger")))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    await stub.DeleteModelVersion(pb.DeleteModelVersionRequest(name=name, version="1"))
    model = (await stub.GetModel(pb.GetModelRequest(name=name))).model
    assert [v.version for v in model.versions] == ["2"]


async def test_classification_and_stream(env):
    stub, name = env["stub"], "clf-" + uuid.uuid4().hex[:6]
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["clf"], name=name, alias="champion"))
    x, _ = seed_data()
    out = await stub.Predict(by_name(f"{name}@champion", x.head(20)))
    local = local_predictions(env["uri"], f"{name}@champion", x.head(20))
    assert [p.label for p in out.predictions] == list(local["prediction"])
    for p, (_, row) in zip(out.predictions, local.iterrows()):
        assert set(p.probabilities) == {"low", "high"} and math.isnan(p.value)
        assert p.probabilities["high"] == pytest.approx(row["proba_high"])

    async def requests():
        for i in range(3):
            yield by_name(f"{name}/1", x.iloc[i * 10:(i + 1) * 10][list(reversed(x.columns))].assign(id=i))

    responses = [r async for r in stub.PredictStream(requests())]
    assert [len(r.predictions) for r in responses] == [10, 10, 10]
    assert [list(r.ignored_columns) for r in responses] == [["id"]] * 3
    assert [p.label for r in responses for p in r.predictions] == list(
        local_predictions(env["uri"], f"{name}/1", x.head(30))["prediction"])


async def test_predict_by_column_name(env):
    """The contract's rules: columns by name in any order, extras ignored and reported,
    missing values imputed by the model, unseen categories accepted, bad values named."""
    stub, name = env["stub"], "by-name-" + uuid.uuid4().hex[:6]
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name, alias="champion"))
    ref = f"{name}@champion"
    x, y = seed_data()
    x = x.head(30)
    expected = local_predictions(env["uri"], ref, x)["prediction"].to_numpy()

    shuffled = x[["region", "x3", "x0", "x4", "x2", "x1"]]
    out = await stub.Predict(by_name(ref, shuffled))
    np.testing.assert_allclose([p.value for p in out.predictions], expected, rtol=1e-6)

    # The training table's own layout: an index column first, the target last.
    table = x.assign(target=y[:30])
    table.insert(0, "row_id", range(30))
    out = await stub.Predict(by_name(ref, table))
    assert list(out.ignored_columns) == ["row_id", "target"]
    np.testing.assert_allclose([p.value for p in out.predictions], expected, rtol=1e-6)

    # Missing values (NaN, empty, NA) and a region never seen in training are predicted,
    # exactly as the model predicts them in process.
    odd = x.head(4).copy()
    odd.loc[0, "x1"] = np.nan
    odd.loc[1, "region"] = None
    odd.loc[2, "region"] = "atlantis"
    odd.loc[3, ["x0", "x4"]] = np.nan
    local = local_predictions(env["uri"], ref, odd)["prediction"].to_numpy()
    assert np.isfinite(local).all() and local[2] != pytest.approx(expected[2])
    request = by_name(ref, odd)
    request.rows[3].text_values[odd.columns.get_loc("x4")] = "NA"
    out = await stub.Predict(request)
    np.testing.assert_allclose([p.value for p in out.predictions], local, rtol=1e-6)
    numbers = pb.PredictRequest(model=ref, columns=["x0", "x1", "x2", "x3", "x4", "region"], rows=[
        pb.FeatureRow(values=[*odd.loc[0, ["x0", "x1", "x2", "x3", "x4"]], math.nan])])
    out = await stub.Predict(numbers)  # NaN in `values`: missing, the categorical one included
    missing_region = odd.head(1).assign(region=None)
    assert out.predictions[0].value == pytest.approx(
        local_predictions(env["uri"], ref, missing_region)["prediction"][0], rel=1e-5)
    # A category sent as a number becomes its text: 3.0 -> "3", unseen here, so "unknown".
    numbers.rows[0].values[5] = 3.0
    unknown = (await stub.Predict(numbers)).predictions[0].value
    assert unknown == pytest.approx(
        local_predictions(env["uri"], ref, missing_region.assign(region="3"))["prediction"][0], rel=1e-5)

    async def refused(request) -> str:
        e = await _status(stub.Predict(request))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        return e.details()

    assert "missing column x3" in await refused(by_name(ref, x.drop(columns=["x3"])))
    assert "missing columns x0, region" in await refused(by_name(ref, x.drop(columns=["x0", CATEGORICAL])))
    bad = by_name(ref, shuffled)
    bad.rows[4].text_values[1] = "twelve"
    assert "row 4, column 'x3': 'twelve' is not a number" in await refused(bad)
    bad.rows[4].text_values[1] = "inf"
    assert "row 4, column 'x3': 'inf' is not a finite number" in await refused(bad)
    numbers.rows[0].values[1] = -math.inf
    assert "row 0, column 'x1': -inf is not a finite number" in await refused(numbers)
    assert "named more than once" in await refused(pb.PredictRequest(
        model=ref, columns=["x0", "x0"], rows=[pb.FeatureRow(values=[1, 2])]))
    assert "row 0 has 2 values; the request names 7 columns" in await refused(pb.PredictRequest(
        model=ref, columns=[*x.columns, "extra"], rows=[pb.FeatureRow(values=[1, 2])]))



async def test_a_load_outlives_a_caller_that_gave_up(env):
    """A cold load (mlflow, torch) can outlast a client's deadline: the load goes on, and
    the next call finds it done instead of starting it again."""
    stub, name = env["stub"], "cold-" + uuid.uuid4().hex[:6]
    await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name))
    calls = []

    def slow_loader(uri):
        calls.append(uri)
        time.sleep(1.0)
        return load_pyfunc(uri, env["uri"])

    predictor = Predictor(env["server"].predictor.registry, loader=slow_loader)
    x, _ = seed_data()
    raw = [list(r.text_values) for r in rows(x.head(2))]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(predictor.predict(f"{name}/1", raw, list(x.columns)), 0.3)
    _, _, predictions, _ = await predictor.predict(f"{name}/1", raw, list(x.columns))
    assert len(predictions) == 2 and calls == [f"models:/{name}/1"]


async def test_concurrent_registrations_of_a_run_make_one_version(env, mlflow_uri, nats_url):
    """Retries and double clicks on two registry replicas at once: one version, and every
    caller is told that one."""
    other = await start(Settings(port=0, mlflow_uri=mlflow_uri, nats_url=nats_url))
    ch = channel(f"127.0.0.1:{other.port}")
    try:
        stubs = [env["stub"], registry_pb2_grpc.RegistryServiceStub(ch)]
        name = "concurrent-" + uuid.uuid4().hex[:6]
        answers = await asyncio.gather(*(stubs[i % 2].RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name))
                                         for i in range(8)))
        model = await env["stub"].GetModel(pb.GetModelRequest(name=name))
        assert [v.version for v in model.model.versions] == ["1"]
        assert {a.version.version for a in answers} == {"1"}
    finally:
        await ch.close()
        await other.stop(0)
