"""Experiments: runs by date, experiment and study; filtered and sorted on the server,
a page at a time; selected runs compared (curves on one chart, params side by side)
and registered as models."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from nicegui import background_tasks, ui

from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2 as tpb
from kubetune.tuning.v1 import tuning_pb2
from kubetune_common import quality
from ui import charts
from ui.calls import attempt, notify_error
from ui.context import ctx
from ui.formatting import study_name
from ui.layout import layout, section
from ui.run_table import (
    METRICS, OPS, PARAMS, Filter, Pager, RunQuery, columns_for, compare_rows, ordered_keys, run_row,
)
from ui.session import show_if

PAGE_SIZES = [25, 50, 100, 200]
CURVE_POINTS = 500
COMPARE_SLOT = """
<q-tr :props="props" :class="{'bg-amber-1': props.row.kind === 'differs', 'text-grey-7': props.row.kind === 'same'}">
  <q-td v-for="col in props.cols" :key="col.name" :props="props"
        :class="col.name === 'key' ? 'text-weight-medium' : ''">
    {{ col.value }}
    <q-badge v-if="col.name === 'key' && props.row.kind === 'metric'" color="primary" label="metric" class="q-ml-xs"/>
    <q-badge v-if="col.name === 'key' && props.row.kind === 'differs'" color="orange" label="differs" class="q-ml-xs"/>
  </q-td>
</q-tr>"""


def parse_range(value) -> tuple[date | None, date | None]:
    """ui.date's value in range mode: {'from': ..., 'to': ...}, or one day as a string."""
    if not value:
        return None, None
    if isinstance(value, str):
        d = date.fromisoformat(value.replace("/", "-"))
        return d, d
    return (date.fromisoformat(value["from"].replace("/", "-")), date.fromisoformat(value["to"].replace("/", "-")))


