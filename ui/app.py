"""The NiceGUI app: shared layout, pages, one gateway client."""

from __future__ import annotations

from nicegui import app, ui

from kubetune.tuning.v1 import tuning_pb2
from ui.config import Settings
from ui.gateway_client import GatewayClient, error_text

STATE_NAMES = {
    tuning_pb2.STUDY_STATE_RUNNING: "running",
    tuning_pb2.STUDY_STATE_STOPPED: "stopped",
    tuning_pb2.STUDY_STATE_COMPLETED: "completed",
}


class Context:
    settings: Settings
    gateway: GatewayClient


ctx = Context()


def layout(title: str) -> None:
    ui.page_title(f"{title} · kubetune")
    with ui.header().classes("items-center justify-between"):
        ui.label("kubetune").classes("text-h6")
        with ui.row():
            ui.link("Studies", "/").classes("text-white")
            ui.link("MLflow", ctx.settings.mlflow_ui_url, new_tab=True).classes("text-white")


def study_rows(studies) -> list[dict]:
    rows = []
    for s in studies:
        c = s.counts
        rows.append({
            "id": s.id,
            "dataset": s.dataset_version,
            "state": STATE_NAMES.get(s.state, "unknown"),
            "progress": f"{c.complete + c.pruned + c.fail}/{s.spec.n_trials}",
            "best": f"{s.best_values[0]:.4g}" if s.best_values else "–",
            "created": s.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M") if s.created_at.seconds else "",
        })
    return rows


@ui.page("/")
async def studies_page():
    layout("Studies")
    ui.label("Studies").classes("text-h5")
    columns = [
        {"name": k, "label": label, "field": k, "align": "left", "sortable": True}
        for k, label in [("id", "Study"), ("dataset", "Dataset"), ("state", "State"),
                         ("progress", "Trials"), ("best", "Best value"), ("created", "Created")]
    ]
    table = ui.table(columns=columns, rows=[], row_key="id").classes("w-full")
    empty = ui.label("No studies yet.").classes("text-grey")
    datasets_label = ui.label("").classes("text-grey")

    async def refresh():
        try:
            studies = (await ctx.gateway.call("ListStudies", tuning_pb2.ListStudiesRequest())).studies
            from kubetune.data.v1 import data_pb2

            datasets = (await ctx.gateway.call("ListDatasets", data_pb2.ListDatasetsRequest())).datasets
        except Exception as exc:  # noqa: BLE001 - shown to the user, not raised
            ui.notify(f"Could not load studies: {error_text(exc)}", type="negative")
            return
        table.rows = study_rows(studies)
        table.update()
        empty.set_visibility(not studies)
        names = ", ".join(d.name for d in datasets) or "none"
        datasets_label.set_text(f"Datasets: {names}")

    await refresh()
    ui.timer(2.0, refresh)


def run(settings: Settings) -> None:
    ctx.settings = settings
    ctx.gateway = GatewayClient(settings.gateway_address, settings.gateway_token)
    app.on_shutdown(ctx.gateway.close)
    ui.run(host=settings.host, port=settings.port, title="kubetune", reload=False, show=False, favicon="🎛")
