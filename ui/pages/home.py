"""Home: platform health, recent studies, recent models, and the way to start."""

from __future__ import annotations

from nicegui import ui

from kubetune.gateway.v1 import gateway_pb2
from kubetune.registry.v1 import registry_pb2
from kubetune.tuning.v1 import tuning_pb2
from ui.context import ctx
from ui.formatting import study_row, when
from ui.gateway_client import error_text
from ui.layout import layout, section
from ui.session import show_if

STUDY_COLUMNS = [
    {"name": "name", "label": "Study", "field": "name", "align": "left"},
    {"name": "dataset", "label": "Dataset", "field": "dataset", "align": "left"},
    {"name": "state", "label": "State", "field": "state", "align": "left"},
    {"name": "progress", "label": "Trials", "field": "progress", "align": "right"},
    {"name": "best", "label": "Best value", "field": "best", "align": "right"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
]
MODEL_COLUMNS = [
    {"name": "name", "label": "Model", "field": "name", "align": "left"},
    {"name": "versions", "label": "Versions", "field": "versions", "align": "right"},
    {"name": "champion", "label": "champion", "field": "champion", "align": "left"},
    {"name": "updated", "label": "Updated", "field": "updated", "align": "left"},
]
RECENT = 10
REFRESH_S = 5.0

STATE_SLOT = """
<q-td :props="props">
  <q-badge :color="{running:'primary',completed:'positive',stopped:'warning'}[props.value] || 'grey'"
           :label="props.value" />
</q-td>"""


def model_rows(models) -> list[dict]:
    return [{"name": m.name, "versions": len(m.versions),
             "champion": f"v{m.aliases['champion']}" if "champion" in m.aliases else "–",
             "updated": when(m.updated_at)} for m in models]


async def page():
    layout("Home", active="Home")
    with ui.column().classes("w-full max-w-screen-xl mx-auto p-4 gap-4"):
        with ui.row().classes("w-full items-center"):
            with ui.column().classes("gap-0"):
                ui.label("kubetune").classes("text-h4")
                ui.label("Tune, track, compare, register and serve tabular models.").classes("text-grey-8")
            ui.space()
            show_if("editor", ui.button("Start a study", icon="rocket_launch", on_click=lambda: ui.navigate.to("/tune")
                                        ).props("size=lg").mark("start-a-study"))
        with section("Platform"):
            health_row = ui.row().classes("gap-2").mark("health")
        with section("Recent studies", "click a row to open its live page"):
            studies = ui.table(columns=STUDY_COLUMNS, rows=[], row_key="id").classes("w-full").props(
                "flat dense").mark("recent-studies")
            studies.add_slot("body-cell-state", STATE_SLOT)
            studies.on("rowClick", lambda e: ui.navigate.to(f"/study/{e.args[1]['id']}"))
            no_studies = ui.label("No studies yet. Start one with the button above.").classes("text-grey-7")
        with section("Recent models"):
            models = ui.table(columns=MODEL_COLUMNS, rows=[], row_key="name").classes("w-full").props(
                "flat dense").mark("recent-models")
            models.on("rowClick", lambda _e: ui.navigate.to("/models"))
            models_note = ui.label("").classes("text-grey-7")

    async def refresh():
        try:
            health = await ctx.gateway.call("GetPlatformHealth", gateway_pb2.GetPlatformHealthRequest(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            health_row.clear()
            with health_row:
                ui.chip(f"gateway: {error_text(exc)}", icon="error", color="negative").props("text-color=white")
            return
        health_row.clear()
        with health_row:
            for part in health.parts:
                ok = part.status == "SERVING"
                chip = ui.chip(f"{part.name}: {part.status.lower()}", icon="check_circle" if ok else "error",
                               color="positive" if ok else "negative").props("text-color=white outline" if ok else
                                                                             "text-color=white")
                if part.address:
                    chip.tooltip(part.address)
        try:
            listed = await ctx.gateway.call("ListStudies", tuning_pb2.ListStudiesRequest(), timeout=10)
            studies.rows = [study_row(s) for s in listed.studies[:RECENT]]
            studies.set_visibility(bool(listed.studies))
            no_studies.set_visibility(not listed.studies)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            no_studies.text = f"Studies unavailable: {error_text(exc)}"
            no_studies.set_visibility(True)
        try:
            listed_models = await ctx.gateway.call("ListModels", registry_pb2.ListModelsRequest(), timeout=10)
            ordered = sorted(listed_models.models, key=lambda m: m.updated_at.seconds, reverse=True)
            models.rows = model_rows(ordered[:RECENT])
            models.set_visibility(bool(listed_models.models))
            models_note.text = "" if listed_models.models else "No models yet: register one from Experiments."
        except Exception as exc:  # noqa: BLE001 - shown on the page
            models.rows = []
            models.set_visibility(False)
            models_note.text = f"Models unavailable: {error_text(exc)}"

    await refresh()
    ui.timer(REFRESH_S, refresh)
