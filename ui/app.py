"""The NiceGUI app: one gateway client, the pages, and `run`."""

from __future__ import annotations

from nicegui import app, ui

from ui.config import Settings
from ui.context import ctx
from ui.gateway_client import GatewayClient


def register_pages() -> None:
    """Routes are registered here rather than by decorators at import time, so that
    NiceGUI's test simulation (which resets routes between tests) can register them again."""
    from ui.pages import data, experiments, home, models, study, tune

    ui.page("/")(home.page)
    ui.page("/data")(data.page)
    ui.page("/tune")(tune.page)
    ui.page("/study/{study_id}")(study.page)
    ui.page("/experiments")(experiments.page)
    ui.page("/models")(models.page)


def setup(settings: Settings) -> None:
    ctx.settings = settings
    ctx.gateway = GatewayClient(settings.gateway_address, settings.gateway_token)
    app.on_shutdown(ctx.gateway.close)
    register_pages()


def run(settings: Settings) -> None:
    setup(settings)
    ui.run(host=settings.host, port=settings.port, title="kubetune", reload=False, show=False,
           favicon="🎛", storage_secret=None)
