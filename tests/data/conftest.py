"""The data service on a free port, with a real NATS and moto's S3 server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from kubetune.data.v1 import data_pb2_grpc
from kubetune_common.channels import channel
from services.data.app import DataApp, start
from services.data.config import Settings


@dataclass
class DataService:
    settings: Settings
    stub: data_pb2_grpc.DataServiceStub
    app: DataApp  # what services.data.app.start returned


def make_settings(home: Path, nats_url: str, s3_endpoint: str = "", **overrides) -> Settings:
    values = dict(home=home, host="127.0.0.1", port=0, nats_url=nats_url, s3_endpoint_url=s3_endpoint, grace_s=1.0)
    return Settings(**(values | overrides))


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:
    name = "kt-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def service_factory(tmp_path, nats_url, s3_endpoint):
    """Starts data services (with settings overrides); stops them at the end of the test."""
    started = []

    async def make(**overrides) -> DataService:
        settings = make_settings(tmp_path / f"home{len(started)}", nats_url, s3_endpoint, **overrides)
        server = await start(settings)
        ch = channel(f"127.0.0.1:{server.port}")
        started.append((server, ch))
        return DataService(settings, data_pb2_grpc.DataServiceStub(ch), server)

    yield make
    for server, ch in reversed(started):
        await ch.close()
        await server.stop(0)


@pytest.fixture
async def data(service_factory) -> DataService:
    return await service_factory()


def upload_folder(s3, bucket: str, prefix: str, folder: Path) -> str:
    for path in sorted(folder.iterdir()):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.name}")
    return f"s3://{bucket}/{prefix}"
