"""Tune: pick a dataset, set ranges (checked by the tuning service as you type), sampler,
pruner and budget, then start the study and open its live page."""

from __future__ import annotations

import asyncio

import grpc
from nicegui import background_tasks, ui

from kubetune.data.v1 import data_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from ui.calls import attempt
from ui.context import ctx
from ui.gateway_client import error_text
from ui.layout import layout, section
from ui.search_form import CHOICES, FLOAT, ParamRow, default_rows, search_space, size_text
from ui.session import show_if

# The service is asked once the user pauses this long: not at every keystroke.
DEBOUNCE_S = 0.3
# What a validate-only CreateStudy answers for a spec the service refuses.
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION}

SAMPLERS = {pb.SAMPLER_TPE: "TPE (Bayesian, default)", pb.SAMPLER_RANDOM: "Random", pb.SAMPLER_CMAES: "CMA-ES",
            pb.SAMPLER_QMC: "Quasi-Monte Carlo", pb.SAMPLER_NSGA2: "NSGA-II", pb.SAMPLER_GRID: "Grid (choices only)"}
PRUNERS = {pb.PRUNER_MEDIAN: "Median (default)", pb.PRUNER_HYPERBAND: "Hyperband",
           pb.PRUNER_SUCCESSIVE_HALVING: "Successive halving", pb.PRUNER_NONE: "None"}
METRICS = {"val_loss": "val_loss", "val_accuracy": "val_accuracy (classification)", "train_loss": "train_loss",
           "duration_s": "duration_s", "n_params": "n_params"}


