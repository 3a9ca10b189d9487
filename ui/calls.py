"""Gateway calls from pages: failures become readable notifications, never stack traces."""

from __future__ import annotations

import logging

from nicegui import ui

from ui.context import ctx
from ui.gateway_client import DEADLINE_S, error_text

log = logging.getLogger(__name__)


def notify_error(doing: str, exc: Exception) -> None:
    log.info("%s failed: %s", doing, exc)
    ui.notify(f"{doing} failed: {error_text(exc)}", type="negative", multi_line=True, close_button=True,
              timeout=8000)


async def attempt(method: str, request, doing: str, timeout: float = DEADLINE_S):
    """The response, or None after telling the user what went wrong."""
    try:
        return await ctx.gateway.call(method, request, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - shown to the user, not raised
        notify_error(doing, exc)
        return None
