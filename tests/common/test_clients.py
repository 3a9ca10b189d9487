"""The one backend-client layer: a real gRPC backend that fails in each way, and the
typed clients' one policy for what their callers then see."""

from __future__ import annotations

import time

import grpc
import pytest

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune_common.errors import InvalidArgument, NotFound, Unavailable, servicer_errors, status_for
from services.common.clients import Backend, BackendError, DataClient, backend_error
from services.common.server import make_server
from testing import servers


@servicer_errors
class FailingData(data_pb2_grpc.DataServiceServicer):
    """Answers GetDataset(ref) as its ref says: `ok`, `missing`, `bad`, `flaky`
    (UNAVAILABLE on the first try, then an answer), or `downstream` (alive, but what it
    needs is not)."""

    def __init__(self):
        self.calls: dict[str, int] = {}

    async def GetDataset(self, request, context):
        self.calls[request.ref] = self.calls.get(request.ref, 0) + 1
        if request.ref == "missing":
            raise NotFound("no dataset 'missing'")
        if request.ref == "bad":
            raise InvalidArgument("ref: not a dataset reference")
        if request.ref == "downstream":
            raise Unavailable("the storage service is unavailable (storage:9000); try again shortly")
        if request.ref == "flaky" and self.calls["flaky"] == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return data_pb2.GetDatasetResponse(version=data_pb2.DatasetVersion(name=request.ref, version="v1"))


@pytest.fixture
async def data_backend():
    servicer = FailingData()
    server = await make_server("127.0.0.1:0", lambda s: (
        data_pb2_grpc.add_DataServiceServicer_to_server(servicer, s),
        [data_pb2.DESCRIPTOR.services_by_name["DataService"].full_name])[1])
    yield servicer, f"127.0.0.1:{server.port}"
    await server.stop(0)


async def test_typed_client_maps_every_failure_one_way(data_backend):
    servicer, address = data_backend
    client = DataClient(Backend("data", address, deadline_s=5))
    try:
        assert (await client.get_dataset("ok")).name == "ok"
        with pytest.raises(NotFound, match="no dataset 'missing'"):
            await client.get_dataset("missing")
        # A caller's mistake stays one: INVALID_ARGUMENT is not turned into UNAVAILABLE.
        with pytest.raises(BackendError) as err:
            await client.get_dataset("bad")
        assert status_for(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "ref: not a dataset reference")
        # No retry budget: a passing failure is the caller's to see, naming the backend.
        with pytest.raises(BackendError) as err:
            await client.get_dataset("flaky")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert err.value.message == f"the data service is unavailable ({address}); try again shortly"
        # A backend that answers UNAVAILABLE itself names what it could not reach: the
        # caller sees that, not "the data service is unavailable", which would send them
        # to look at a service that is running.
        with pytest.raises(BackendError) as err:
            await client.get_dataset("downstream")
        assert status_for(err.value) == (grpc.StatusCode.UNAVAILABLE,
                                         "the storage service is unavailable (storage:9000); try again shortly")
    finally:
        await client.close()


async def test_a_retry_budget_rides_out_a_restart(data_backend):
    servicer, address = data_backend
    client = DataClient(Backend("data", address, deadline_s=5, retry_budget_s=10))
    try:
        assert (await client.get_dataset("flaky")).name == "flaky"
        assert servicer.calls["flaky"] == 2
        with pytest.raises(NotFound):  # a lasting failure is not tried again
            await client.get_dataset("missing")
        assert servicer.calls["missing"] == 1
    finally:
        await client.close()


async def test_a_backend_that_is_down_is_named_after_its_budget():
    address = f"127.0.0.1:{servers.free_port()}"
    client = DataClient(Backend("data", address, deadline_s=1, retry_budget_s=1))
    start = time.monotonic()
    try:
        with pytest.raises(BackendError) as err:
            await client.get_dataset("ok")
    finally:
        await client.close()
    assert err.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "the data service" in err.value.message
    assert time.monotonic() - start < 10


class Slow(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self):
        return "Deadline Exceeded"


def test_a_slow_backend_keeps_its_code():
    error = backend_error(Backend("tracking", "tracking:50063"), Slow())
    assert status_for(error) == (grpc.StatusCode.DEADLINE_EXCEEDED, "the tracking service did not answer in time")
