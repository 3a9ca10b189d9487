"""Domain errors and their one mapping to gRPC status codes.

Domain code raises these and knows nothing of gRPC; `grpc_errors` turns them into
`context.abort(code, message)` at the servicer boundary (the MLServer way)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging

import grpc

log = logging.getLogger(__name__)

# A status message travels in a gRPC trailer, and a peer refuses trailers over 16 KiB
# (the caller then sees RESOURCE_EXHAUSTED "Stream removed" instead of the reason).
# Messages may quote user input, so they are cut to a size any peer accepts: measured
# as gRPC sends it, percent-encoded (each byte of a non-ASCII character takes 3).
MAX_MESSAGE_CHARS = 2000
MAX_MESSAGE_WIRE_BYTES = 6000


def wire_size(message: str) -> int:
    """Bytes of the message in the grpc-message trailer: printable ASCII but '%' as is,
    every other UTF-8 byte as %XX."""
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in message.encode("utf-8", "surrogatepass"))


def clipped(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS and wire_size(message) <= MAX_MESSAGE_WIRE_BYTES:
        return message
    budget, cut = MAX_MESSAGE_WIRE_BYTES - 60, 0  # room for the note on what was cut
    for cut, char in enumerate(message[:MAX_MESSAGE_CHARS]):
        budget -= wire_size(char)
        if budget < 0:
            break
    else:
        cut = min(len(message), MAX_MESSAGE_CHARS)
    return f"{message[:cut]}... ({len(message) - cut} more characters)"


class KubetuneError(Exception):
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(KubetuneError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(KubetuneError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(KubetuneError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(KubetuneError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(KubetuneError):
    code = grpc.StatusCode.UNAVAILABLE


class PermissionDenied(KubetuneError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(KubetuneError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(KubetuneError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a caller sees for an exception raised by domain code."""
    if isinstance(exc, KubetuneError):
        return exc.code, clipped(exc.message)
    if isinstance(exc, grpc.aio.AioRpcError):
        # A backend's answer passes through unchanged.
        return exc.code(), clipped(exc.details() or exc.code().name)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


# Trailing metadata on every refusal our servicers send: a caller tells a backend that
# answered UNAVAILABLE (alive, naming what it could not reach) from one it could not reach.
ANSWERED_KEY = "kubetune-answered"


def answered(exc: grpc.RpcError) -> bool:
    """True when the status came from one of our servicers, not from grpc's transport."""
    try:
        metadata = exc.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - an error raised before any call had metadata
        return False
    return any(key == ANSWERED_KEY for key, _ in metadata)


async def _abort(context, exc: BaseException, method: str):
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unhandled error in %s", method)
    await context.abort(code, message, trailing_metadata=((ANSWERED_KEY, "1"),))


# How long a refused client stream is read to its end before the status goes back.
DRAIN_S = 10.0


async def drain(requests) -> None:
    """Reads what the client still sends before a refusal goes back. Ending a client
    stream early races the client's next write, and grpc's asyncio client (the
    gateway) then reports INTERNAL "Internal error from Core" in place of our status
    (grpc/grpc#36066): the caller would never learn why."""

    async def rest():
        async for _ in requests:
            pass

    with contextlib.suppress(Exception):
        await asyncio.wait_for(rest(), DRAIN_S)


def _is_stream(request) -> bool:
    return hasattr(request, "__aiter__")


def grpc_errors(method):
    """Maps domain errors to status codes for unary and streaming servicer methods."""
    name = method.__qualname__
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except (KubetuneError, grpc.aio.AioRpcError, Exception) as exc:  # noqa: BLE001
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                if _is_stream(request):
                    await drain(request)
                await _abort(context, exc, name)

        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            if _is_stream(request):
                await drain(request)
            await _abort(context, exc, name)

    return unary


def servicer_errors(cls):
    """Class decorator: wraps every public RPC method of a servicer with grpc_errors."""
    for attr, value in list(vars(cls).items()):
        if attr[:1].isupper() and callable(value):
            setattr(cls, attr, grpc_errors(value))
    return cls