class ExperimentsPage:
    def __init__(self, study: str = ""):
        self.query = RunQuery(study_id=study)
        self.pager = Pager(self.query)
        self.studies: dict[str, tuning_pb2.Study] = {}
        self.experiments: dict[str, tpb.Experiment] = {}
        self.metric_keys: set[str] = set()
        self.param_keys: set[str] = set()
        self.labels: dict[str, str] = {}
        self.filter_form = {"kind": "metric", "key": "val_loss", "op": "<", "value": ""}
        self.range_text = {"value": ""}
        self.pagination: dict = {}

    # Layout.

    def build(self) -> None:
        self.root = ui.column().classes("w-full max-w-screen-2xl mx-auto p-4 gap-4")
        with self.root:
            ui.label("Experiments").classes("text-h5")
            with section("Which runs"):
                with ui.row().classes("w-full items-center gap-3"):
                    with ui.input("Runs started", placeholder="any time").bind_value(self.range_text, "value").props(
                            "outlined dense readonly").classes("w-64").mark("date-range") as date_input:
                        with ui.menu().props("no-parent-event") as menu:
                            self.date = ui.date(on_change=self.on_dates).props("range")
                        with date_input.add_slot("append"):
                            ui.icon("event").on("click", menu.open).classes("cursor-pointer")
                    date_input.on("click", menu.open)
                    for label, days in (("Today", 0), ("7 days", 7), ("30 days", 30), ("Any time", None)):
                        ui.button(label, on_click=lambda d=days: self.preset(d)).props("flat dense no-caps")
                    self.experiment_select = ui.select({}, multiple=True, label="Experiments (all when empty)",
                                                       on_change=self.on_experiments).props(
                        "outlined dense use-chips clearable").classes("min-w-[280px]").mark("experiments")
                    self.study_select = ui.select({}, label="Study", with_input=True, clearable=True,
                                                  on_change=self.on_study).props("outlined dense").classes(
                        "w-72").mark("study-filter")
                    ui.switch("trial runs only", value=True, on_change=self.on_trials_only)
                self.quality_label = ui.label("").classes("text-body2").mark("study-quality")
                with ui.row().classes("w-full items-center gap-2"):
                    ui.label("Filter").classes("text-grey-8")
                    ui.select({"metric": "metric", "param": "param", "tag": "tag"}).bind_value(
                        self.filter_form, "kind").props("outlined dense").classes("w-28")
                    self.key_select = ui.select(METRICS + PARAMS, with_input=True, new_value_mode="add-unique").bind_value(
                        self.filter_form, "key").props("outlined dense").classes("w-44").mark("filter-key")
                    ui.select(list(OPS)).bind_value(self.filter_form, "op").props("outlined dense").classes("w-20")
                    ui.input("value").bind_value(self.filter_form, "value").props("outlined dense").classes(
                        "w-32").mark("filter-value").on("keydown.enter", self.add_filter)
                    ui.button("Add", icon="filter_alt", on_click=self.add_filter).props("flat").mark("add-filter")
                    self.filter_chips = ui.row().classes("gap-1")
            with section("Runs", "sort by clicking a column; select runs to compare or register"):
                with ui.row().classes("w-full items-center gap-3"):
                    self.summary = ui.label("").classes("text-grey-8").mark("runs-summary")
                    ui.space()
                    self.compare_button = ui.button("Compare", icon="compare_arrows", on_click=self.compare).mark(
                        "compare-button")
                    self.register_button = show_if("editor", ui.button(
                        "Register as models", icon="inventory_2", on_click=self.open_register).props("outline").mark(
                        "register-models-button"))
                self.table = ui.table(columns=columns_for([], []), rows=[], row_key="run_id", selection="multiple",
                                      pagination={"rowsPerPage": self.query.page_size, "page": 1, "rowsNumber": 0,
                                                  "sortBy": None, "descending": True},
                                      on_select=self.on_select).classes("w-full runs-table").props(
                    f"flat dense :rows-per-page-options='{PAGE_SIZES}' binary-state-sort")
                self.table.on("request", self.on_request)
                # Quasar echoes its own (stale) pagination once mounted; the server's is the truth
                # here: page moves and sorting arrive as `request` events.
                self.table.on_pagination_change(self.keep_pagination)
                self.table.on("rowDblclick", lambda e: self.open_study(e.args[1]))
                self.on_select(None)
            self.compare_card = section("Comparison")
            with self.compare_card:
                # Charts are made on the first comparison: the page opens without loading ECharts.
                self.charts_grid = ui.grid(columns="repeat(auto-fit, minmax(480px, 1fr))").classes("w-full gap-4")
                self.val_chart = self.train_chart = None
                self.compare_table = ui.table(columns=[], rows=[], row_key="key").classes("w-full").props(
                    "flat dense").mark("compare-table")
                self.compare_table.add_slot("body", COMPARE_SLOT)
            self.compare_card.set_visibility(False)

    # Loading.

    async def load_choices(self) -> None:
        since, until = self.query.since, self.query.until
        request = tpb.ListExperimentsRequest()
        if since:
            request.since.CopyFrom(self.query.request().since)
        if until:
            request.until.CopyFrom(self.query.request().until)
        experiments, studies = await asyncio.gather(
            attempt("ListExperiments", request, "Loading experiments"),
            attempt("ListStudies", tuning_pb2.ListStudiesRequest(), "Loading studies"))
        if experiments is not None:
            self.experiments = {e.id: e for e in experiments.experiments}
            self.experiment_select.set_options(
                {e.id: f"{e.name} ({e.run_count} runs)" for e in experiments.experiments},
                value=[e for e in self.query.experiment_ids if e in self.experiments])
        if studies is not None:
            self.studies = {s.id: s for s in studies.studies}
            if self.table.rows:  # loaded meanwhile: put the study names in
                for row in self.table.rows:
                    if row["study_id"] in self.studies:
                        row["study"] = study_name(self.studies[row["study_id"]])
                        row["label"] = f"{row['study']} #{row['trial']}"
                self.table.update()
            self.study_select.set_options({s.id: f"{study_name(s)} · {s.dataset_version}" for s in studies.studies},
                                          value=self.query.study_id or None)
            self.show_quality()

    async def load_choices_in(self, slot) -> None:
        with slot:  # a background task has no slot of its own: notifications need one
            await self.load_choices()

    async def load(self, page: int = 1) -> None:
        try:
            response = await self.pager.page(lambda r: ctx.gateway.call("ListRuns", r), page)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            notify_error("Loading runs", exc)
            return
        rows = self.rows_of(response.runs)
        for r in response.runs:
            self.metric_keys.update(r.metrics)
            self.param_keys.update(r.params)
        self.table.columns = columns_for(ordered_keys(self.metric_keys, METRICS), ordered_keys(self.param_keys, PARAMS))
        self.table.rows = rows
        self.pagination = {"rowsPerPage": self.query.page_size, "page": page, "rowsNumber": response.total,
                           "sortBy": self.query.sort_column or None, "descending": self.query.descending}
        self.table.pagination = dict(self.pagination)
        start = (page - 1) * self.query.page_size
        shown = f"{start + 1:,}–{start + len(rows):,}"
        self.summary.text = f"{response.total:,} runs" + (f" · showing {shown}" if rows else "")
        self.key_select.set_options(sorted(set(METRICS + PARAMS) | self.metric_keys | self.param_keys))

    def keep_pagination(self, e) -> None:
        if self.pagination and e.value != self.pagination:
            self.table.pagination = dict(self.pagination)
            self.table.update()

    def rows_of(self, runs) -> list[dict]:
        return [run_row(r, {sid: study_name(s) for sid, s in self.studies.items()}) for r in runs]

    async def reload(self) -> None:
        self.pager = Pager(self.query)
        await self.load(1)

    # Events.

    async def on_request(self, e) -> None:
        p = e.args["pagination"]
        size = p.get("rowsPerPage") or self.query.page_size
        sort = p.get("sortBy") or ""
        descending = bool(p.get("descending"))
        if size != self.query.page_size or sort != self.query.sort_column or descending != self.query.descending:
            self.query.page_size, self.query.sort_column, self.query.descending = size, sort, descending
            await self.reload()
            return
        await self.load(p.get("page") or 1)

    async def on_dates(self, e) -> None:
        self.query.since, self.query.until = parse_range(e.value)
        self.range_text["value"] = self.range_label()
        await self.load_choices()
        await self.reload()

    def range_label(self) -> str:
        s, u = self.query.since, self.query.until
        if not s:
            return ""
        return s.isoformat() if s == u else f"{s.isoformat()} – {u.isoformat()}"

    async def preset(self, days: int | None) -> None:
        if days is None:
            self.date.value = None
        else:
            today = date.today()
            start = today - timedelta(days=days)
            self.date.value = {"from": start.isoformat(), "to": today.isoformat()} if days else today.isoformat()

    async def on_experiments(self, e) -> None:
        self.query.experiment_ids = list(e.value or [])
        await self.reload()

    async def on_study(self, e) -> None:
        self.query.study_id = e.value or ""
        self.show_quality()
        await self.reload()

    def show_quality(self) -> None:
        """The chosen study's best trial on test beside its linear baseline."""
        study = self.studies.get(self.query.study_id)
        self.quality_label.text = "" if study is None else quality.headline(
            study.task_kind, dict(study.best_trial.metrics), dict(study.baseline.metrics), study.baseline.model,
            cv_folds=study.spec.cv_folds)

    async def on_trials_only(self, e) -> None:
        self.query.trials_only = bool(e.value)
        await self.reload()

    async def add_filter(self) -> None:
        f = self.filter_form
        key, value = (f["key"] or "").strip(), (f["value"] or "").strip()
        if not key or not value:
            ui.notify("A filter needs a key and a value.", type="warning")
            return
        self.query.filters.append(Filter(f["kind"], key, f["op"], value))
        f["value"] = ""
        self.render_filters()
        await self.reload()

    async def remove_filter(self, flt: Filter) -> None:
        self.query.filters.remove(flt)
        self.render_filters()
        await self.reload()

    def render_filters(self) -> None:
        self.filter_chips.clear()
        with self.filter_chips:
            for flt in self.query.filters:
                ui.chip(flt.label(), removable=True, color="blue-1").on(
                    "remove", lambda _e, x=flt: self.remove_filter(x))

    def on_select(self, _e) -> None:
        n = len(self.table.selected)
        self.compare_button.set_text(f"Compare {n} runs" if n else "Compare")
        self.compare_button.set_enabled(n >= 1)
        self.register_button.set_enabled(n >= 1)

    def open_study(self, row: dict) -> None:
        if row.get("study_id"):
            ui.navigate.to(f"/study/{row['study_id']}")

    # Comparing.

    async def compare(self) -> None:
        run_ids = [r["run_id"] for r in self.table.selected]
        if not run_ids:
            return
        histories, compared = await asyncio.gather(
            attempt("GetMetricHistories", tpb.GetMetricHistoriesRequest(
                run_ids=run_ids, keys=["val_loss", "train_loss"], max_points=CURVE_POINTS), "Loading curves"),
            attempt("CompareRuns", tpb.CompareRunsRequest(run_ids=run_ids), "Comparing runs"))
        if histories is None or compared is None:
            return
        labels = {r["run_id"]: r["label"] for r in self.table.selected}
        by_key: dict[str, dict[str, list[tuple[int, float]]]] = {"val_loss": {}, "train_loss": {}}
        for h in histories.histories:
            by_key.setdefault(h.key, {})[labels.get(h.run_id, h.run_id[:8])] = [(p.step, p.value) for p in h.points]
        val = charts.metric_lines(by_key["val_loss"], "Validation loss", "val_loss")
        train = charts.metric_lines(by_key["train_loss"], "Training loss", "train_loss")
        if self.val_chart is None:
            with self.charts_grid:
                self.val_chart = ui.echart(val).classes("w-full h-80 compare-val-chart")
                self.train_chart = ui.echart(train).classes("w-full h-80 compare-train-chart")
        else:
            _replace(self.val_chart, val)
            _replace(self.train_chart, train)
        columns, rows = compare_rows(compared, labels)
        self.compare_table.columns = columns
        self.compare_table.rows = rows
        self.compare_card.set_visibility(True)
        self.compare_card.run_method("scrollIntoView", {"behavior": "smooth"})

    # Registering.

    def open_register(self) -> None:
        selected = list(self.table.selected)
        if not selected:
            return
        entries = []
        with ui.dialog() as dialog, ui.card().classes("min-w-[560px]"):
            ui.label("Register models").classes("text-h6")
            ui.label("Each run becomes a new version of the model named. Runs must have logged a model.").classes(
                "text-grey-8")
            for row in selected:
                default = (row.get("dataset") or "model").split("@")[0]
                entry = {"run_id": row["run_id"], "name": default, "champion": len(selected) == 1}
                entries.append(entry)
                with ui.row().classes("items-center gap-3 w-full"):
                    ui.label(row["label"]).classes("w-32 text-weight-medium")
                    ui.label(row.get("metric:val_loss", "")).classes("w-20 text-grey-8")
                    ui.input("Model name").bind_value(entry, "name").props("outlined dense").classes("w-56").mark(
                        "model-name")
                    ui.checkbox("make champion").bind_value(entry, "champion")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat")
                ui.button("Register", icon="check", on_click=lambda: self.register(entries, dialog)).mark(
                    "confirm-register")
        dialog.open()

    async def register(self, entries: list[dict], dialog) -> None:
        done = []
        for entry in entries:
            name = (entry["name"] or "").strip()
            if not name:
                ui.notify("Every run needs a model name.", type="warning")
                return
        for entry in entries:
            response = await attempt("RegisterModel", registry_pb2.RegisterModelRequest(
                run_id=entry["run_id"], name=entry["name"].strip(), alias="champion" if entry["champion"] else ""),
                f"Registering {entry['name']}", timeout=120)
            if response is not None:
                v = response.version
                done.append(f"{v.name} v{v.version}")
        if done:
            dialog.close()
            ui.notify(f"Registered {', '.join(done)}; see the Models page.", type="positive")


def _replace(chart, options: dict) -> None:
    chart.options.clear()
    chart.options.update(options)
    chart.update()


async def page(study: str = ""):
    layout("Experiments", active="Experiments")
    view = ExperimentsPage(study)
    view.build()
    ui.context.client.page_view = view  # for tests
    # The page goes out with its first rows; the choices (experiments, studies) follow over the
    # open connection: they only label the runs, and listing studies costs more than the rows.
    await view.load(1)
    background_tasks.create(view.load_choices_in(view.root), name="experiments choices")
