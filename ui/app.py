"""The NiceGUI app: one gateway client, the sign-in, the pages, and `run`."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from nicegui import app, ui

from ui.config import Settings
from ui.context import ctx
from ui.gateway_client import DEADLINE_S, GatewayClient
from ui.memory import reclaimer
from ui.session import WHO_DEADLINE_S

# How long a page may take to build: the sign-in check and a page's first read from the
# gateway (Experiments' rows) are awaited before it goes out, each within its deadline.
# Past NiceGUI's default, 3 s, the browser got an error page instead (HTTP 500): on a
# loaded machine, 1 of 80 pages in the soak (tests/reliability/test_soak.py).
PAGE_BUILD_S = WHO_DEADLINE_S + DEADLINE_S + 5


def register_pages() -> None:
    """Routes are registered here rather than by decorators at import time, so that
    NiceGUI's test simulation (which resets routes between tests) can register them again."""
    from ui import session
    from ui.pages import data, experiments, home, models, study, tune

    session.register()
    for path, page in (("/", home.page), ("/data", data.page), ("/tune", tune.page),
                       ("/study/{study_id}", study.page), ("/experiments", experiments.page),
                       ("/models", models.page)):
        ui.page(path, response_timeout=PAGE_BUILD_S)(session.signed_in(page))


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