class TuneForm:
    def __init__(self, datasets: list[str], dataset: str):
        self.rows = default_rows()
        self.datasets = datasets
        self.values = {"dataset": dataset, "name": "", "sampler": pb.SAMPLER_TPE, "pruner": pb.PRUNER_MEDIAN,
                       "n_trials": 20, "max_parallel": 2, "max_epochs": 20, "patience": 5, "seed": None, "cv_folds": 0,
                       "metrics": ["val_loss"], "warmup": 1}
        # Each metric's direction, kept when the metric is taken out and put back.
        self.maximize = {m: m == "val_accuracy" for m in METRICS}
        self.row_errors: dict[str, ui.label] = {}
        # The service's last refusal: (the row it names or "", its message); shown until
        # the service answers for the spec as it is now.
        self.refusal: tuple[str, str] | None = None
        self._asking: asyncio.Task | None = None

    def spec(self) -> pb.StudySpec:
        v = self.values
        return pb.StudySpec(
            name=(v["name"] or "").strip(), dataset=v["dataset"] or "", search_space=search_space(self.rows),
            objectives=[pb.Objective(metric=m, direction=pb.DIRECTION_MAXIMIZE if self.maximize[m] else
                                     pb.DIRECTION_MINIMIZE) for m in v["metrics"] or []],
            sampler=v["sampler"], pruner=v["pruner"], n_trials=int(v["n_trials"] or 0),
            max_parallel=int(v["max_parallel"] or 0), max_epochs=int(v["max_epochs"] or 0),
            early_stopping_patience=int(v["patience"] or 0), seed=int(v["seed"] or 0),
            pruner_warmup_epochs=int(v["warmup"] or 0), cv_folds=int(v.get("cv_folds") or 0),
        )

    def unfinished(self) -> list[str]:
        """What the form lacks before the service can judge it: rows without a shape, no
        dataset, no objective."""
        out = [e for e in (r.error() for r in self.rows) if e]
        v = self.values
        if not v["dataset"]:
            out.append("dataset: pick a dataset")
        if not v["metrics"]:
            out.append("objectives: pick at least one metric")
        return out

    def errors(self) -> list[str]:
        """What stops the study now: an unfinished form, else the service's refusal."""
        out = self.unfinished()
        if not out and self.refusal:
            row, message = self.refusal
            out.append(f"{row}: {message}" if row else message)
        return out

    def build(self) -> None:
        with ui.column().classes("w-full max-w-screen-xl mx-auto p-4 gap-4"):
            ui.label("Start a study").classes("text-h5")
            with section("Data and study"):
                with ui.row().classes("w-full gap-4 items-start"):
                    ui.select(self.datasets, label="Dataset", with_input=True, on_change=self.check).bind_value(
                        self.values, "dataset").classes("w-72").props("outlined").mark("dataset")
                    ui.input("Study name (optional)", placeholder="made up when empty", on_change=self.check
                             ).bind_value(self.values, "name").classes("w-72").props("outlined").mark("study-name")
                    with ui.column().classes("gap-0"):
                        ui.select(METRICS, label="Objectives", multiple=True, on_change=self.objectives_changed
                                  ).bind_value(self.values, "metrics").classes("w-80").props(
                            "outlined dense use-chips").mark("objectives")
                        self.directions()
            with section("Search space", "ticked hyperparameters are searched; the rest keep their defaults"):
                with ui.grid(columns="auto 160px 1fr 1fr auto").classes("w-full items-center gap-x-4 gap-y-1"):
                    for text in ("", "hyperparameter", "min / choices", "max", "log scale"):
                        ui.label(text).classes("text-caption text-grey-7")
                    for row in self.rows:
                        self.param_row(row)
                self.size_label = ui.label("").classes("text-body2 text-grey-9 q-mt-sm").mark("space-size")
            with section("Search and budget"):
                with ui.row().classes("w-full gap-4"):
                    ui.select(SAMPLERS, label="Sampler", on_change=self.check).bind_value(
                        self.values, "sampler").classes("w-56").props("outlined")
                    ui.select(PRUNERS, label="Pruner", on_change=self.check).bind_value(
                        self.values, "pruner").classes("w-52").props("outlined")
                    for key, label, mark in (("n_trials", "Trials", "n-trials"),
                                             ("max_parallel", "At once", "max-parallel"),
                                             ("max_epochs", "Epochs per trial", "max-epochs"),
                                             ("patience", "Early-stopping patience", "patience"),
                                             ("warmup", "Pruner warm-up epochs", "warmup"),
                                             ("cv_folds", "Cross-validation folds (0: none)", "cv-folds"),
                                             ("seed", "Seed (empty: drawn per study)", "seed")):
                        ui.number(label, min=0, step=1, format="%d", on_change=self.check).bind_value(
                            self.values, key).classes("w-40").props("outlined").mark(mark)
            self.form_error = ui.label("").classes("text-negative whitespace-pre-line").mark("form-error")
            with ui.row().classes("items-center gap-4"):
                self.submit = show_if("editor", ui.button("Start study", icon="rocket_launch", on_click=self.start
                                                          ).props("size=lg").mark("start-study"))
                ui.label("The study's live page opens once it is created.").classes("text-grey-7")
        self.ready = True
        self.check()

    @ui.refreshable_method
    def directions(self) -> None:
        """Minimise or maximise, per chosen objective; several objectives draw a Pareto front."""
        for metric in self.values["metrics"] or []:
            with ui.row().classes("items-center gap-2"):
                ui.label(metric).classes("text-caption w-24")
                ui.toggle({False: "minimize", True: "maximize"}, value=self.maximize[metric],
                          on_change=lambda e, m=metric: self.set_direction(m, e.value)).props(
                    "dense no-caps size=sm").mark(f"direction-{metric}")
        if len(self.values["metrics"] or []) > 1:
            ui.label("several objectives: the study page shows their Pareto front").classes(
                "text-caption text-grey-7")

    def set_direction(self, metric: str, maximize: bool) -> None:
        self.maximize[metric] = bool(maximize)
        self.check()

    def objectives_changed(self, *_args) -> None:
        if len(self.values["metrics"] or []) > 1 and self.values["pruner"] != pb.PRUNER_NONE:
            # Optuna prunes single-objective studies only.
            self.values["pruner"] = pb.PRUNER_NONE
            ui.notify("Several objectives: pruning is switched off (Optuna prunes single-objective studies only).")
        self.directions.refresh()
        self.check()

    def param_row(self, row: ParamRow) -> None:
        ui.checkbox(value=row.enabled, on_change=self.check).bind_value(row, "enabled").mark(f"{row.name}-on")
        with ui.column().classes("gap-0"):
            ui.label(row.name).classes("text-body2 text-weight-medium")
            ui.label(row.help).classes("text-caption text-grey-7")
        if row.kind == CHOICES:
            if row.options:
                ui.select(row.options, multiple=True, label="choices", on_change=self.check).bind_value(
                    row, "choices").props("outlined dense use-chips").classes("col-span-2").mark(f"{row.name}-choices")
            else:
                field = ui.input("choices, comma separated", value=", ".join(row.choices)).props(
                    "outlined dense").classes("col-span-2").mark(f"{row.name}-choices")
                field.on_value_change(lambda e, r=row: self.set_choices(r, e.value))
            ui.label("")
        else:
            fmt = "%.6g" if row.kind == FLOAT else "%d"
            ui.number("min", format=fmt, on_change=self.check).bind_value(row, "low").props("outlined dense").mark(
                f"{row.name}-min")
            ui.number("max", format=fmt, on_change=self.check).bind_value(row, "high").props("outlined dense").mark(
                f"{row.name}-max")
            ui.checkbox("log", on_change=self.check).bind_value(row, "log").mark(f"{row.name}-log")
        self.row_errors[row.name] = ui.label("").classes("text-negative text-caption col-span-5 pl-10").mark(
            f"{row.name}-error")

    def set_choices(self, row: ParamRow, text: str) -> None:
        row.choices = [c.strip() for c in (text or "").split(",") if c.strip()]
        self.check()

    def check(self, *_args) -> None:
        if not getattr(self, "ready", False):
            return
        self.show()
        if self._asking is not None:
            self._asking.cancel()
        if not self.unfinished():
            # The user's gateway taken here, in the page's context: the task runs outside it.
            self._asking = background_tasks.create(self.ask_service(ctx.gateway), name="validate study")

    async def ask_service(self, gateway) -> None:
        """The tuning service's verdict on the spec as it is (CreateStudy, validate_only);
        cancelled by the next change, so one call goes out when the user pauses."""
        await asyncio.sleep(DEBOUNCE_S)
        try:
            await gateway.call("CreateStudy", pb.CreateStudyRequest(spec=self.spec(), validate_only=True))
            self.refusal = None
        except grpc.aio.AioRpcError as exc:
            # Could not ask (the gateway down, a viewer's role): Start tries, and says why.
            self.refusal = refusal_of(error_text(exc)) if exc.code() in REFUSALS else None
        self.show()

    def show(self) -> None:
        refused_row = self.refusal[0] if self.refusal else ""
        for row in self.rows:
            label = self.row_errors[row.name]
            label.text = row.error() or (f"{row.name}: {self.refusal[1]}" if row.name == refused_row else "")
            label.set_visibility(bool(label.text))
        errors = self.errors()
        self.size_label.text = size_text(self.rows, {refused_row})
        self.form_error.text = "\n".join(errors)
        self.submit.set_enabled(not errors)

    async def start(self) -> None:
        errors = self.errors()
        if errors:
            self.form_error.text = "\n".join(errors)
            return
        self.submit.props("loading")
        response = await attempt("CreateStudy", pb.CreateStudyRequest(spec=self.spec()), "Creating the study")
        self.submit.props(remove="loading")
        if response is None:
            return
        ui.notify(f"Study {response.study.spec.name or response.study.id} created", type="positive")
        ui.navigate.to(f"/study/{response.study.id}")


