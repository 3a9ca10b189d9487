"""Riding out a dependency that restarts: a call that failed for a passing reason
(the service unreachable, a deadline missed) is tried again with backoff, for a
bounded time. Anything else, or a longer outage, is raised as it was.

Only for calls that are safe to repeat (idempotent, or deduplicated by an id)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FIRST_WAIT_S, LONGEST_WAIT_S = 0.25, 5.0


def grpc_transient(exc: BaseException) -> bool:
    """The other side is down or restarting: worth another try."""
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT_CODES


def _next_wait(exc: Exception, wait: float, deadline: float, transient, what: str) -> float:
    """How long to wait before the next try; raises when there should be none."""
    if not transient(exc) or time.monotonic() + wait > deadline:
        raise exc
    detail = exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
    log.warning("%s failed (%s); trying again in %.1fs", what, detail, wait)
    return wait


async def retry_async(make: Callable[[], Awaitable[T]], *, transient: Callable[[BaseException], bool],
                      budget_s: float, what: str) -> T:
    """Awaits `make()` until it succeeds, fails for a lasting reason, or `budget_s` is
    spent; `make()` builds a fresh coroutine for each try."""
    deadline = time.monotonic() + budget_s
    wait = FIRST_WAIT_S
    while True:
        try:
            return await make()
        except Exception as exc:  # noqa: BLE001 - sorted by `transient`
            await asyncio.sleep(_next_wait(exc, wait, deadline, transient, what))
            wait = min(wait * 2, LONGEST_WAIT_S)
