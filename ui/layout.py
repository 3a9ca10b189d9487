"""The frame around every page: navigation and the platform status chip."""

from __future__ import annotations

from nicegui import ui

from kubetune.gateway.v1 import gateway_pb2
from ui import session
from ui.context import ctx
from ui.gateway_client import error_text

NAV = [("Home", "/", "home"), ("Data", "/data", "table_chart"), ("Tune", "/tune", "tune"),
       ("Experiments", "/experiments", "insights"), ("Models", "/models", "inventory_2")]
HEALTH_EVERY_S = 5.0


def health_summary(response: gateway_pb2.GetPlatformHealthResponse | None, error: str = "") -> tuple[bool, str, str]:
    """(healthy, chip text, tooltip) from GetPlatformHealth, or from the error reaching the gateway."""
    if response is None:
        return False, "gateway unreachable", error or "the gateway does not answer"
    bad = [p for p in response.parts if p.status != "SERVING"]
    detail = "\n".join(f"{p.name}: {p.status}" + (f" ({p.address})" if p.address else "") for p in response.parts)
    if not bad:
        return True, "all systems serving", detail
    names = ", ".join(p.name for p in bad)
    return False, f"{names} down" if len(bad) < 3 else f"{len(bad)} parts down", detail


def status_chip() -> None:
    chip = ui.chip("checking…", icon="hourglass_empty", color="grey-5").props("dense clickable").classes("text-xs")
    chip.mark("status-chip")
    with chip:
        tip = ui.tooltip("").style("white-space: pre-line")
    chip.on_click(lambda: ui.navigate.to("/"))

    async def check():
        try:
            response = await ctx.gateway.call("GetPlatformHealth", gateway_pb2.GetPlatformHealthRequest(), timeout=3)
            healthy, text, detail = health_summary(response)
        except Exception as exc:  # noqa: BLE001 - shown in the chip
            healthy, text, detail = health_summary(None, error_text(exc))
        chip.text = text
        chip.props(f"color={'positive' if healthy else 'negative'} icon={'check_circle' if healthy else 'error'}")
        chip.props(remove="text-color").props("text-color=white")
        tip.text = detail

    ui.timer(0.01, check, once=True)
    ui.timer(HEALTH_EVERY_S, check)


def layout(title: str, active: str = "") -> None:
    ui.page_title(f"{title} · kubetune")
    ui.colors(primary="#3b5bdb")
    ui.query("body").style("background-color: #f6f7fb")
    with ui.header().classes("items-center justify-between px-4 py-1 bg-white text-grey-9 shadow-1"):
        with ui.row().classes("items-center gap-1 no-wrap"):
            ui.link("kubetune", "/").classes("text-h6 text-weight-bold no-underline text-primary mr-4")
            for label, path, icon in NAV:
                btn = ui.button(label, icon=icon, on_click=lambda p=path: ui.navigate.to(p)).props("flat no-caps")
                btn.props(f"color={'primary' if label == active else 'grey-8'}")
                if label == active:
                    btn.classes("bg-blue-1")
            ui.button("MLflow", icon="open_in_new",
                      on_click=lambda: ui.navigate.to(ctx.settings.mlflow_ui_url, new_tab=True)
                      ).props("flat no-caps color=grey-8")
        with ui.row().classes("items-center gap-2 no-wrap"):
            status_chip()
            session.header_badge()


def section(title: str, caption: str = ""):
    """A titled card; use as a context manager."""
    card = ui.card().classes("w-full")
    with card:
        with ui.row().classes("items-baseline gap-3"):
            ui.label(title).classes("text-subtitle1 text-weight-medium")
            if caption:
                ui.label(caption).classes("text-caption text-grey-7")
    return card
