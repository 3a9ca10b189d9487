"""The NiceGUI app: one gateway client, the sign-in, the pages, and `run`."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from nicegui import app, ui

from ui.config import Settings
from ui.context import ctx
from ui.gateway_client import GatewayClient
from ui.memory import reclaimer


def register_pages() -> None:
    """Routes are registered here rather than by decorators at import time, so that
    NiceGUI's test simulation (which resets routes between tests) can register them again."""
    from ui import session
    from ui.pages import data, experiments, home, models, study, tune

    session.register()
    ui.page("/")(session.signed_in(home.page))
    ui.page("/data")(session.signed_in(data.page))
    ui.page("/tune")(session.signed_in(tune.page))
    ui.page("/study/{study_id}")(session.signed_in(study.page))
    ui.page("/experiments")(session.signed_in(experiments.page))
    ui.page("/models")(session.signed_in(models.page))


def storage_secret(settings: Settings) -> str:
    """What signs the session cookies: the setting, the file (a mounted Secret), or a
    random one for this process alone (sign-ins end with it; not for several replicas)."""
    if settings.session_secret:
        return settings.session_secret
    if settings.session_secret_file:
        return Path(settings.session_secret_file).read_text().strip()
    logging.getLogger(__name__).warning(
        "no KUBETUNE_UI_SESSION_SECRET: signing sessions with a random key, valid until this process ends")
    return secrets.token_urlsafe(32)


def setup(settings: Settings) -> None:
    ctx.settings = settings
    ctx.base = GatewayClient(settings.gateway_address)
    app.on_shutdown(ctx.base.close)
    app.on_delete(reclaimer.page_closed)
    register_pages()


def run(settings: Settings) -> None:
    setup(settings)
    ui.run(host=settings.host, port=settings.port, title="kubetune", reload=False, show=False,
           favicon="🎛", storage_secret=storage_secret(settings), reconnect_timeout=settings.reconnect_s,
           session_middleware_kwargs={"session_cookie": "kubetune_session", "max_age": settings.session_s,
                                      "same_site": "lax", "https_only": settings.secure_cookie})
