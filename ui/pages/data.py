"""Data: register a dataset from S3 or a path, or upload a file; list datasets and
their versions; preview rows and per-column statistics with histograms."""

from __future__ import annotations

import contextlib

from nicegui import background_tasks, ui

from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2
from kubetune_common import subjects
from ui import charts
from ui.calls import attempt
from ui.context import ctx
from ui.dataset_upload import name_from_filename, upload
from ui.formatting import number, when
from ui.gateway_client import error_text
from ui.layout import layout, section
from ui.session import may, show_if

MISSING = {data_pb2.MISSING_POLICY_IMPUTE: "keep: the model imputes them",
           data_pb2.MISSING_POLICY_DROP_ROWS: "drop rows with missing values",
           data_pb2.MISSING_POLICY_REFUSE: "refuse the file"}
KIND_LABELS = {data_pb2.COLUMN_KIND_NUMERIC: "numeric", data_pb2.COLUMN_KIND_CATEGORICAL: "categorical",
               data_pb2.COLUMN_KIND_BOOLEAN: "boolean"}
ROLE_LABELS = {data_pb2.COLUMN_ROLE_TARGET: "target", data_pb2.COLUMN_ROLE_EXCLUDED: "excluded",
               data_pb2.COLUMN_ROLE_INDEX: "index"}
TYPE_CHOICES = {"numeric": "numeric", "categorical": "categorical", "boolean": "boolean", "exclude": "exclude"}
COLUMN_COLUMNS = [
    {"name": "name", "label": "Column", "field": "name", "align": "left"},
    {"name": "type", "label": "Type", "field": "type", "align": "left"},
    {"name": "missing", "label": "Missing", "field": "missing", "align": "right"},
    {"name": "distinct", "label": "Distinct", "field": "distinct", "align": "right"},
    {"name": "note", "label": "Why", "field": "note", "align": "left"},
]
TASKS = {data_pb2.TASK_KIND_UNSPECIFIED: "detect from the target", data_pb2.TASK_KIND_REGRESSION: "regression",
         data_pb2.TASK_KIND_CLASSIFICATION: "classification"}
TASK_NAMES = {data_pb2.TASK_KIND_REGRESSION: "regression", data_pb2.TASK_KIND_CLASSIFICATION: "classification"}
LAYOUTS = {data_pb2.LAYOUT_XY_FOLDER: "X/y folder", data_pb2.LAYOUT_SINGLE_TABLE: "single table"}
DATASET_COLUMNS = [
    {"name": "name", "label": "Dataset", "field": "name", "align": "left", "sortable": True},
    {"name": "version", "label": "Latest version", "field": "version", "align": "left"},
    {"name": "versions", "label": "Versions", "field": "versions", "align": "right"},
    {"name": "rows", "label": "Rows", "field": "rows", "align": "right"},
    {"name": "features", "label": "Features", "field": "features", "align": "right"},
    {"name": "target", "label": "Target", "field": "target", "align": "left"},
    {"name": "task", "label": "Task", "field": "task", "align": "left"},
    {"name": "size", "label": "Size", "field": "size", "align": "right"},
    {"name": "created", "label": "Registered", "field": "created", "align": "left"},
]
S3_HINTS = """
**Sources.** `s3://bucket/prefix/` holding `X.csv` (index column first) and `y.csv`; or one table,
`s3://bucket/key.csv` or `.parquet`, with its target column named below; or a path on the data service's
machine (`/data/x.csv`, `file:///...`) where local paths are allowed.

**Credentials and endpoint.** The data service reads S3 with its own credentials: `AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` (or an IAM role) in its environment. For MinIO or another S3-compatible store set
`KUBETUNE_DATA_S3_ENDPOINT_URL` (e.g. `http://minio:9000`) on the data service. Nothing secret is typed here.
"""


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def dataset_rows(datasets) -> list[dict]:
    rows = []
    for d in datasets:
        if not d.versions:
            continue
        v = d.versions[0]
        features = sum(1 for c in v.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE)
        rows.append({"name": d.name, "version": v.version, "versions": len(d.versions), "rows": v.row_count,
                     "features": features, "target": v.target, "task": TASK_NAMES.get(v.task_kind, ""),
                     "size": human_bytes(v.size_bytes), "created": when(v.created_at)})
    return rows


