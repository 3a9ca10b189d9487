"""Client side, the one layer every caller of a backend goes through: channels with
explicit limits; a `Backend` (name, address, deadline, retry budget) and the one
policy that turns its failures into what our own callers see; typed clients on top
(`DataClient`, `TrackingClient`); stream reading; health checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from services.common.errors import KubetuneError, NotFound
from services.common.retry import grpc_transient, retry_async
from services.common.server import MAX_MESSAGE_BYTES

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    # Reconnect fast after a backend restarts instead of backing off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def channel(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


class StreamReader:
    """Reads a grpc.aio response stream without ever cancelling a read in flight.

    grpc.aio leaks native memory each time a task awaiting a stream read is cancelled
    (the read's op array is never freed: grpc/grpc#43360), and the small leaked blocks
    pin the heap. That is what happened to every watch whose client went away: ~130 B
    leaked a watch, and the gateway's memory grew under load. Here each read runs in a
    task of its own, awaited through a shield: the caller may be cancelled, and the read
    then ends when `aclose()` cancels the call. Iterate it like the call; always
    `aclose()` it (it is idempotent)."""

    CLOSE_WAIT_S = 5.0

    def __init__(self, call):
        self.call = call
        self._read: asyncio.Future | None = None

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._read is None:
            self._read = asyncio.ensure_future(self.call.read())
        try:
            message = await asyncio.shield(self._read)
        except asyncio.CancelledError:
            raise  # the read goes on; aclose() ends it
        except BaseException:
            self._read = None
            raise
        self._read = None
        if message is grpc.aio.EOF:
            raise StopAsyncIteration
        return message

    async def aclose(self) -> None:
        self.call.cancel()
        read, self._read = self._read, None
        if read is not None:
            await asyncio.wait({read}, timeout=self.CLOSE_WAIT_S)
            if read.done() and not read.cancelled():
                read.exception()  # retrieved: a cancelled call's read fails, as it should


async def health_status(ch: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, ... or UNAVAILABLE when nothing answers."""
    try:
        response = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.aio.AioRpcError as exc:
        return "UNAVAILABLE" if exc.code() != grpc.StatusCode.NOT_FOUND else "SERVICE_UNKNOWN"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def sync_health_status(address: str, timeout: float = 1.0) -> str:
    """For the supervisor and `kubetune status`, which are not async."""
    with grpc.insecure_channel(address) as ch:
        try:
            response = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return "UNAVAILABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@dataclass(frozen=True)
class Backend:
    """A service we call: what our messages name it, where it listens, how long one
    call may take, and how long a call safe to repeat rides out the backend restarting
    (0: one try)."""

    name: str
    address: str
    deadline_s: float = 30.0
    retry_budget_s: float = 0.0


class BackendError(KubetuneError):
    """A backend's failure as our callers see it: its status code, and a message that
    names the backend where its own would not say what went wrong."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def backend_error(backend: Backend, exc: grpc.RpcError) -> KubetuneError:
    """The one policy: the code passes through unchanged (an INVALID_ARGUMENT stays
    one); a backend that is down or too slow is named, since its own message is grpc's."""
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendError(code, f"the {backend.name} service is unavailable ({backend.address}); try again shortly")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendError(code, f"the {backend.name} service did not answer in time")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(exc.details() or code.name)
    return BackendError(code, exc.details() or code.name)


class BackendClient:
    """One long-lived channel to a backend; `_call` applies its deadline, its retry
    budget (for calls marked safe to repeat) and the error policy."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.channel = channel(backend.address)

    async def _call(self, rpc, request, *, repeatable: bool = False):
        async def once():
            return await rpc(request, timeout=self.backend.deadline_s)

        try:
            if repeatable and self.backend.retry_budget_s > 0:
                return await retry_async(once, transient=grpc_transient, budget_s=self.backend.retry_budget_s,
                                         what=f"{self.backend.name} {type(request).__name__.removesuffix('Request')}")
            return await once()
        except grpc.RpcError as exc:
            raise backend_error(self.backend, exc) from None

    async def close(self) -> None:
        await self.channel.close()


class DataClient(BackendClient):
    def __init__(self, backend: Backend):
        super().__init__(backend)
        self._stub = data_pb2_grpc.DataServiceStub(self.channel)

    async def get_dataset(self, ref: str) -> data_pb2.DatasetVersion:
        """`name`, `name@version` or a content hash; NotFound for an unknown dataset."""
        response = await self._call(self._stub.GetDataset, data_pb2.GetDatasetRequest(ref=ref), repeatable=True)
        return response.version


class TrackingClient(BackendClient):
    def __init__(self, backend: Backend):
        super().__init__(backend)
        self._stub = tracking_pb2_grpc.TrackingServiceStub(self.channel)

    async def create_study_run(self, study_id: str, dataset_name: str, dataset_version: str,
                               params: dict[str, str]) -> tuple[str, str]:
        """The study's parent run: (experiment id, run id). Keyed by the study: repeatable."""
        response = await self._call(self._stub.CreateStudyRun, tracking_pb2.CreateStudyRunRequest(
            study_id=study_id, dataset_name=dataset_name, dataset_version=dataset_version, params=params,
        ), repeatable=True)
        return response.experiment_id, response.run_id

    async def create_trial_run(self, request: tracking_pb2.CreateTrialRunRequest) -> str:
        """A trial's run, child of its study's. Keyed by (study, trial): repeatable."""
        return (await self._call(self._stub.CreateTrialRun, request, repeatable=True)).run_id
