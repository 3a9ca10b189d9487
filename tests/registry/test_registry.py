"""The registry service over real gRPC, with a real MLflow server and real NATS."""

from __future__ import annotations

import asyncio
import math
import uuid

import grpc
import mlflow
import numpy as np
import pytest
import pytest_asyncio

from kubetune.events.v1 import events_pb2 as ev
from kubetune.registry.v1 import registry_pb2 as pb
from kubetune.registry.v1 import registry_pb2_grpc
from services.common import subjects
from services.common.clients import channel
from services.common.events import EventBus
from services.registry.app import start
from services.registry.config import Settings
from tests.registry.model_fixture import log_trial_run, seed_data

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


def rows(x):
    return [pb.FeatureRow(values=r) for r in x.to_numpy().tolist()]


async def test_register_alias_and_predict_like_pyfunc(env):
    stub, name = env["stub"], "diabetes-" + uuid.uuid4().hex[:6]
    r = await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name, alias="champion",
                                                         description="best of study-1", tags={"team": "a"}))
    v = r.version
    assert (v.version, v.run_id, v.study_id, v.dataset_version) == ("1", env["best"], "study-1", "seed@1")
    assert list(v.aliases) == ["champion"] and v.task_kind == "regression" and v.tags["team"] == "a"
    assert v.metrics["rmse"] == pytest.approx(env["metrics"]["rmse"])
    assert list(v.feature_names) == [f"x{i}" for i in range(5)]
    # Registering the same run again is a retry, not a new version.
    again = await stub.RegisterModel(pb.RegisterModelRequest(run_id=env["best"], name=name))
    assert again.version.version == "1"

    x, y = seed_data()
    out = await stub.Predict(pb.PredictRequest(model=f"{name}@champion", rows=rows(x)))
    assert (out.model, out.version) == (name, "1")
    served = np.array([p.value for p in out.predictions])
    mlflow.set_tracking_uri(env["uri"])
    local = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(x)["prediction"].to_numpy()
    np.testing.assert_allclose(served, local, rtol=1e-6)
    rmse = float(np.sqrt(np.mean((served - y) ** 2)))
    assert rmse == pytest.approx(env["metrics"]["rmse"], rel=1e-4)

    text = await stub.Predict(pb.PredictRequest(model=f"{name}/1", rows=[
        pb.FeatureRow(text_values=[str(v) for v in x.iloc[0]])]))
    assert text.predictions[0].value == pytest.approx(served[0], rel=1e-5)  # float32 batch of 1
    await asyncio.sleep(0.3)
    registered = [e.model_registered for e in env["events"] if e.HasField("model_registered")]
    assert any(e.name == name and e.version == "1" and e.run_id == env["best"] and e.dataset_version == "seed@1"
               and e.study_id == "study-1" for e in registered)
    assert any(e.alias_set.name == name and e.alias_set.alias == "champion"
               for e in env["events"] if e.HasField("alias_set"))
    assert env["server"].predictor.loads == 1  # loaded once, served from the cache after


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
    assert "row 0 has 3 values; the model expects 5: x0, x1, x2, x3, x4" in e.details()
    e = await _status(stub.Predict(pb.PredictRequest(model=f"{name}@champion", rows=[
        pb.FeatureRow(text_values=["1", "2", "3", "4", "5"]), pb.FeatureRow(text_values=["1", "2", "abc", "4", "5"])])))
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
    out = await stub.Predict(pb.PredictRequest(model=f"{name}@champion", rows=rows(x.head(20))))
    local = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(x.head(20))
    assert [p.label for p in out.predictions] == list(local["prediction"])
    for p, (_, row) in zip(out.predictions, local.iterrows()):
        assert set(p.probabilities) == {"low", "high"} and math.isnan(p.value)
        assert p.probabilities["high"] == pytest.approx(row["proba_high"])

    async def requests():
        for i in range(3):
            yield pb.PredictRequest(model=f"{name}/1", rows=rows(x.iloc[i * 10:(i + 1) * 10]))

    responses = [r async for r in stub.PredictStream(requests())]
    assert [len(r.predictions) for r in responses] == [10, 10, 10]
    assert [p.label for r in responses for p in r.predictions] == list(
        mlflow.pyfunc.load_model(f"models:/{name}/1").predict(x.head(30))["prediction"])