def refusal_of(message: str) -> tuple[str, str]:
    """(the search-space row a message names, the rest) or ("", the message): the service
    names the field first, as in `search_space.dropout: min 0.6 is greater than max 0.4`."""
    field, _, rest = message.partition(": ")
    if field.startswith("search_space.") and rest:
        return field.removeprefix("search_space."), rest
    return "", message


def dataset_options(datasets) -> list[str]:
    """Each dataset by name (its latest version), then each older version by `name@version`."""
    out = []
    for d in datasets:
        out.append(d.name)
        out += [f"{d.name}@{v.version}" for v in d.versions[1:]]
    return out


async def page(dataset: str = ""):
    layout("Tune", active="Tune")
    response = await attempt("ListDatasets", data_pb2.ListDatasetsRequest(), "Loading datasets")
    options = dataset_options(response.datasets) if response else []
    if dataset and dataset not in options:
        options.append(dataset)
    # The demo with real signal first (`kubetune up` registers it); `sample` learns nothing.
    chosen = dataset or next((d for d in ("diabetes", "sample") if d in options), options[0] if options else None)
    form = TuneForm(options, chosen)
    form.build()
    ui.context.client.page_view = form  # for tests
    if not options:
        ui.notify("No datasets yet: register one on the Data page first.", type="warning")
