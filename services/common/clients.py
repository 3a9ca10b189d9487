"""Client side, the one layer every caller of a backend goes through: a `Backend` (name,
address, deadline, retry budget) and the one policy that turns its failures into what
our own callers see; typed clients on top (`DataClient`, `TrackingClient`). The
channels themselves are kubetune_common/channels.py's."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from kubetune_common.channels import channel
from kubetune_common.errors import KubetuneError, NotFound, answered
from services.common.retry import grpc_transient, retry_async

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
    one); a backend that is down or too slow is named, since its own message is grpc's.
    A backend that answered UNAVAILABLE itself names what it could not reach: that passes."""
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and not answered(exc):
        return BackendError(code, f"the {backend.name} service is unavailable ({backend.address}); try again shortly")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not answered(exc):
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
