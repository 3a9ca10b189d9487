"""One platform shared by the bad-input, load and security tests, run as it would be
on a network: bearer tokens on, S3 credentials in every part's environment, and a
low dataset size limit so refusals are cheap to provoke. The tokens and the secret
are distinctive strings, so a test can grep every log for them afterwards."""

from __future__ import annotations

import grpc
import pytest

from cli.local_platform import SAMPLE
from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2_grpc
from testing.platform import running_platform

TOKENS = {"viewer": "kt-viewer-token-5c1d0e", "editor": "kt-editor-token-8a2f4b", "admin": "kt-admin-token-3e9b7d"}
S3_SECRET = "kt-s3-secret-key-9f81c6d2"
S3_KEY_ID = "KTACCESSKEY7Q4Z"
DATA_MAX_BYTES = 8 * 1024 * 1024
SECRETS = [*TOKENS.values(), S3_SECRET]


def bearer(role: str | None) -> tuple:
    return (("authorization", f"Bearer {TOKENS[role]}"),) if role else ()


class Authed:
    """A gateway stub whose every call carries one role's token."""

    def __init__(self, stub, role: str):
        self._stub, self._md = stub, bearer(role)

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._md, **kw)


@pytest.fixture(scope="package")
def secured(tmp_path_factory, s3_endpoint):
    env = {
        "KUBETUNE_GATEWAY_TOKENS": ",".join(f"{t}:{r}" for r, t in TOKENS.items()),
        "KUBETUNE_DATA_MAX_BYTES": str(DATA_MAX_BYTES),
        "KUBETUNE_DATA_S3_ENDPOINT_URL": s3_endpoint,
        "KUBETUNE_WORKER_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with running_platform(tmp_path_factory.mktemp("secured"), env=env, sample=False) as platform:
        with grpc.insecure_channel(platform.gateway) as ch:
            gateway_pb2_grpc.GatewayStub(ch).RegisterDataset(
                data_pb2.RegisterDatasetRequest(name="sample", uri=str(SAMPLE)), metadata=bearer("admin"), timeout=60)
        yield platform


@pytest.fixture
def admin(secured):
    ch, stub = secured.stub()
    yield Authed(stub, "admin")
    ch.close()
