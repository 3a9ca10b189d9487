"""Models: registered models, their versions with lineage, aliases (move `champion`),
and predictions from a form of the model's columns, pasted rows or a CSV file,
downloadable."""

from __future__ import annotations

from nicegui import ui

from kubetune.registry.v1 import registry_pb2 as rpb
from kubetune_common.prediction_input import BOOLEAN, NUMERIC, BadTable, Column, columns_of
from ui.calls import attempt
from ui.context import ctx
from ui.formatting import number, plural, when
from ui.layout import layout, section
from ui.predict_rows import feature_rows, form_row, parse_rows, result_rows, to_csv
from ui.session import show_if

# The saved epoch's numbers (a trial's val_loss is its saved epoch's): the test split's
# in the target's units first, then the validation loss the study selected on.
KEY_METRICS = ("test/rmse", "test/r2", "test/accuracy", "test/f1_macro", "val_loss")
METRIC_LABELS = {"test/rmse": "test RMSE", "test/r2": "test R²", "test/accuracy": "test accuracy",
                 "test/f1_macro": "test macro F1", "val_loss": "val loss (standardised)"}
def metric_label(key: str, task_kind: str) -> str:
    if key == "val_loss" and task_kind == "classification":
        return "val loss (cross-entropy)"
    return METRIC_LABELS.get(key, key)


VERSION_COLUMNS = [
    {"name": "version", "label": "Version", "field": "version", "align": "left", "sortable": True},
    {"name": "aliases", "label": "Aliases", "field": "aliases", "align": "left"},
    {"name": "metric", "label": "Metrics", "field": "metric", "align": "left"},
    {"name": "dataset", "label": "Dataset", "field": "dataset", "align": "left"},
    {"name": "study", "label": "Study", "field": "study", "align": "left"},
    {"name": "trial", "label": "Trial", "field": "trial", "align": "right"},
    {"name": "run", "label": "Run", "field": "run", "align": "left"},
    {"name": "created", "label": "Registered", "field": "created", "align": "left"},
]
VERSIONS_SLOT = """
<q-tr :props="props">
  <q-td key="version" :props="props"><b>v{{ props.row.version }}</b></q-td>
  <q-td key="aliases" :props="props">
    <q-badge v-for="a in props.row.alias_list" :key="a" :color="a === 'champion' ? 'amber-8' : 'blue-grey'"
             :label="a" class="q-mr-xs" />
  </q-td>
  <q-td key="metric" :props="props">{{ props.row.metric }}</q-td>
  <q-td key="dataset" :props="props">{{ props.row.dataset }}</q-td>
  <q-td key="study" :props="props">
    <a v-if="props.row.study_id" :href="'/study/' + props.row.study_id" class="text-primary">{{ props.row.study }}</a>
  </q-td>
  <q-td key="trial" :props="props">{{ props.row.trial }}</q-td>
  <q-td key="run" :props="props">
    <a v-if="props.row.run_link" :href="props.row.run_link" target="_blank" class="text-primary">{{ props.row.run }}</a>
  </q-td>
  <q-td key="created" :props="props">{{ props.row.created }}</q-td>
</q-tr>"""


def version_rows(model: rpb.RegisteredModel, mlflow_url: str) -> list[dict]:
    rows = []
    for v in model.versions:
        rows.append({
            "version": v.version,
            "alias_list": list(v.aliases),
            "aliases": ", ".join(v.aliases),
            "metric": ", ".join(f"{metric_label(k, v.task_kind)} {number(v.metrics[k])}"
                                for k in KEY_METRICS if k in v.metrics),
            "dataset": v.dataset_version,
            "study": v.study_id,
            "study_id": v.study_id,
            "trial": v.trial if v.study_id else "",
            "run": v.run_id[:8],
            "run_link": f"{mlflow_url.rstrip('/')}/#/runs/{v.run_id}" if v.run_id else "",
            "created": when(v.created_at),
        })
    return rows