class DataPage:
    def __init__(self):
        self.datasets: dict[str, data_pb2.Dataset] = {}
        self.form = {"name": "", "uri": "", "target": "", "missing": data_pb2.MISSING_POLICY_IMPUTE,
                     "task": data_pb2.TASK_KIND_UNSPECIFIED, "categorical": "", "numeric": "", "exclude": ""}
        self.upload_form = {"name": "", "target": "", "missing": data_pb2.MISSING_POLICY_IMPUTE,
                            "task": data_pb2.TASK_KIND_UNSPECIFIED, "categorical": "", "numeric": "", "exclude": ""}
        self.selected = ""

    def build(self) -> None:
        self.root = ui.column().classes("w-full max-w-screen-2xl mx-auto p-4 gap-4")
        with self.root:
            ui.label("Data").classes("text-h5")
            with show_if("editor", section("Add a dataset")):
                with ui.tabs().classes("w-full").props("align=left no-caps") as tabs:
                    uri_tab = ui.tab("From S3 or a path", icon="cloud_download")
                    upload_tab = ui.tab("Upload a file", icon="upload_file")
                with ui.tab_panels(tabs, value=uri_tab).classes("w-full"):
                    with ui.tab_panel(uri_tab):
                        self.uri_form()
                    with ui.tab_panel(upload_tab):
                        self.file_form()
            with section("Datasets", "click one to preview it"):
                self.table = ui.table(columns=DATASET_COLUMNS, rows=[], row_key="name").classes("w-full").props(
                    "flat dense").mark("datasets-table")
                self.table.on("rowClick", lambda e: self.preview(e.args[1]["name"]))
                self.empty = ui.label("No datasets yet.").classes("text-grey-7")
            self.preview_card = section("Preview")
            with self.preview_card:
                with ui.row().classes("items-center gap-4"):
                    self.version_select = ui.select([], label="Version", on_change=self.on_version).props(
                        "outlined dense").classes("w-80").mark("version-select")
                    self.version_info = ui.label("").classes("text-grey-8")
                    ui.space()
                    self.tune_button = show_if("editor", ui.button("Tune on this dataset", icon="tune").props("outline"))
                ui.label("Columns").classes("text-subtitle1")
                self.columns_table = ui.table(columns=COLUMN_COLUMNS, rows=[], row_key="name").classes(
                    "w-full column-types").props("flat dense").mark("column-types")
                with ui.row().classes("items-center gap-3"):
                    self.retype_hint = ui.label(
                        "Change a column's type below and register again: a new version is made.").classes(
                        "text-grey-8")
                    self.retype_button = ui.button("Register again with these types", icon="published_with_changes",
                                                   on_click=self.register_retyped).props("outline").mark(
                        "retype-button")
                self.type_choices: dict[str, str] = {}
                self.can_edit = may("editor")  # read at build: updates run outside the page's context
                self.retype_row = ui.row().classes("gap-3 flex-wrap")
                self.stats_grid = ui.grid(columns="repeat(auto-fill, minmax(260px, 1fr))").classes("w-full gap-3")
                self.rows_table = ui.table(columns=[], rows=[]).classes("w-full").props("flat dense").mark(
                    "preview-rows")
            self.preview_card.set_visibility(False)

    def options_fields(self, target: dict) -> None:
        ui.input("Target column (single table)", placeholder="e.g. price").bind_value(target, "target").props(
            "outlined dense").classes("w-56")
        ui.select(MISSING, label="Missing values").bind_value(target, "missing").props("outlined dense").classes(
            "w-64")
        ui.select(TASKS, label="Task").bind_value(target, "task").props("outlined dense").classes("w-56")
        for key, label, hint in (("categorical", "Categorical columns", "integers to read as categories"),
                                 ("numeric", "Numeric columns", "text to read as numbers"),
                                 ("exclude", "Excluded columns", "columns to leave out")):
            ui.input(label, placeholder="a, b").bind_value(target, key).props(
                f'outlined dense hint="{hint}"').classes("w-56").mark(f"{key}-columns")

    def uri_form(self) -> None:
        with ui.row().classes("w-full gap-3 items-start"):
            ui.input("Name", placeholder="lowercase, e.g. houses").bind_value(self.form, "name").props(
                "outlined dense").classes("w-56").mark("register-name")
            ui.input("Source URI", placeholder="s3://bucket/prefix/ or /path/to/data").bind_value(
                self.form, "uri").props("outlined dense").classes("w-96").mark("register-uri")
            self.options_fields(self.form)
        with ui.expansion("Where can data come from? (S3 endpoint and credentials)", icon="help_outline").classes(
                "w-full text-grey-8"):
            ui.markdown(S3_HINTS)
        with ui.row().classes("items-center gap-4 w-full"):
            self.register_button = ui.button("Register", icon="add", on_click=self.register).mark("register-button")
            self.download_progress = ui.linear_progress(value=0, show_value=False).classes("w-80")
            self.download_label = ui.label("").classes("text-grey-8")
            self.download_progress.set_visibility(False)
        self.register_error = ui.label("").classes("text-negative whitespace-pre-line").mark("register-error")

    def file_form(self) -> None:
        with ui.row().classes("w-full gap-3 items-start"):
            ui.input("Name", placeholder="from the file name when empty").bind_value(self.upload_form, "name").props(
                "outlined dense").classes("w-56").mark("upload-name")
            self.options_fields(self.upload_form)
        ui.label("Drop a .csv or .parquet file below (one table; name its target column above).").classes(
            "text-grey-8")
        ui.upload(on_upload=self.on_upload, auto_upload=True, label="Drop a file or click to choose",
                  max_files=1).props('accept=".csv,.parquet,.pq" flat bordered').classes("w-full max-w-xl").mark(
            "upload")
        with ui.row().classes("items-center gap-4"):
            self.upload_progress = ui.linear_progress(value=0, show_value=False).classes("w-80")
            self.upload_label = ui.label("").classes("text-grey-8")
        self.upload_progress.set_visibility(False)
        self.upload_error = ui.label("").classes("text-negative whitespace-pre-line").mark("upload-error")

    @staticmethod
    def options(form: dict) -> data_pb2.IngestOptions:
        def names(key: str) -> list[str]:
            return [n.strip() for n in (form.get(key) or "").split(",") if n.strip()]

        return data_pb2.IngestOptions(target_column=(form["target"] or "").strip(), missing_policy=form["missing"],
                                      task_kind=form["task"], categorical_columns=names("categorical"),
                                      numeric_columns=names("numeric"), exclude_columns=names("exclude"))

    async def register(self) -> None:
        name, uri = (self.form["name"] or "").strip(), (self.form["uri"] or "").strip()
        problems = [p for p in ("" if name else "name: give the dataset a name",
                                "" if uri else "source URI: where is the data?") if p]
        self.register_error.text = "\n".join(problems)
        if problems:
            return
        self.register_button.props("loading")
        watcher = background_tasks.create(self.watch_download(name), name=f"download {name}")
        try:
            response = await ctx.gateway.call(
                "RegisterDataset", data_pb2.RegisterDatasetRequest(name=name, uri=uri, options=self.options(self.form)),
                timeout=600)
        except Exception as exc:  # noqa: BLE001 - shown inline and as a notification
            self.register_error.text = error_text(exc)
            ui.notify(f"Registering {name} failed: {error_text(exc)}", type="negative", multi_line=True)
            return
        finally:
            watcher.cancel()
            self.register_button.props(remove="loading")
            self.download_progress.set_visibility(False)
            self.download_label.text = ""
        await self.registered(response)

    async def watch_download(self, name: str) -> None:
        """Progress of the data service's download, from its events."""
        call = ctx.gateway.stream("WatchEvents", gateway_pb2.WatchEventsRequest(
            datasets=[name], kinds=[subjects.DOWNLOAD_PROGRESSED]))
        try:
            async for event in call:
                p = event.download_progressed
                self.download_progress.set_visibility(True)
                if p.bytes_total:
                    self.download_progress.value = p.bytes_done / p.bytes_total
                    self.download_label.text = f"downloaded {human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)}"
                else:
                    self.download_label.text = f"downloaded {human_bytes(p.bytes_done)}"
        except Exception:  # noqa: BLE001 - progress is a nicety; the registration reports errors
            return
        finally:
            await call.aclose()

    async def on_upload(self, e) -> None:
        file = e.file
        name = (self.upload_form["name"] or "").strip() or name_from_filename(file.name)
        header = data_pb2.UploadHeader(name=name, filename=file.name, options=self.options(self.upload_form))
        total = file.size()
        self.upload_error.text = ""
        self.upload_progress.set_visibility(True)
        self.upload_progress.value = 0

        def progress(sent: int, size: int) -> None:
            self.upload_progress.value = sent / size if size else 1
            self.upload_label.text = f"sent {human_bytes(sent)} of {human_bytes(size)} to the data service"

        try:
            response = await upload(ctx.gateway, header, file.iterate(), total, progress)
        except Exception as exc:  # noqa: BLE001 - shown inline and as a notification
            self.upload_error.text = error_text(exc)
            self.upload_label.text = ""
            ui.notify(f"Uploading {file.name} failed: {error_text(exc)}", type="negative", multi_line=True)
            return
        finally:
            e.sender.reset()
        self.upload_label.text = "validated and stored"
        await self.registered(response)

    async def registered(self, response) -> None:
        v = response.version
        verb = "registered" if response.created else "already registered (same bytes)"
        ui.notify(f"{v.name}@{v.version} {verb}: {v.row_count} rows", type="positive")
        self.register_error.text = ""
        await self.refresh()
        await self.preview(v.name, v.version)

    async def refresh(self) -> None:
        response = await attempt("ListDatasets", data_pb2.ListDatasetsRequest(), "Loading datasets")
        if response is None:
            return
        self.datasets = {d.name: d for d in response.datasets}
        self.table.rows = dataset_rows(response.datasets)
        self.empty.set_visibility(not response.datasets)

    async def preview(self, name: str, version: str = "") -> None:
        dataset = self.datasets.get(name)
        if dataset is None or not dataset.versions:
            return
        self.selected = name
        versions = {v.version: f"{v.version} · {when(v.created_at)}" + (" (latest)" if i == 0 else "")
                    for i, v in enumerate(dataset.versions)}
        version = version or dataset.versions[0].version
        self.version_select.set_options(versions, value=version)
        await self.show_version(name, version)

    async def on_version(self, e) -> None:
        if self.selected and e.value:
            await self.show_version(self.selected, e.value)

    async def show_version(self, name: str, version: str) -> None:
        ref = f"{name}@{version}"
        response = await attempt("PreviewDataset", data_pb2.PreviewDatasetRequest(ref=ref, rows=20, bins=20),
                                 f"Previewing {ref}")
        if response is None:
            return
        v = response.version
        self.preview_card.set_visibility(True)
        self.version_info.text = (f"{v.row_count} rows · {LAYOUTS.get(v.layout, '')} · target {v.target} "
                                  f"({TASK_NAMES.get(v.task_kind, '')}) · sha256 {v.content_sha256[:12]} · "
                                  f"from {v.source_uri}")
        self.tune_button.on_click(lambda: ui.navigate.to(f"/tune?dataset={ref}"))
        self.version = v
        self.columns_table.rows = column_rows(v)
        self.show_type_choices(v)
        self.rows_table.columns = [{"name": c, "label": c, "field": c, "align": "right"} for c in response.columns]
        self.rows_table.rows = [{c: cell_text(x, text) for c, x, text in zip(response.columns, row.values, row.cells)}
                                for row in response.rows]
        self.stats_grid.clear()
        target = v.target
        with self.stats_grid:
            for s in response.stats:
                with ui.card().classes("p-2").props("flat bordered"):
                    with ui.row().classes("items-center gap-2"):
                        ui.label(s.name).classes("text-weight-medium")
                        if s.name == target:
                            ui.badge("target", color="orange")
                    missing = f" · {s.missing} missing" if s.missing else ""
                    if s.categories:
                        ui.label(f"{len(s.categories)} most frequent categories{missing}").classes(
                            "text-caption text-grey-8")
                        ui.echart(charts.category_counts(list(s.categories), list(s.histogram_counts))).classes(
                            "w-full h-32")
                        continue
                    ui.label(f"min {number(s.min)} · max {number(s.max)} · mean {number(s.mean)} · "
                             f"std {number(s.std)}{missing}").classes("text-caption text-grey-8")
                    ui.echart(charts.histogram(list(s.histogram_counts), list(s.histogram_edges), "")).classes(
                        "w-full h-32")

    def show_type_choices(self, v: data_pb2.DatasetVersion) -> None:
        """A type selector per column the user may retype: features and excluded columns.
        A source kubetune can read again (S3, a path) is registered again with them; an
        upload must be uploaded again with the columns named in the form above."""
        self.retype_row.clear()
        self.type_choices = {}
        retypable = [c for c in v.columns if c.role in (data_pb2.COLUMN_ROLE_FEATURE, data_pb2.COLUMN_ROLE_EXCLUDED)]
        rereadable = v.source_uri.startswith(("s3://", "file://", "/"))
        self.retype_button.set_visibility(bool(retypable) and rereadable and self.can_edit)
        self.retype_row.set_visibility(bool(retypable) and rereadable and self.can_edit)
        self.retype_hint.text = ("Change a column's type below and register again: a new version is made."
                                 if rereadable else "To change column types, upload the file again with the columns "
                                 "named under Categorical, Numeric or Excluded columns above.")
        with self.retype_row:
            for c in retypable:
                current = "exclude" if c.role == data_pb2.COLUMN_ROLE_EXCLUDED else \
                    {data_pb2.COLUMN_KIND_CATEGORICAL: "categorical", data_pb2.COLUMN_KIND_BOOLEAN: "boolean"}.get(
                        c.kind, "numeric")
                self.type_choices[c.name] = current
                ui.select(TYPE_CHOICES, label=c.name, value=current,
                          on_change=lambda e, name=c.name: self.type_choices.__setitem__(name, e.value)).props(
                    "outlined dense").classes("w-44").mark(f"type-{c.name}")

    async def register_retyped(self) -> None:
        """Registers the shown version's source again with the types chosen above."""
        v = self.version
        chosen = self.type_choices
        options = data_pb2.IngestOptions(
            target_column=v.target if v.layout == data_pb2.LAYOUT_SINGLE_TABLE else "",
            missing_policy=v.missing_policy, task_kind=v.task_kind, split_seed=v.split_seed,
            categorical_columns=[n for n, t in chosen.items() if t == "categorical"],
            numeric_columns=[n for n, t in chosen.items() if t == "numeric"],
            exclude_columns=[n for n, t in chosen.items() if t == "exclude"])
        if any(t == "boolean" and name in self.excluded_names() for name, t in chosen.items()):
            ui.notify("An excluded column can be read as numeric or categorical; kubetune infers booleans.",
                      type="warning")
            return
        self.retype_button.props("loading")
        try:
            response = await ctx.gateway.call("RegisterDataset", data_pb2.RegisterDatasetRequest(
                name=v.name, uri=v.source_uri, options=options), timeout=600)
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            ui.notify(f"Registering {v.name} again failed: {error_text(exc)}", type="negative", multi_line=True)
            return
        finally:
            self.retype_button.props(remove="loading")
        await self.registered(response)


    def excluded_names(self) -> set[str]:
        return {c.name for c in self.version.columns if c.role == data_pb2.COLUMN_ROLE_EXCLUDED}


def column_rows(v: data_pb2.DatasetVersion) -> list[dict]:
    """Each column's type as the model will read it, and why where kubetune decided."""
    rows = []
    for c in v.columns:
        kind = KIND_LABELS.get(c.kind, "") if c.role == data_pb2.COLUMN_ROLE_FEATURE else ROLE_LABELS.get(c.role, "")
        rows.append({"name": c.name, "type": kind, "missing": c.missing or "",
                     "distinct": c.distinct or "", "note": c.note})
    return rows


def cell_text(value: float, text: str) -> str:
    return text if value != value else number(value, 5)  # NaN: a category or a missing value


async def page():
    layout("Data", active="Data")
    view = DataPage()
    view.build()
    ui.context.client.page_view = view  # for tests
    await view.refresh()
    if view.datasets:
        with contextlib.suppress(Exception):
            await view.preview(next(iter(view.datasets)))
