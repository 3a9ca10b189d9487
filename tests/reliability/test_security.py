"""Guarantee 5: security, on a platform configured as on a network (tokens on, S3
credentials in the environment): every RPC guarded by role, no token or secret in
any log, Predict only from kubetune's registry, size caps on uploads and messages,
and names and keys that cannot leave their prefix or the data home."""

from __future__ import annotations

import boto3
import grpc
import pytest

from cli.local_platform import SAMPLE
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from tests.gateway.test_gateway import assert_every_method_guarded
from tests.reliability.conftest import DATA_MAX_BYTES, S3_KEY_ID, S3_SECRET, SECRETS, Authed, bearer
from tests.reliability.faults import wait_for
from testing.studies import small_spec

pytestmark = pytest.mark.slow
WRONG_TOKEN = "kt-wrong-token-0d4c2a71"


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    return err.value


async def test_every_rpc_is_guarded_on_the_running_gateway(secured):
    calls = await assert_every_method_guarded(secured.gateway, bearer)
    print(f"\nauth: {calls} calls over the descriptor's RPCs, none let through")


def test_predict_loads_only_registered_models(secured, admin):
    study = wait_for(admin.CreateStudy(pb.CreateStudyRequest(spec=small_spec(trials=1, epochs=2))).study.id, admin,
                     lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=180)
    run_id = study.best_trial.mlflow_run_id
    artifacts = secured.home / "mlflow" / "artifacts"
    row = [registry_pb2.FeatureRow(values=[0.0] * 5)]
    for ref in [f"runs:/{run_id}/model", "models:/x/1", f"mlflow-artifacts:/{run_id}/artifacts/model",
                str(artifacts), f"file://{artifacts}", f"{artifacts}/1/{run_id}/artifacts/model",
                "../../mlflow/artifacts", "./model", "s3://bucket/model", "http://127.0.0.1:1/model",
                "name@../../x", "C:\\models\\x", ""]:
        err = refused(admin.Predict, registry_pb2.PredictRequest(model=ref, rows=row), timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref, err.code(), err.details())
    err = refused(admin.Predict, registry_pb2.PredictRequest(model="never-registered@champion", rows=row), timeout=30)
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_size_caps(secured, admin):
    # A string over the door's limit, and a message over the transport's.
    err = refused(admin.GetDataset, data_pb2.GetDatasetRequest(ref="a" * 5000), timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "ref" in err.details()
    err = refused(admin.GetDataset, data_pb2.GetDatasetRequest(ref="a" * (65 * 2**20)), timeout=30)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # An upload one chunk at a time past the data service's limit.
    def chunks():
        yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(name="too-big", filename="big.csv"))
        for _ in range(DATA_MAX_BYTES // 2**20 + 2):
            yield data_pb2.UploadDatasetRequest(chunk=b"1" * 2**20)

    err = refused(admin.UploadDataset, chunks(), timeout=60)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "KUBETUNE_DATA_MAX_BYTES" in err.details()
    # One chunk bigger than a message may be.
    err = refused(admin.UploadDataset, iter([
        data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(name="too-big", filename="big.csv")),
        data_pb2.UploadDatasetRequest(chunk=b"1" * (65 * 2**20))]), timeout=60)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not any(d.name == "too-big" for d in admin.ListDatasets(data_pb2.ListDatasetsRequest()).datasets)


def test_names_and_keys_stay_inside(secured, admin):
    home = secured.home
    before = {p for p in home.parent.rglob("*")}
    for name in ["../../escape", "..", "a/../../b", "/abs", "a/b", ".hidden", "x" * 64, "UPPER", "a\\b", "sample@x"]:
        err = refused(admin.RegisterDataset, data_pb2.RegisterDatasetRequest(name=name, uri=str(SAMPLE)), timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in err.details(), (name, err.details())
    for filename in ["../../escape.csv", "/tmp/escape.csv", "..\\escape.csv", ".csv", "a/b.csv"]:
        err = refused(admin.UploadDataset, iter([data_pb2.UploadDatasetRequest(
            header=data_pb2.UploadHeader(name="fine-name", filename=filename)),
            data_pb2.UploadDatasetRequest(chunk=b"a,y\n1,2\n")]), timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (filename, err.details())
    for uri in ["s3://bucket/../other", "s3://bucket/a/../../b", "s3://bucket/./x", "s3://bucket//x",
                "s3://../x", "s3://bucket/a/..", "file://otherhost/etc/x.csv", "ftp://x/y.csv", "../../etc"]:
        err = refused(admin.RegisterDataset, data_pb2.RegisterDatasetRequest(name="fine-name", uri=uri), timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (uri, err.details())
    for ref in ["../../catalog", "sample@../../x", "sample@" + "0" * 11]:
        assert refused(admin.DeleteDataset, data_pb2.DeleteDatasetRequest(ref=ref), timeout=30).code() in (
            grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    admin.GetDataset(data_pb2.GetDatasetRequest(ref="sample"))  # still there
    after = {p for p in home.parent.rglob("*")}
    outside = [p for p in after - before if home not in p.parents]
    assert not outside, f"files written outside the data home: {outside}"
    assert not [p for p in after - before if "escape" in p.name]


def test_no_token_or_secret_in_any_log(secured, s3_endpoint):
    """A full run with every secret in play — S3 registration with the key in the
    environment, a study, a model, predictions, refused calls with a wrong token — then
    every part's log is searched for every token and the secret."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    s3.create_bucket(Bucket="kt-secure")
    for f in ("X.csv", "y.csv"):
        s3.upload_file(str(SAMPLE / f), "kt-secure", f"data/{f}")
    with grpc.insecure_channel(secured.gateway) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        editor = Authed(stub, "editor")
        version = editor.RegisterDataset(data_pb2.RegisterDatasetRequest(name="from-s3", uri="s3://kt-secure/data/"),
                                         timeout=120).version
        study = wait_for(editor.CreateStudy(pb.CreateStudyRequest(spec=small_spec(
            trials=2, epochs=3, dataset=f"{version.name}@{version.version}"))).study.id, editor,
            lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=180)
        editor.RegisterModel(registry_pb2.RegisterModelRequest(run_id=study.best_trial.mlflow_run_id, name="secure-model",
                                                               alias="champion"), timeout=60)
        editor.Predict(registry_pb2.PredictRequest(model="secure-model@champion",
                                                   rows=[registry_pb2.FeatureRow(values=[0.1] * 5)]), timeout=120)
        for md in [(("authorization", f"Bearer {WRONG_TOKEN}"),), (("authorization", WRONG_TOKEN),), bearer("viewer")]:
            with pytest.raises(grpc.RpcError):
                stub.DeleteDataset(data_pb2.DeleteDatasetRequest(ref="from-s3"), metadata=md, timeout=10)
    logs = sorted((secured.home / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"gateway", "data", "tuning", "tracking", "registry", "worker-0", "mlflow", "nats"}
    leaks = {}
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in [*SECRETS, WRONG_TOKEN]:
            if secret in text:
                leaks.setdefault(path.name, []).append(secret)
    total = sum(p.stat().st_size for p in logs)
    print(f"\nlogs: {len(logs)} files, {total / 1024:.0f} KiB searched for {len(SECRETS) + 1} secrets: {len(leaks)} leaks")
    assert not leaks, leaks
