"""Forwarding with auth, validation, deadlines, request ids, access log and metrics.

Requests are parsed (to validate them) and forwarded as the bytes they came in;
backend responses pass through as bytes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Histogram

from gateway import validation
from gateway.auth import ROLE_NAMES, Authenticator
from gateway.routes import Route
from kubetune_common.channels import StreamReader
from kubetune_common.errors import InvalidArgument, KubetuneError, clipped, drain, status_for
from services.common.clients import Backend, backend_error

log = logging.getLogger("gateway.access")

REQUESTS = Counter("kubetune_gateway_requests_total", "Gateway calls by method and status.", ["method", "code"])
LATENCY = Histogram(
    "kubetune_gateway_request_seconds", "Gateway call latency (streams: until they end).", ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


# Request ids: unique per gateway process and cheap to make (this is the hot path).
_ID_PREFIX = os.urandom(4).hex()
_ID_COUNTER = itertools.count(1)
_METRICS: dict[tuple[str, str], tuple] = {}


def _metrics(method: str, code: str):
    """Prometheus children, looked up once per (method, status)."""
    children = _METRICS.get((method, code))
    if children is None:
        children = _METRICS[(method, code)] = (REQUESTS.labels(method, code), LATENCY.labels(method))
    return children


class Call:
    """Bookkeeping of one call: request id, role, access log line and metrics."""

    def __init__(self, route: Route, context, auth: Authenticator):
        self.route, self.context = route, context
        metadata = context.invocation_metadata()
        self.request_id = next((v for k, v in metadata if k == "x-request-id"), "") or f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
        self.start = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.role = ROLE_NAMES[auth.check(metadata, route.role, route.name)] if auth.enabled else "local"

    @property
    def metadata(self):
        return (("x-request-id", self.request_id),)

    async def fail(self, exc: BaseException):
        self.code, message = status_for(exc)
        if self.code == grpc.StatusCode.INTERNAL:
            log.exception("gateway error in %s", self.route.name, extra={"request_id": self.request_id})
        # Clipped here too: a backend's message (or a peer's) may be any size.
        await self.context.abort(self.code, f"{clipped(message)} [request {self.request_id}]",
                                 trailing_metadata=(("x-request-id", self.request_id),))

    def done(self):
        seconds = time.perf_counter() - self.start
        requests, latency = _metrics(self.route.name, self.code.name)
        requests.inc()
        latency.observe(seconds)
        log.log(
            logging.INFO if self.code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.WARNING,
            "%s %s", self.route.name, self.code.name,
            extra={"method": self.route.name, "status": self.code.name, "duration_ms": round(seconds * 1000, 2),
                   "role": self.role, "request_id": self.request_id},
        )


def _validated(iterator):
    async def gen():
        async for item in iterator:
            validation.check(item)
            yield item

    return gen()


class Proxy:
    def __init__(self, channels: dict[str, grpc.aio.Channel], backends: dict[str, Backend], auth: Authenticator,
                 local: dict[str, Callable], long_deadline_s: float = 3600.0):
        self.channels = channels
        self.backends = backends
        self.auth = auth
        self.long_deadline_s = long_deadline_s
        self.local = local

    def _cap(self, route: Route) -> float:
        return self.long_deadline_s if route.long_running else self.backends[route.backend].deadline_s

    def _deadline(self, context, route: Route) -> float:
        """The caller's own deadline, capped by the gateway's for this kind of call."""
        cap = self._cap(route)
        remaining = context.time_remaining()
        return min(cap, remaining) if remaining is not None else cap

    def handler(self, route: Route):
        # A single request bound for a backend is forwarded as the bytes it came in: parsed
        # once, to be validated, and never serialized again. Client streams are validated
        # item by item as they pass, so they travel as messages.
        raw = bool(route.backend) and not route.client_streaming
        parse = route.request.FromString

        def parsed(data: bytes):
            try:
                return parse(data)
            except DecodeError:
                raise InvalidArgument(f"the request is not a valid {route.request.DESCRIPTOR.full_name}") from None

        if route.backend:
            channel = self.channels[route.backend]
            target = route.backend_path
            kind = (route.client_streaming, route.server_streaming)
            # Backend responses stay bytes: the client gets them as the backend sent them.
            make = {
                (False, False): channel.unary_unary,
                (True, False): channel.stream_unary,
                (False, True): channel.unary_stream,
                (True, True): channel.stream_stream,
            }[kind]
            backend_call = make(target, request_serializer=None if raw else route.request.SerializeToString,
                                response_deserializer=None)
        else:
            backend_call = self.local[route.name]

        def rpc_error(exc):
            if isinstance(exc, grpc.aio.AioRpcError) and route.backend:
                explained = backend_error(self.backends[route.backend], exc)
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    setting = "LONG_DEADLINE_S" if route.long_running else "DEADLINE_S"
                    explained.message += f" (the gateway waits at most {self._cap(route):g}s: KUBETUNE_GATEWAY_{setting})"
                return explained
            return exc

        async def unary(request, context):
            call = await self._open(route, context)
            try:
                validation.check(parsed(request) if raw else request)
                if not route.backend:
                    return (await backend_call(request, context)).SerializeToString()
                return await backend_call(request, timeout=self._deadline(context, route), metadata=call.metadata)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                await call.fail(rpc_error(exc))
            finally:
                call.done()

        async def client_stream(requests, context):
            call = await self._open(route, context, requests)
            try:
                # A stream's time is mostly the client sending: ten times the unary cap, unless
                # the method is long-running and has its own.
                timeout = self._deadline(context, route) * (1 if route.long_running else 10)
                return await backend_call(_validated(requests), timeout=timeout, metadata=call.metadata)
            except Exception as exc:  # noqa: BLE001
                await call.fail(rpc_error(exc))
            finally:
                call.done()

        async def server_stream(request, context):
            # A coroutine that writes, not an async generator: when the client cancels,
            # the CancelledError lands here at an await, so the cleanup always runs and
            # the backend stream (and the backend's watch) is closed. A generator parked
            # at `yield` was never resumed, and each cancelled watch leaked its state.
            # Backend streams are read through StreamReader: a cancelled read leaks in
            # grpc.aio (grpc/grpc#43360), and every watch ends with its client cancelling.
            call = await self._open(route, context, request)
            try:
                async with contextlib.AsyncExitStack() as cleanup:
                    if route.client_streaming:
                        stream = StreamReader(backend_call(_validated(request), metadata=call.metadata))
                    else:
                        validation.check(parsed(request) if raw else request)
                        stream = (StreamReader(backend_call(request, metadata=call.metadata)) if route.backend
                                  else backend_call(request, context))
                    cleanup.push_async_callback(stream.aclose)
                    async for item in stream:
                        await context.write(item if route.backend else item.SerializeToString())
            except asyncio.CancelledError:
                call.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:  # noqa: BLE001
                await call.fail(rpc_error(exc))
            finally:
                call.done()

        deserialize = None if raw else parse
        if route.server_streaming and route.client_streaming:
            return grpc.stream_stream_rpc_method_handler(server_stream, request_deserializer=deserialize)
        if route.server_streaming:
            return grpc.unary_stream_rpc_method_handler(server_stream, request_deserializer=deserialize)
        if route.client_streaming:
            return grpc.stream_unary_rpc_method_handler(client_stream, request_deserializer=deserialize)
        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=deserialize)

    async def _open(self, route: Route, context, request=None) -> Call:
        try:
            return Call(route, context, self.auth)
        except KubetuneError as exc:
            code, message = status_for(exc)
            REQUESTS.labels(route.name, code.name).inc()
            log.warning("%s %s", route.name, code.name, extra={"method": route.name, "status": code.name})
            if route.client_streaming and request is not None:
                await drain(request)  # else the client may see INTERNAL, not why (grpc/grpc#36066)
            await context.abort(code, message)
