"""Study (live): one WatchStudy stream per browser tab feeds the progress bar, the
trial table and the charts; no polling. The stream's task is cancelled when the tab
goes away for good.

Events are applied as they come but drawn at most every RENDER_EVERY_S: a chart or the
table is redrawn whole (every trial's curve, every row), so drawing per event cost
O(trials) per event in this process and in the browser. With hundreds of trials and
several epochs a second, a browser on a busy machine fell behind its own socket (20 s
of queued redraws) and NiceGUI reloaded the page (the soak test,
tests/reliability/test_soak.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import grpc
from nicegui import background_tasks, ui

from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common import quality
from ui import charts
from ui.calls import attempt
from ui.context import ctx
from ui.formatting import STATE_COLORS, STUDY_STATES, number, plural, study_name, when
from ui.gateway_client import error_text
from ui.layout import layout
from ui.session import may
from ui.study_state import LiveStudy

log = logging.getLogger(__name__)

TRIAL_COLUMNS = [
    {"name": "number", "label": "Trial", "field": "number", "align": "right", "sortable": True},
    {"name": "state", "label": "State", "field": "state", "align": "left", "sortable": True},
    {"name": "value", "label": "Value", "field": "value", "align": "right"},
    {"name": "epochs", "label": "Epochs", "field": "epochs", "align": "right"},
    {"name": "val_loss", "label": "Last val_loss", "field": "val_loss", "align": "right"},
    {"name": "params", "label": "Parameters", "field": "params", "align": "left",
     "style": "white-space: normal; max-width: 420px"},
    {"name": "duration", "label": "Duration", "field": "duration", "align": "right"},
    {"name": "worker", "label": "Worker", "field": "worker", "align": "left"},
]
RECONNECT_S = 2.0
SUMMARY_CATCH_UP = 5  # retries, a second apart, while the summary lags the events
# Workers write a running trial's curves every second (KUBETUNE_WORKER_CURVE_EVERY_S):
# epochs missing between a snapshot and the stream are read again this much later.
FILL_AFTER_S = 1.5
FILL_TRIES = 5
CHART_H = "h-80"
RENDER_EVERY_S = 0.3  # events arriving faster are drawn together (the live latency target is 0.5 s)
# Importances (fANOVA in the tuning service, over every finished trial) at most this often
# while trials finish; once more when the study completes.
SUMMARY_EVERY_S = 5.0


def mlflow_link(study: pb.Study) -> str:
    base = ctx.settings.mlflow_ui_url.rstrip("/")
    return f"{base}/#/experiments/{study.mlflow_experiment_id}" if study.mlflow_experiment_id else base


class StudyView:
    def __init__(self, study_id: str):
        self.study_id = study_id
        self.live: LiveStudy | None = None
        self.slice_param: str | None = None
        self.contour_params: list[str | None] = [None, None]
        self.curve_metric = "val_loss"
        self.summary_task: asyncio.Task | None = None
        self.summary_again = False
        self.summary_at = -math.inf  # when the last summary was asked for (monotonic)
        self.fill_task: asyncio.Task | None = None
        self.updates = 0  # events applied; the benchmark and tests read it
        # What events changed and is not drawn yet (see draw_soon).
        self.dirty: set[str] = set()
        self.draw_task: asyncio.Task | None = None
        self.drawn_at = -math.inf

    # Skeleton, filled in by render() once the snapshot is in.

    def build(self) -> None:
        self.client = ui.context.client
        self.client.on_connect(self.draw_soon)
        self.root = ui.column().classes("w-full max-w-screen-2xl mx-auto p-4 gap-4")
        with self.root:
            with ui.row().classes("w-full items-center gap-3"):
                self.title = ui.label(self.study_id).classes("text-h5")
                self.state_badge = ui.badge("…", color="grey").classes("text-sm").mark("study-state")
                ui.space()
                self.can_edit = may("editor")  # read at build: updates run outside the page's context
                self.stop_button = ui.button("Stop", icon="stop", on_click=self.stop).props("outline color=negative")
                self.resume_button = ui.button("Resume", icon="play_arrow", on_click=self.resume).props(
                    "outline color=primary")
                self.mlflow_url = ctx.settings.mlflow_ui_url
                self.mlflow_button = ui.button("Runs in MLflow", icon="open_in_new",
                                               on_click=lambda: ui.navigate.to(self.mlflow_url, new_tab=True)
                                               ).props("flat no-caps").mark("mlflow-link")
            self.subtitle = ui.label("").classes("text-grey-8")
            with ui.card().classes("w-full"):
                with ui.row().classes("w-full items-center gap-4"):
                    self.progress_label = ui.label("Loading…").classes("text-subtitle1").mark("progress-label")
                    ui.space()
                    self.best_label = ui.label("").classes("text-subtitle1 text-weight-medium").mark("best-label")
                self.progress = ui.linear_progress(value=0, show_value=False, size="14px").props(
                    "rounded instant-feedback")
                self.best_params = ui.label("").classes("text-caption text-grey-8")
                # The best trial's test metric beside the linear baseline's (from GetStudy).
                self.quality_label = ui.label("").classes("text-body2").mark("quality-label")
            with ui.grid(columns="repeat(auto-fit, minmax(480px, 1fr))").classes("w-full gap-4"):
                with ui.card():
                    self.history_chart = ui.echart(charts.history([], "value", False)).classes(
                        f"w-full {CHART_H} history-chart")
                with ui.card():
                    with ui.row().classes("w-full justify-end"):
                        ui.toggle({"val_loss": "validation", "train_loss": "training"}, value="val_loss",
                                  on_change=self.set_curve_metric).props("dense no-caps size=sm")
                    self.curves_chart = ui.echart(charts.learning_curves({})).classes(f"w-full {CHART_H} curves-chart")
                with ui.card():
                    self.importance_chart = ui.echart(charts.importances([])).classes(f"w-full {CHART_H} importance-chart")
                    self.importance_note = ui.label("").classes("text-caption text-grey-7")
                with ui.card():
                    self.parallel_chart = ui.echart(
                        charts.parallel_coordinates([], [], "value")).classes(f"w-full {CHART_H} parallel-chart")
                with ui.card():
                    self.slice_select = ui.select([], label="Parameter", on_change=self.set_slice_param).props(
                        "dense outlined").classes("w-48")
                    self.slice_chart = ui.echart(charts.slice_plot("", [], "value")).classes(f"w-full {CHART_H} slice-chart")
                with ui.card():
                    with ui.row().classes("gap-2"):
                        self.contour_selects = [
                            ui.select([], label=label, on_change=lambda e, i=i: self.set_contour_param(i, e.value)
                                      ).props("dense outlined").classes("w-48").mark(f"contour-{axis}")
                            for i, (axis, label) in enumerate((("x", "x parameter"), ("y", "y parameter")))]
                    self.contour_chart = ui.echart(charts.contour([], "", "", "value")).classes(
                        f"w-full {CHART_H} contour-chart")
                self.pareto_card = ui.card()
                with self.pareto_card:
                    self.pareto_chart = ui.echart(charts.pareto_front([], "", "")).classes(
                        f"w-full {CHART_H} pareto-chart")
                    self.pareto_note = ui.label("").classes("text-caption text-grey-7")
                self.pareto_card.set_visibility(False)
            with ui.card().classes("w-full"):
                ui.label("Trials").classes("text-subtitle1 text-weight-medium")
                self.table = ui.table(columns=TRIAL_COLUMNS, rows=[], row_key="number",
                                      pagination={"rowsPerPage": 20, "sortBy": "number", "descending": True}
                                      ).classes("w-full trials-table").props("flat dense")
                self.table.add_slot("body-cell-state", """
                    <q-td :props="props">
                      <q-badge :color="{running:'primary',complete:'positive',pruned:'warning',failed:'negative',
                                        queued:'grey'}[props.value] || 'grey'" :label="props.value" />
                      <q-icon v-if="props.row.best" name="star" color="amber" class="q-ml-xs"><q-tooltip>{{ props.row.best_tip }}</q-tooltip></q-icon>
                      <q-tooltip v-if="props.row.reason">{{ props.row.reason }}</q-tooltip>
                    </q-td>""")

    # From state to screen.

    def render(self) -> None:
        self.render_header()
        self.render_progress()
        self.render_table()
        self.render_history()
        self.render_curves()
        self.render_params()

    def render_header(self) -> None:
        live = self.live
        s = live.study
        state = STUDY_STATES.get(s.state, "unknown")
        self.title.text = study_name(s)
        self.state_badge.text = state
        self.state_badge.props(f"color={STATE_COLORS.get(state, 'grey')}")
        spec = s.spec
        objectives = ", ".join(f"{m} ({'maximize' if up else 'minimize'})" for m, up in live.objectives())
        self.subtitle.text = (f"dataset {s.dataset_version} · {objectives} · created {when(s.created_at)} · "
                              f"{spec.max_parallel or 1} at a time · id {s.id}")
        self.stop_button.set_visibility(s.state == pb.STUDY_STATE_RUNNING and self.can_edit)
        self.resume_button.set_visibility(s.state == pb.STUDY_STATE_STOPPED and self.can_edit)
        self.mlflow_url = mlflow_link(s)

    def render_progress(self) -> None:
        live = self.live
        self.progress.value = live.finished / live.total if live.total else 0
        self.progress_label.text = live.progress_text()
        if live.multi_objective:
            pareto = live.pareto_numbers()
            self.best_label.text = plural(len(pareto), "Pareto-optimal trial") if pareto else ""
            return
        best = live.best_trial()
        if best is not None:
            self.best_label.text = f"best {live.metric} {number(best.values[0])} (trial {best.number})"
            self.best_params.text = ", ".join(f"{k}={v}" for k, v in sorted(best.params.items()))

    def render_table(self) -> None:
        self.table.rows = self.live.table_rows()
        self.table.update()

    def render_history(self) -> None:
        live = self.live
        _replace(self.history_chart, charts.history(live.completed_values(), live.metric, live.maximize))

    def render_curves(self) -> None:
        live = self.live
        _replace(self.curves_chart, charts.learning_curves(live.curves(self.curve_metric), self.curve_metric,
                                                           highlight=live.running_labels()))

    def render_params(self) -> None:
        live = self.live
        params = live.searched_params()
        _replace(self.parallel_chart, charts.parallel_coordinates(live.parallel_rows(), params, live.metric,
                                                                  live.maximize))
        if params and self.slice_param not in params:
            self.slice_param = params[0]
        self.slice_select.set_options(params, value=self.slice_param)
        if self.slice_param:
            _replace(self.slice_chart, charts.slice_plot(self.slice_param, live.slice_points(self.slice_param),
                                                         live.metric))
        self.render_contour()
        self.render_pareto()

    def render_contour(self) -> None:
        live = self.live
        params = live.searched_params()
        for i in (0, 1):
            if self.contour_params[i] not in params:
                taken = {p for j, p in enumerate(self.contour_params) if j != i}
                self.contour_params[i] = next((p for p in params if p not in taken), None)
            self.contour_selects[i].set_options(params, value=self.contour_params[i])
        x, y = self.contour_params
        points = live.contour_points(x, y) if x and y and x != y else []
        _replace(self.contour_chart, charts.contour(points, x or "", y or "", live.metric, live.maximize))

    def set_contour_param(self, i: int, value: str | None) -> None:
        if value and value != self.contour_params[i] and self.live:
            self.contour_params[i] = value
            self.render_contour()

    def render_pareto(self) -> None:
        live = self.live
        objectives = live.objectives()
        self.pareto_card.set_visibility(len(objectives) > 1)
        if len(objectives) < 2:
            return
        (x, _), (y, _) = objectives[0], objectives[1]
        _replace(self.pareto_chart, charts.pareto_front(live.pareto_points(0, 1), x, y))
        directions = ", ".join(f"{'maximize' if m else 'minimize'} {name}" for name, m in objectives)
        self.pareto_note.text = (f"{directions}; marked: no other trial is at least as good on every objective"
                                 + (" (the first two objectives drawn)" if len(objectives) > 2 else ""))

    def set_slice_param(self, e) -> None:
        if e.value and e.value != self.slice_param and self.live:
            self.slice_param = e.value
            self.render_params()

    def set_curve_metric(self, e) -> None:
        self.curve_metric = e.value
        if self.live:
            self.render_curves()

    # Events.

    def on_event(self, event) -> None:
        kind = self.live.apply(event)
        self.updates += 1
        if kind == "epoch_completed":
            self.dirty |= {"curves", "table"}
            self.fill_holes()
        elif kind == "trial_started":
            self.dirty |= {"table", "progress"}
        elif kind in ("trial_completed", "trial_pruned", "trial_failed"):
            self.dirty |= {"progress", "table", "history", "curves", "params"}
            self.refresh_summary()
        elif kind.startswith("study_"):
            self.dirty |= {"header", "progress"}
            if kind == "study_completed":
                self.draw()  # the notification names the best trial
                ui.notify(f"Study {study_name(self.live.study)} completed: {self.best_label.text}", type="positive")
                self.refresh_summary(now=True)
        self.draw_soon()

    def draw_soon(self) -> None:
        """Draws what changed now if nothing was drawn for RENDER_EVERY_S, else once that
        much time has passed: a burst of events is drawn once, and the last is never left out.
        Not while the browser is away: a page closed (or navigated from) is kept for the UI's
        reconnect_s, 20 s, and drawing every closed page for that long cost as much as the
        open ones; what changed meanwhile is drawn when the browser comes back (on_connect)."""
        if not self.dirty or (self.draw_task is not None and not self.draw_task.done()):
            return
        if not self.client.has_socket_connection:
            return
        wait = self.drawn_at + RENDER_EVERY_S - time.monotonic()
        if wait <= 0:
            self.draw()
        else:
            self.draw_task = background_tasks.create(self._draw_after(wait), name=f"draw {self.study_id}")

    async def _draw_after(self, wait: float) -> None:
        await asyncio.sleep(wait)
        if not self.root.is_deleted:
            self.draw()

    def draw(self) -> None:
        dirty, self.dirty = self.dirty, set()
        self.drawn_at = time.monotonic()
        for part, render in (("header", self.render_header), ("progress", self.render_progress),
                             ("table", self.render_table), ("history", self.render_history),
                             ("curves", self.render_curves), ("params", self.render_params)):
            if part in dirty:
                render()

    async def watch(self) -> None:
        """Reads the study's stream until it ends (study completed) or the tab goes away."""
        with self.root:  # a background task has no slot of its own: notifications need one
            await self._watch()

    async def _watch(self) -> None:
        warned = False
        while True:
            call = ctx.gateway.stream("WatchStudy", pb.WatchStudyRequest(study_id=self.study_id))
            try:
                async for message in call:
                    if message.HasField("snapshot"):
                        self.live = LiveStudy.from_snapshot(message.snapshot)
                        self.dirty.clear()
                        self.drawn_at = time.monotonic()
                        self.render()
                        self.refresh_summary(now=True)
                        self.fill_holes()
                        if warned:
                            ui.notify("Live updates are back.", type="positive")
                            warned = False
                    elif self.live is not None:
                        self.on_event(message.event)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                    self.progress_label.text = f"Cannot show this study: {error_text(exc)}"
                    ui.notify(f"Cannot watch study: {error_text(exc)}", type="negative")
                    return
                if not warned:
                    ui.notify(f"Live updates interrupted ({error_text(exc)}); reconnecting…", type="warning")
                    warned = True
            finally:
                await call.aclose()
            await asyncio.sleep(RECONNECT_S)

    def fill_holes(self) -> None:
        """Reads the trials' curves again while some miss epochs; one request at a time."""
        if self.live is None or not self.live.has_holes():
            return
        if self.fill_task is not None and not self.fill_task.done():
            return
        self.fill_task = background_tasks.create(self._fill(), name=f"fill curves {self.study_id}")

    async def _fill(self) -> None:
        with self.root:
            for _ in range(FILL_TRIES):
                await asyncio.sleep(FILL_AFTER_S)
                try:
                    response = await ctx.gateway.call("ListTrials", pb.ListTrialsRequest(
                        study_id=self.study_id, with_curves=True))
                except Exception:  # noqa: BLE001 - the curves stay as they are; the next event tries again
                    log.info("could not read the curves of study %s again", self.study_id, exc_info=True)
                    return
                self.live.fill_holes(response.trials)
                self.dirty |= {"curves", "table"}
                self.draw_soon()
                if not self.live.has_holes():
                    return

    def refresh_summary(self, now: bool = False) -> None:
        """Importances come from the tracking service's summary; one request at a time,
        at most every SUMMARY_EVERY_S unless `now` (the first, and the study's end)."""
        if now:
            self.summary_at = -math.inf
        if self.summary_task is not None and not self.summary_task.done():
            self.summary_again = True
            return
        self.summary_task = background_tasks.create(self._summary(), name=f"summary {self.study_id}")

    async def _summary(self) -> None:
        with self.root:
            await self._summary_loop()

    async def _summary_loop(self) -> None:
        catch_up = 0
        while True:
            self.summary_again = False
            wait = self.summary_at + SUMMARY_EVERY_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if self.root.is_deleted:
                    return
            self.summary_at = time.monotonic()
            try:
                summary = await ctx.gateway.call("StudySummary", pb.StudySummaryRequest(study_id=self.study_id))
            except Exception as exc:  # noqa: BLE001 - a note on the chart, not an error dialog
                self.importance_note.text = f"Importances unavailable: {error_text(exc)}"
                return
            recorded = sum(1 for h in summary.history if h.state.lower() in ("complete", "completed"))
            known = self.live.study.counts.complete if self.live else 0
            running = self.live is not None and self.live.study.state == pb.STUDY_STATE_RUNNING
            if recorded < known and catch_up < SUMMARY_CATCH_UP and not running:
                # The tracking service records trial events a moment after they happen; while
                # trials still finish, the next refresh catches up anyway.
                catch_up += 1
                await asyncio.sleep(1.0)
                self.summary_at = -math.inf
                continue
            await self.refresh_quality()
            items = [(i.param, i.importance) for i in summary.importances]
            _replace(self.importance_chart, charts.importances(items))
            self.importance_note.text = "" if items else "Importances appear after a few trials complete."
            if not self.summary_again:
                return

    async def refresh_quality(self) -> None:
        try:
            study = (await ctx.gateway.call("GetStudy", pb.GetStudyRequest(study_id=self.study_id))).study
        except Exception:  # noqa: BLE001 - the line stays as it was; the stream reports errors
            return
        line = quality.headline(study.task_kind, dict(study.best_trial.metrics), dict(study.baseline.metrics),
                                study.baseline.model, cv_folds=study.spec.cv_folds)
        self.quality_label.text = line or (f"No baseline: {study.baseline.error}" if study.baseline.error else "")
        beats = quality.beats_baseline(study.task_kind, dict(study.best_trial.metrics), dict(study.baseline.metrics))
        self.quality_label.classes(replace="text-body2 " + ("text-negative" if beats is False else ""))

    async def stop(self) -> None:
        response = await attempt("StopStudy", pb.StopStudyRequest(study_id=self.study_id), "Stopping the study")
        if response is not None and self.live:
            self.live.study.state = response.study.state
            self.render_header()
            ui.notify("Study stopped: no new trials; running ones stop at their next epoch.")

    async def resume(self) -> None:
        response = await attempt("ResumeStudy", pb.ResumeStudyRequest(study_id=self.study_id), "Resuming the study")
        if response is not None and self.live:
            was_done = self.live.study.state == pb.STUDY_STATE_COMPLETED
            self.live.study.state = response.study.state
            self.render_header()
            ui.notify("Study resumed.")
            if was_done:
                self.start_watching()

    def start_watching(self) -> None:
        task = background_tasks.create(self.watch(), name=f"watch {self.study_id}")
        ui.context.client.on_delete(task.cancel)


def _replace(chart: ui.echart, options: dict) -> None:
    chart.options.clear()
    chart.options.update(options)
    chart.update()


async def page(study_id: str):
    layout("Study")
    view = StudyView(study_id)
    view.build()
    view.start_watching()
    ui.context.client.page_view = view  # for tests and the latency benchmark
