"""The UI's one connection: a grpc.aio channel to the gateway, opened at startup;
each user's calls go through it with their own token (`as_user`)."""

from __future__ import annotations

import copy

import grpc

from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune_common.channels import StreamReader, channel

DEADLINE_S = 30


class GatewayClient:
    def __init__(self, address: str, token: str = ""):
        self.address = address
        self.token = token
        self._channel: grpc.aio.Channel | None = None
        self._stub: gateway_pb2_grpc.GatewayStub | None = None

    @property
    def stub(self) -> gateway_pb2_grpc.GatewayStub:
        if self._stub is None:
            self._channel = channel(self.address)
            self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        return self._stub

    def as_user(self, token: str) -> "GatewayClient":
        """This client's channel, calling with `token`."""
        self.stub  # noqa: B018 - one channel, opened before it is shared
        view = copy.copy(self)
        view.token = token
        return view

    @property
    def metadata(self):
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    async def call(self, method: str, request, timeout: float = DEADLINE_S):
        return await getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)

    def stream(self, method: str, request) -> StreamReader:
        """A response stream to iterate; `aclose()` it when done (see StreamReader)."""
        return StreamReader(getattr(self.stub, method)(request, metadata=self.metadata))

    async def close(self):
        if self._channel is not None:
            await self._channel.close()


def error_text(exc: Exception) -> str:
    """What a person reads when a call fails: the gateway's message, no stack trace."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or exc.code().name
        return details.split(" [request ")[0]
    return str(exc) or type(exc).__name__
