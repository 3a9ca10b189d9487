"""The data service over a real gRPC channel, with moto's S3 server and a real NATS."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import grpc
import nats
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune.events.v1 import events_pb2
from kubetune_common.channels import channel
from services.common.events import EventBus, decode
from testing import servers
from tests.data.conftest import upload_folder

Req = data_pb2.RegisterDatasetRequest


def put(s3, bucket: str, key: str, data: bytes | str) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=data.encode() if isinstance(data, str) else data)
    return f"s3://{bucket}/{key}"


def table_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def local_path(location: str) -> Path:
    assert location.startswith("file:///")
    return Path(urlparse(location).path)


async def snapshot(data) -> tuple:
    """Everything a registration could change: the catalog, the stored tables, staging."""
    listing = await data.stub.ListDatasets(data_pb2.ListDatasetsRequest())
    home = data.settings.home / "data"
    blobs = sorted(p.name for p in (home / "blobs").iterdir())
    staging = sorted(p.name for p in (home / "tmp").iterdir())
    return listing.SerializeToString(deterministic=True), blobs, staging


class Events:
    """Collects kubetune.data.* events from core NATS."""

    def __init__(self):
        self.items: list[events_pb2.Event] = []

    async def __aenter__(self):
        return self

    async def start(self, url: str):
        self.nc = await nats.connect(url)

        async def on(msg):
            self.items.append(decode(msg.subject, msg.data))

        await self.nc.subscribe("kubetune.data.>", cb=on)
        await self.nc.flush()
        return self

    def of(self, kind: str):
        return [getattr(e, kind) for e in self.items if e.WhichOneof("payload") == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 5):
        for _ in range(int(timeout / 0.05)):
            if len(self.of(kind)) >= count:
                return self.of(kind)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} event within {timeout}s: {self.items}")

    async def close(self):
        await self.nc.close()


@pytest.fixture
async def events(nats_url):
    e = await Events().start(nats_url)
    yield e
    await e.close()


async def test_health_and_reflection(data):
    ch = channel(f"127.0.0.1:{data.app.port}")
    r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    assert "kubetune.data.v1.DataService" in data.app.server.service_names
    await ch.close()


async def test_seed_from_s3_and_local_path_is_one_version(data, s3, bucket, seed_dir, events):
    uri = upload_folder(s3, bucket, "seed", seed_dir)
    first = await data.stub.RegisterDataset(Req(name="seed", uri=uri))
    v = first.version
    assert first.created and v.layout == data_pb2.LAYOUT_XY_FOLDER
    assert v.row_count == 100 and v.task_kind == data_pb2.TASK_KIND_REGRESSION and v.split_seed == 42
    assert [c.name for c in v.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE] == ["x0", "x1", "x2", "x3", "x4"]
    assert [c.name for c in v.columns if c.role == data_pb2.COLUMN_ROLE_INDEX] == ["index"]
    assert v.target == "target" and v.target_stats.distinct == 100
    assert set(v.source_etags) == {"seed/X.csv", "seed/y.csv"}
    # What a worker needs: a file:// location whose bytes hash to content_sha256.
    path = local_path(v.location)
    assert path.is_relative_to(data.settings.home.resolve() / "data" / "blobs")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == v.content_sha256 == path.stem
    table = pq.read_table(path)
    assert table.column_names == ["x0", "x1", "x2", "x3", "x4", "target"]
    assert table.schema.field("target").type == pa.float64()

    for again in (Req(name="seed", uri=uri), Req(name="seed", uri=str(seed_dir)),
                  Req(name="seed", uri=seed_dir.as_uri())):
        r = await data.stub.RegisterDataset(again)
        assert not r.created and r.version.version == v.version and r.version.content_sha256 == v.content_sha256
    listing = await data.stub.ListDatasets(data_pb2.ListDatasetsRequest())
    assert [(d.name, len(d.versions)) for d in listing.datasets] == [("seed", 1)]
    registered = await events.wait_for("dataset_registered")
    await asyncio.sleep(0.2)
    assert len(events.of("dataset_registered")) == 1
    assert (registered[0].name, registered[0].version, registered[0].row_count) == ("seed", v.version, 100)
    assert events.of("download_progressed")[-1].bytes_done == events.of("download_progressed")[-1].bytes_total > 0

    # The same bytes under another name: that name's own version, sharing the stored table.
    other = await data.stub.RegisterDataset(Req(name="seed-copy", uri=uri))
    assert other.created and other.version.content_sha256 == v.content_sha256 and other.version.name == "seed-copy"


async def test_changed_bytes_give_a_new_latest_version(data, s3, bucket, seed_dir):
    uri = upload_folder(s3, bucket, "seed", seed_dir)
    old = (await data.stub.RegisterDataset(Req(name="seed", uri=uri))).version
    y = (seed_dir / "y.csv").read_text().splitlines()
    y[0] = "1.0"
    put(s3, bucket, "seed/y.csv", "\n".join(y) + "\n")
    new = await data.stub.RegisterDataset(Req(name="seed", uri=uri))
    assert new.created and new.version.version != old.version and new.version.content_sha256 != old.content_sha256
    latest = (await data.stub.GetDataset(data_pb2.GetDatasetRequest(ref="seed"))).version
    assert latest.version == new.version.version
    pinned = (await data.stub.GetDataset(data_pb2.GetDatasetRequest(ref=f"seed@{old.version}"))).version
    assert pinned == old
    listing = await data.stub.ListDatasets(data_pb2.ListDatasetsRequest(name_prefix="se"))
    assert [v.version for v in listing.datasets[0].versions] == [new.version.version, old.version]
    # Options that change the table give another version of the same bytes.
    seeded = await data.stub.RegisterDataset(Req(name="seed", uri=uri, options=data_pb2.IngestOptions(split_seed=7)))
    assert seeded.created and seeded.version.split_seed == 7
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.GetDataset(data_pb2.GetDatasetRequest(ref="seed@000000000000"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_single_csv_and_parquet_tables(data, s3, bucket):
    rng = np.random.default_rng(0)
    iris = pd.DataFrame({"sepal": rng.normal(size=90), "petal": rng.normal(size=90), "comment": ["ok"] * 90,
                         "species": rng.choice(["setosa", "versicolor", "virginica"], 90)})
    uri = put(s3, bucket, "iris/iris.csv", table_csv(iris))
    r = await data.stub.RegisterDataset(Req(name="iris", uri=f"s3://{bucket}/iris", options=data_pb2.IngestOptions(
        target_column="species", exclude_columns=["comment"])))
    v = r.version
    assert v.source_uri == f"s3://{bucket}/iris" and v.layout == data_pb2.LAYOUT_SINGLE_TABLE
    assert v.task_kind == data_pb2.TASK_KIND_CLASSIFICATION and list(v.class_labels) == ["setosa", "versicolor", "virginica"]
    assert [(c.name, c.role) for c in v.columns] == [
        ("sepal", data_pb2.COLUMN_ROLE_FEATURE), ("petal", data_pb2.COLUMN_ROLE_FEATURE),
        ("comment", data_pb2.COLUMN_ROLE_EXCLUDED), ("species", data_pb2.COLUMN_ROLE_TARGET)]
    stored = pq.read_table(local_path(v.location))
    assert stored.column_names == ["sepal", "petal", "species"] and stored.schema.field("species").type == pa.int64()
    assert uri.endswith("iris.csv")

    prices = pd.DataFrame({"rooms": rng.integers(1, 6, 80), "area": rng.uniform(20, 200, 80),
                           "price": rng.uniform(1e5, 1e6, 80)})
    buf = io.BytesIO()
    prices.to_parquet(buf, index=False)
    uri = put(s3, bucket, "prices/prices.parquet", buf.getvalue())
    p = (await data.stub.RegisterDataset(Req(name="prices", uri=uri, options=data_pb2.IngestOptions(
        target_column="price")))).version
    assert p.task_kind == data_pb2.TASK_KIND_REGRESSION and p.row_count == 80
    assert [(c.name, c.dtype) for c in p.columns] == [("rooms", "float64"), ("area", "float64"), ("price", "float64")]
    assert p.target_stats.min == pytest.approx(prices.price.min())


async def test_upload_in_chunks(data):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "y": rng.normal(size=500)})
    body = table_csv(frame).encode()

    def requests(name):
        yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(
            name=name, filename="table.csv", options=data_pb2.IngestOptions(target_column="y")))
        for i in range(0, len(body), 4096):
            yield data_pb2.UploadDatasetRequest(chunk=body[i:i + 4096])

    r = await data.stub.UploadDataset(requests("uploaded"))
    assert r.created and r.version.row_count == 500 and r.version.source_uri == "upload:table.csv"
    again = await data.stub.UploadDataset(requests("uploaded"))
    assert not again.created and again.version.version == r.version.version

    async def no_header():
        yield data_pb2.UploadDatasetRequest(chunk=b"a,b\n")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.UploadDataset(no_header())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in info.value.details()


async def test_preview(data, seed_dir):
    v = (await data.stub.RegisterDataset(Req(name="seed", uri=str(seed_dir)))).version
    p = await data.stub.PreviewDataset(data_pb2.PreviewDatasetRequest(ref="seed", rows=5, bins=10))
    assert list(p.columns) == ["x0", "x1", "x2", "x3", "x4", "target"]
    x = pd.read_csv(seed_dir / "X.csv", header=None)
    assert len(p.rows) == 5 and list(p.rows[0].values)[:5] == pytest.approx(list(x.iloc[0, 1:]))
    for s in p.stats:
        assert sum(s.histogram_counts) == v.row_count and len(s.histogram_edges) == 11 and s.missing == 0
    assert p.stats[-1].mean == pytest.approx(v.target_stats.mean)
    assert len((await data.stub.PreviewDataset(data_pb2.PreviewDatasetRequest(ref="seed"))).rows) == 20
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.PreviewDataset(data_pb2.PreviewDatasetRequest(ref="seed", rows=5000))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_delete_and_references(data, seed_dir, nats_url, events):
    v = (await data.stub.RegisterDataset(Req(name="refs-seed", uri=str(seed_dir)))).version
    ref = f"refs-seed@{v.version}"
    bus = await EventBus.open(nats_url, "test")
    try:
        await bus.publish(study_created=events_pb2.StudyCreated(study_id="study-7", dataset_version=ref, n_trials=3))
        await bus.publish(model_registered=events_pb2.ModelRegistered(
            name="champion-net", version="2", run_id="r1", study_id="study-7", dataset_version=ref))
    finally:
        await bus.close()
    details = ""
    for _ in range(100):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await data.stub.DeleteDataset(data_pb2.DeleteDatasetRequest(ref=ref))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = info.value.details()
        if "study study-7" in details and "model champion-net version 2" in details:
            break
        await asyncio.sleep(0.05)
    assert "study study-7" in details and "model champion-net version 2" in details, details
    assert (await data.stub.GetDataset(data_pb2.GetDatasetRequest(ref=ref))).version == v

    free = (await data.stub.RegisterDataset(Req(name="free-seed", uri=str(seed_dir)))).version
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.DeleteDataset(data_pb2.DeleteDatasetRequest(ref="free-seed"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # a version must be named
    await data.stub.DeleteDataset(data_pb2.DeleteDatasetRequest(ref=f"free-seed@{free.version}"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.GetDataset(data_pb2.GetDatasetRequest(ref="free-seed"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert local_path(v.location).exists()  # the same table, still used by refs-seed
    deleted = await events.wait_for("dataset_deleted")
    assert (deleted[0].name, deleted[0].version) == ("free-seed", free.version)


def _frame(n=30, **columns) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    base = {"a": rng.normal(size=n), "b": rng.normal(size=n), "y": rng.normal(size=n)}
    base.update(columns)
    return pd.DataFrame(base)


def _nan_frame():
    f = _frame()
    f.loc[7, "b"] = np.nan
    return f


BAD = {
    "missing bucket": (lambda s3, b: "s3://kt-no-such-bucket/seed", {}, "NOT_FOUND", "does not exist"),
    "missing key": (lambda s3, b: f"s3://{b}/nope.csv", {}, "NOT_FOUND", "does not exist"),
    "empty prefix": (lambda s3, b: f"s3://{b}/nothing/", {}, "NOT_FOUND", "nothing under this prefix"),
    "empty file": (lambda s3, b: put(s3, b, "t/empty.csv", ""), {"target_column": "y"}, "FAILED_PRECONDITION",
                   "empty.csv is empty"),
    "text in a numeric column": (lambda s3, b: put(s3, b, "t/text.csv", table_csv(_frame(b=["x"] * 30))),
                                 {"target_column": "y", "numeric_columns": ["b"]}, "FAILED_PRECONDITION",
                                 "text.csv: column 'b' is not numeric: row 1"),
    "row counts": (lambda s3, b: (put(s3, b, "xy/X.csv", "0,1.5\n1,2.5\n" * 10),
                                  put(s3, b, "xy/y.csv", "1.0\n2.0\n" * 9))[0].rsplit("/", 1)[0],
                   {}, "FAILED_PRECONDITION", "X.csv has 20 rows, s3://"),
    "nan": (lambda s3, b: put(s3, b, "t/nan.csv", table_csv(_nan_frame())),
            {"target_column": "y", "missing_policy": data_pb2.MISSING_POLICY_REFUSE}, "FAILED_PRECONDITION",
            "nan.csv: column 'b' row 8 (line 9) is missing"),
    "one-valued target": (lambda s3, b: put(s3, b, "t/one.csv", table_csv(_frame(y=[3.0] * 30))),
                          {"target_column": "y"}, "FAILED_PRECONDITION", "one distinct value"),
    "unknown target": (lambda s3, b: put(s3, b, "t/t.csv", table_csv(_frame())), {"target_column": "z"},
                       "INVALID_ARGUMENT", "target column 'z' is not in"),
    "s3:/x": (lambda s3, b: "s3:/x", {}, "INVALID_ARGUMENT", "unsupported URI 's3:/x'"),
    "http": (lambda s3, b: "http://example.com/data.csv", {}, "INVALID_ARGUMENT", "unsupported URI"),
    "relative path": (lambda s3, b: "data/seed", {}, "INVALID_ARGUMENT", "unsupported URI"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_inputs_leave_the_catalog_unchanged(case, data, s3, bucket, seed_dir):
    await data.stub.RegisterDataset(Req(name="seed", uri=str(seed_dir)))
    before = await snapshot(data)
    make_uri, options, code, message = BAD[case]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.RegisterDataset(Req(name="seed", uri=make_uri(s3, bucket),
                                            options=data_pb2.IngestOptions(**options)))
    assert info.value.code().name == code, info.value.details()
    assert message in info.value.details()
    assert await snapshot(data) == before


@pytest.mark.parametrize("name", ["../../etc", "Seed", "", "a/b", "x" * 64])
async def test_bad_names(name, data, seed_dir):
    before = await snapshot(data)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await data.stub.RegisterDataset(Req(name=name, uri=str(seed_dir)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "dataset name" in info.value.details()
    assert await snapshot(data) == before
    assert not (data.settings.home / "etc").exists()


async def test_size_limit_and_local_paths_setting(service_factory, seed_dir, s3, bucket):
    small = await service_factory(max_bytes=1000)
    uri = upload_folder(s3, bucket, "seed", seed_dir)
    for source in (uri, str(seed_dir)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await small.stub.RegisterDataset(Req(name="seed", uri=source))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "over the limit of 1000 bytes" in info.value.details()
    assert await snapshot(small) == (data_pb2.ListDatasetsResponse().SerializeToString(), [], [])
    remote_only = await service_factory(allow_local_paths=False)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await remote_only.stub.RegisterDataset(Req(name="seed", uri=str(seed_dir)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "local paths" in info.value.details()


async def test_concurrent_registration_gives_one_version(data, s3, bucket, seed_dir):
    uri = upload_folder(s3, bucket, "seed", seed_dir)
    a = channel(f"127.0.0.1:{data.app.port}")
    b = channel(f"127.0.0.1:{data.app.port}")
    try:
        results = await asyncio.gather(*[
            data_pb2_grpc.DataServiceStub(ch).RegisterDataset(Req(name="seed", uri=uri)) for ch in (a, b, a, b)
        ])
    finally:
        await a.close()
        await b.close()
    assert len({r.version.version for r in results}) == 1
    assert sorted(r.created for r in results) == [False, False, False, True]
    listing = await data.stub.ListDatasets(data_pb2.ListDatasetsRequest())
    assert len(listing.datasets) == 1 and len(listing.datasets[0].versions) == 1


async def test_s3_cache_location(service_factory, s3, bucket, seed_dir):
    cached = await service_factory(cache_uri=f"s3://{bucket}/kubetune-cache")
    v = (await cached.stub.RegisterDataset(Req(name="seed", uri=str(seed_dir)))).version
    assert v.location == f"s3://{bucket}/kubetune-cache/{v.content_sha256}.parquet"
    body = s3.get_object(Bucket=bucket, Key=f"kubetune-cache/{v.content_sha256}.parquet")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == v.content_sha256
    p = await cached.stub.PreviewDataset(data_pb2.PreviewDatasetRequest(ref="seed", rows=3))
    assert len(p.rows) == 3


class PrivateMoto:
    """A moto server of our own, to break (kill it, or make it check credentials)."""

    def __init__(self, **env):
        self.port = servers.free_port()
        self.proc = subprocess.Popen(
            [str(servers.BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **env},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        servers.wait_for(lambda: servers.port_open(self.port), 30, "moto server", self.proc)

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        servers.stop(self.proc)


async def test_wrong_credentials(service_factory):
    moto = PrivateMoto(INITIAL_NO_AUTH_ACTION_COUNT="0")  # every request must carry known keys
    try:
        strict = await service_factory(s3_endpoint_url=moto.url)
        for uri in ("s3://kt-locked/seed", "s3://kt-locked/seed/X.csv"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await strict.stub.RegisterDataset(Req(name="seed", uri=uri))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
            assert "credentials (InvalidAccessKeyId)" in info.value.details()
        assert (await snapshot(strict))[0] == data_pb2.ListDatasetsResponse().SerializeToString()
    finally:
        moto.stop()


async def test_interrupted_download(service_factory, events):
    import boto3

    moto = PrivateMoto()
    try:
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
        s3.create_bucket(Bucket="kt-fragile")
        s3.put_object(Bucket="kt-fragile", Key="big/table.csv", Body=b"a,b,y\n" + b"1.5,2.5,3.5\n" * 6_000_000)
        fragile = await service_factory(s3_endpoint_url=moto.url)
        call = asyncio.ensure_future(fragile.stub.RegisterDataset(Req(
            name="big", uri="s3://kt-fragile/big/table.csv", options=data_pb2.IngestOptions(target_column="y"))))
        progress = await events.wait_for("download_progressed", timeout=20)
        assert 0 < progress[0].bytes_done < progress[0].bytes_total
        moto.kill()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert "try again" in info.value.details()
        assert await snapshot(fragile) == (data_pb2.ListDatasetsResponse().SerializeToString(), [], [])
    finally:
        moto.stop()
