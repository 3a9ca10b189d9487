"""The one gRPC server bootstrap: health, reflection, access log, graceful stop.

`make_server()` builds without blocking so tests can start a server in a fixture;
`run()` is the blocking entry point each part's __main__ calls. Every part's app.py
wires itself the same way: what it opens goes into `cleanup_on_failure()` (closed in
reverse if the start fails part way), and it returns a `Service`: the server and the
parts tests and operators look at."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kubetune_common.channels import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # gRPC shares ports by default (SO_REUSEPORT): off, so a taken port is an error.
    ("grpc.so_reuseport", 0),
]


class PortInUse(RuntimeError):
    pass


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """One log line per call: method, status, duration."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith("/grpc."):
            return handler
        method = handler_call_details.method

        def wrap_unary(behavior):
            async def call(request, context):
                start = time.perf_counter()
                try:
                    return await behavior(request, context)
                finally:
                    _log_call(method, context, start)

            return call

        def wrap_stream(behavior):
            async def call(request, context):
                start = time.perf_counter()
                try:
                    async for item in behavior(request, context):
                        yield item
                finally:
                    _log_call(method, context, start)

            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
        return handler


def _log_call(method: str, context, start: float) -> None:
    code = context.code() or grpc.StatusCode.OK
    if isinstance(code, int):
        code = grpc.StatusCode(code) if code in grpc.StatusCode else code
    name = getattr(code, "name", str(code))
    level = logging.INFO if name in ("OK", "CANCELLED") else logging.WARNING
    log.log(
        level,
        "rpc %s %s",
        method,
        name,
        extra={"method": method, "status": name, "duration_ms": round((time.perf_counter() - start) * 1000, 2)},
    )


@dataclass
class Server:
    """A started gRPC server and what must be stopped with it."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: list[str]
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING first (so balancers stop sending), then stop, then cleanups."""
        await self.set_serving(False)
        await self.server.stop(grace)
        for cleanup in reversed(self.on_stop):
            try:
                await cleanup()
            except Exception:  # noqa: BLE001 - stop the rest regardless
                log.exception("cleanup failed during shutdown")


@dataclass
class Service:
    """What a part's `start()` returns. Subclasses add the parts worth reaching (the
    domain, a consumer, a cache) as fields, rather than as attributes on the server."""

    server: Server

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


class Opened:
    """What a starting part has opened, each with its close, in the order opened."""

    def __init__(self) -> None:
        self.closes: list[Callable[[], Awaitable[None]]] = []

    def add(self, close: Callable[[], Awaitable[None]]) -> None:
        self.closes.append(close)

    def serve(self, server: Server) -> Server:
        """Hands the closes to the started server: they run, in reverse, after it stops."""
        server.on_stop.extend(self.closes)
        return server


@contextlib.asynccontextmanager
async def cleanup_on_failure():
    """For a part's start(): if it fails part way (a port in use, a store that will not
    open), what it opened so far is closed, in reverse, and nothing is left running."""
    opened = Opened()
    try:
        yield opened
    except BaseException:
        for close in reversed(opened.closes):
            try:
                await close()
            except Exception:  # noqa: BLE001 - close the rest regardless
                log.exception("cleanup failed after a failed start")
        raise


async def make_server(
    address: str,
    register: Callable[[grpc.aio.Server], Iterable[str]],
    *,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    options: list[tuple[str, object]] | None = None,
    access_log: bool = True,
) -> Server:
    """Builds and starts a server; `register` adds servicers and returns their full names."""
    server = grpc.aio.server(
        interceptors=[*([AccessLogInterceptor()] if access_log else []), *interceptors],
        options=options or SERVER_OPTIONS,
    )
    service_names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise PortInUse(address) from exc
    if port == 0:
        raise PortInUse(address)
    await server.start()
    started = Server(server, health_servicer, port, service_names)
    await started.set_serving(True)
    return started


def port_in_use_message(part: str, address: str, setting: str) -> str:
    return f"{part}: port {address} is already in use; set {setting} to another port"


async def run(
    part: str,
    address: str,
    port_setting: str,
    build: Callable[[], Awaitable[Server]],
    grace: float,
) -> int:
    """Runs a part until SIGTERM/SIGINT/SIGQUIT, then stops it gracefully. Returns an exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await build()
    except PortInUse:
        log.error(port_in_use_message(part, address, port_setting))
        return 2
    log.info("%s serving on port %d", part, server.port, extra={"port": server.port})
    await stop.wait()
    log.info("%s stopping (grace %.1fs)", part, grace)
    await server.stop(grace)
    log.info("%s stopped", part)
    return 0