class ModelsPage:
    def __init__(self, name: str = ""):
        self.models: dict[str, rpb.RegisteredModel] = {}
        self.current: rpb.RegisteredModel | None = None
        self.wanted = name
        self.alias_form = {"alias": "champion", "version": None}
        self.predict_form = {"model": None, "text": ""}
        self.row_values: dict[str, str] = {}
        self.results: list[dict] = []

    def build(self) -> None:
        with ui.row().classes("w-full max-w-screen-2xl mx-auto p-4 gap-4 no-wrap items-start"):
            with ui.card().classes("w-72 shrink-0"):
                ui.label("Models").classes("text-h6")
                self.search = ui.input("Search", on_change=self.render_list).props("outlined dense clearable")
                self.list_column = ui.list().props("separator").classes("w-full").mark("model-list")
                self.empty = ui.label("").classes("text-grey-7")
            self.detail = ui.column().classes("grow gap-4 min-w-0")
            with self.detail:
                with ui.row().classes("items-center gap-3"):
                    self.title = ui.label("").classes("text-h5").mark("model-title")
                    self.alias_chips = ui.row().classes("gap-1")
                self.description = ui.label("").classes("text-grey-8")
                with section("Versions", "lineage: the dataset, study and run each version came from"):
                    self.versions = ui.table(columns=VERSION_COLUMNS, rows=[], row_key="version").classes(
                        "w-full").props("flat dense").mark("versions-table")
                    self.versions.add_slot("body", VERSIONS_SLOT)
                with show_if("editor", section("Aliases", "callers predict from name@alias; move it to promote a version")):
                    with ui.row().classes("items-center gap-3"):
                        ui.select(["champion", "challenger", "staging"], label="Alias", with_input=True,
                                  new_value_mode="add-unique").bind_value(self.alias_form, "alias").props(
                            "outlined dense").classes("w-44").mark("alias-name")
                        ui.label("→").classes("text-h6")
                        self.alias_version = ui.select([], label="Version").bind_value(
                            self.alias_form, "version").props("outlined dense").classes("w-32").mark("alias-version")
                        ui.button("Set alias", icon="label", on_click=self.set_alias).mark("set-alias")
                with show_if("editor", section("Predict")):
                    with ui.row().classes("items-center gap-3 w-full"):
                        self.predict_model = ui.select([], label="Model", on_change=self.render_inputs).bind_value(
                            self.predict_form, "model").props("outlined dense").classes("w-64").mark("predict-model")
                        self.features_label = ui.label("").classes("text-caption text-grey-8")
                    ui.label("One row: leave a value empty when it is missing.").classes("text-caption text-grey-8")
                    self.inputs_row = ui.row().classes("w-full gap-2 items-start").mark("predict-inputs")
                    with ui.row().classes("w-full gap-4 items-start no-wrap"):
                        self.textarea = ui.textarea("Rows to predict (CSV; a header row names the columns, in any "
                                                    "order; without one, all the model's columns in order)"
                                                    ).bind_value(self.predict_form, "text").props(
                            "outlined").classes("grow font-mono").mark("predict-rows")
                        ui.upload(on_upload=self.on_csv, auto_upload=True, label="or drop a CSV",
                                  max_files=1).props('accept=".csv,.txt" flat bordered').classes("w-64")
                    with ui.row().classes("items-center gap-3"):
                        self.predict_button = ui.button("Predict", icon="play_arrow", on_click=self.predict).mark(
                            "predict-button")
                        self.predict_row_button = ui.button("Predict the row", icon="play_arrow",
                                                            on_click=self.predict_row).props("outline").mark(
                            "predict-row-button")
                        self.download_button = ui.button("Download CSV", icon="download",
                                                         on_click=self.download).props("outline").mark("download")
                        self.download_button.set_visibility(False)
                        self.predict_info = ui.label("").classes("text-grey-8").mark("predict-info")
                    self.predict_error = ui.label("").classes("text-negative").mark("predict-error")
                    self.predictions = ui.table(columns=[], rows=[], row_key="row").classes("w-full").props(
                        "flat dense").mark("predictions")
            self.detail.set_visibility(False)

    async def refresh(self) -> None:
        response = await attempt("ListModels", rpb.ListModelsRequest(), "Loading models")
        if response is None:
            self.empty.text = "The model registry did not answer."
            return
        self.models = {m.name: m for m in response.models}
        self.empty.text = "" if self.models else "No models yet: register runs from the Experiments page."
        self.render_list()
        name = self.wanted or (self.current.name if self.current else "") or next(iter(self.models), "")
        if name in self.models:
            await self.open(name)

    def render_list(self, *_args) -> None:
        text = (self.search.value or "").lower()
        self.list_column.clear()
        with self.list_column:
            for name, m in sorted(self.models.items()):
                if text and text not in name.lower():
                    continue
                with ui.item(on_click=lambda n=name: self.open(n)).classes(
                        "bg-blue-1" if self.current and self.current.name == name else ""):
                    with ui.item_section():
                        ui.item_label(name).classes("text-weight-medium")
                        champion = m.aliases.get("champion")
                        ui.item_label(plural(len(m.versions), "version") + (f" · champion v{champion}" if champion else "")
                                      ).props("caption")

    async def open(self, name: str) -> None:
        response = await attempt("GetModel", rpb.GetModelRequest(name=name), f"Loading model {name}")
        if response is None:
            return
        self.current = m = response.model
        self.models[name] = m
        self.wanted = ""
        self.render_list()
        self.detail.set_visibility(True)
        self.title.text = m.name
        self.description.text = m.description
        self.alias_chips.clear()
        with self.alias_chips:
            for alias, version in sorted(m.aliases.items()):
                ui.chip(f"{alias} → v{version}", color="amber-3" if alias == "champion" else "blue-grey-2",
                        removable=alias != "champion").on("remove", lambda _e, a=alias: self.delete_alias(a))
        self.versions.rows = version_rows(m, ctx.settings.mlflow_ui_url)
        versions = [v.version for v in m.versions]
        self.alias_version.set_options(versions, value=m.aliases.get(self.alias_form["alias"] or "champion",
                                                                      versions[0] if versions else None))
        refs = [f"{m.name}@{a}" for a in sorted(m.aliases)] + [f"{m.name}/{v}" for v in versions]
        current = self.predict_form["model"]
        self.predict_model.set_options(refs, value=current if current in refs else (refs[0] if refs else None))
        self.render_inputs()

    def input_columns(self) -> list[Column]:
        """The chosen version's input columns, with their kinds."""
        m = self.current
        ref = self.predict_form["model"] or ""
        if m is None:
            return []
        version = ref.split("/", 1)[1] if "/" in ref else m.aliases.get(ref.split("@", 1)[-1], "")
        chosen = next((v for v in m.versions if v.version == version), m.versions[0] if m.versions else None)
        return columns_of(chosen) if chosen else []

    def render_inputs(self, *_args) -> None:
        """One input per column of the chosen version, by name, typed by its kind."""
        columns = self.input_columns()
        self.features_label.text = ("columns: " + ", ".join(f"{c.name} ({c.kind})" for c in columns)
                                    if columns else "")
        if columns and not self.predict_form["text"]:
            self.textarea.props(f'placeholder="{",".join(c.name for c in columns)}"')
        self.row_values = {c.name: self.row_values.get(c.name, "") for c in columns}
        self.inputs_row.clear()
        with self.inputs_row:
            for c in columns:
                if c.kind == BOOLEAN:
                    field = ui.select(["", "true", "false"], label=f"{c.name} (boolean)")
                else:
                    field = ui.input(f"{c.name} ({c.kind})", placeholder="number" if c.kind == NUMERIC else "text")
                field.bind_value(self.row_values, c.name).props("outlined dense").classes("w-40").mark(
                    f"input-{c.name}")

    async def set_alias(self) -> None:
        alias, version = (self.alias_form["alias"] or "").strip(), self.alias_form["version"]
        if not (self.current and alias and version):
            ui.notify("Pick an alias and a version.", type="warning")
            return
        response = await attempt("SetAlias", rpb.SetAliasRequest(name=self.current.name, alias=alias,
                                                                   version=str(version)), f"Setting {alias}")
        if response is not None:
            ui.notify(f"{self.current.name}@{alias} now points to v{version}", type="positive")
            await self.open(self.current.name)

    async def delete_alias(self, alias: str) -> None:
        if self.current is None:
            return
        response = await attempt("DeleteAlias", rpb.DeleteAliasRequest(name=self.current.name, alias=alias),
                                 f"Removing {alias}")
        if response is not None:
            await self.open(self.current.name)

    async def on_csv(self, e) -> None:
        self.predict_form["text"] = (await e.file.read()).decode("utf-8", errors="replace")
        e.sender.reset()
        ui.notify(f"Loaded {e.file.name}; press Predict.")

    def refuse(self, message: str) -> None:
        self.predict_error.text = message
        ui.notify(message, type="warning", multi_line=True)

    async def predict(self) -> None:
        """The pasted or uploaded rows, read by the CLI's rules."""
        ref = self.predict_form["model"]
        if not ref:
            self.refuse("Choose a model first.")
            return
        try:
            names, rows, _ignored = parse_rows(self.predict_form["text"] or "", self.input_columns())
        except BadTable as exc:
            self.refuse(str(exc))
            return
        await self.send(ref, names, rows)

    async def predict_row(self) -> None:
        """The one row of the form's inputs."""
        ref, columns = self.predict_form["model"], self.input_columns()
        if not ref or not columns:
            self.refuse("Choose a model first.")
            return
        try:
            row = form_row(self.row_values, columns)
        except BadTable as exc:
            self.refuse(str(exc))
            return
        await self.send(ref, [c.name for c in columns], [row])

    async def send(self, ref: str, names: list[str], rows: list[list[str]]) -> None:
        """Predicts the rows; the registry reports the columns the model ignores."""
        self.predict_error.text = ""
        self.predict_button.props("loading")
        response = await attempt("Predict", rpb.PredictRequest(model=ref, columns=names, rows=feature_rows(rows)),
                                 "Predicting", timeout=120)
        self.predict_button.props(remove="loading")
        if response is None:
            return
        self.results = result_rows(rows, names, response)
        keys = list(self.results[0]) if self.results else []
        self.predictions.columns = [{"name": k, "label": k, "field": k, "align": "right" if k != "probabilities"
                                     else "left", "classes": "text-weight-bold" if k == "prediction" else "",
                                     "headerClasses": "text-primary" if k == "prediction" else ""} for k in keys]
        self.predictions.rows = self.results
        self.predict_info.text = f"{len(self.results)} predictions from {ref} (version {response.version})" + (
            f"; ignored columns the model does not use: {', '.join(response.ignored_columns)}"
            if response.ignored_columns else "")
        self.download_button.set_visibility(True)

    def download(self) -> None:
        ui.download.content(to_csv(self.results).encode(), "predictions.csv", "text/csv")


async def page(name: str = ""):
    layout("Models", active="Models")
    view = ModelsPage(name)
    view.build()
    ui.context.client.page_view = view  # for tests
    await view.refresh()
