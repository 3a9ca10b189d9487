"""The UI's pure parts: live study state, chart data, search-space checks, run paging,
prediction rows, the health chip. No platform needed."""

from __future__ import annotations

import math

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import hyperparams
from kubetune.events.v1 import events_pb2 as ev
from kubetune.gateway.v1 import gateway_pb2
from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2 as tpb
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common.prediction_input import BadTable, Column
from ui import charts
from ui.dataset_upload import name_from_filename
from ui.layout import health_summary
from ui.pages.tune import refusal_of
from ui.predict_rows import form_row, parse_rows, result_rows, to_csv
from ui.run_table import Filter, Pager, RunQuery, compare_rows, run_row
from ui.search_form import default_rows, size_text
from ui.study_state import LiveStudy


def snapshot(n_trials=3, maximize=False) -> pb.StudySnapshot:
    spec = pb.StudySpec(name="s", dataset="sample", n_trials=n_trials, search_space=[
        pb.ParamSpec(name="learning_rate", float_range=pb.FloatRange(low=1e-4, high=1e-1, log=True)),
        pb.ParamSpec(name="optimizer", categorical=pb.Categorical(choices=["adam", "sgd"]))])
    if maximize:
        spec.objectives.append(pb.Objective(metric="val_accuracy", direction=pb.DIRECTION_MAXIMIZE))
    return pb.StudySnapshot(study=pb.Study(id="s", spec=spec, state=pb.STUDY_STATE_RUNNING))


def event(**payload) -> ev.Event:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ev.Event(id="e", time=ts, **payload)


def run_trial(live: LiveStudy, n: int, losses: list[float], lr: str, value: float | None = None, pruned=False):
    live.apply(event(trial_started=ev.TrialStarted(study_id="s", trial=n, params={"learning_rate": lr,
                                                                                   "optimizer": "adam"})))
    for i, loss in enumerate(losses):
        live.apply(event(epoch_completed=ev.EpochCompleted(study_id="s", trial=n, epoch=i, train_loss=loss * 1.1,
                                                           val_loss=loss)))
    if pruned:
        live.apply(event(trial_pruned=ev.TrialPruned(study_id="s", trial=n, epochs_done=len(losses), reason="median")))
    elif value is not None:
        live.apply(event(trial_completed=ev.TrialCompleted(study_id="s", trial=n, values=[value],
                                                           epochs_done=len(losses))))


def test_live_study_follows_events():
    live = LiveStudy.from_snapshot(snapshot())
    run_trial(live, 0, [1.0, 0.8], "0.01", value=0.8)
    assert live.progress_text() == "1/3 trials finished"
    run_trial(live, 1, [0.9], "0.001")
    assert live.study.counts.running == 1
    assert live.curves()["trial 1"] == [0.9]
    assert live.running_labels() == {"trial 1"}
    live.apply(event(trial_completed=ev.TrialCompleted(study_id="s", trial=1, values=[0.5], epochs_done=1)))
    run_trial(live, 2, [2.0, 3.0], "0.1", pruned=True)
    assert live.progress_text() == "3/3 trials finished · 1 pruned"
    assert live.best_trial().number == 1
    assert list(live.study.best_values) == [0.5]
    assert live.completed_values() == [(0, 0.8), (1, 0.5)]
    assert live.slice_points("learning_rate") == [("0.01", 0.8, 0), ("0.001", 0.5, 1)]
    rows = live.table_rows()
    assert [r["number"] for r in rows] == [2, 1, 0]
    assert rows[1]["best"] and rows[0]["state"] == "pruned" and rows[0]["reason"] == "median"
    live.apply(event(study_completed=ev.StudyCompleted(study_id="s")))
    assert live.study.state == pb.STUDY_STATE_COMPLETED


def test_live_study_epoch_before_start_and_gaps():
    live = LiveStudy.from_snapshot(snapshot())
    live.apply(event(epoch_completed=ev.EpochCompleted(study_id="s", trial=4, epoch=2, val_loss=0.3, train_loss=0.4)))
    curve = live.trials[4].val_loss_curve
    assert math.isnan(curve[0]) and curve[2] == 0.3
    assert live.trials[4].state == pb.TRIAL_STATE_RUNNING


def test_epochs_missed_between_snapshot_and_stream_are_filled():
    """The snapshot had epochs 0-1 of trial 0; the stream starts at epoch 4: the page reads
    the curves again and fills 2-3, keeping what the events brought."""
    snap = snapshot()
    snap.trials.append(pb.Trial(number=0, state=pb.TRIAL_STATE_RUNNING, val_loss_curve=[1.0, 0.9],
                                train_loss_curve=[1.1, 1.0], epochs_done=2))
    live = LiveStudy.from_snapshot(snap)
    assert not live.has_holes()
    live.apply(event(epoch_completed=ev.EpochCompleted(study_id="s", trial=0, epoch=4, val_loss=0.5, train_loss=0.6)))
    assert live.has_holes() and math.isnan(live.trials[0].val_loss_curve[2])
    early = pb.Trial(number=0, val_loss_curve=[1.0, 0.9, 0.8], train_loss_curve=[1.1, 1.0, 0.9], epochs_done=3)
    live.fill_holes([early])  # the worker has not written epoch 3 yet
    assert live.has_holes() and live.trials[0].val_loss_curve[2] == 0.8
    later = pb.Trial(number=0, val_loss_curve=[1.0, 0.9, 0.8, 0.7, 0.5], train_loss_curve=[1.1, 1.0, 0.9, 0.8, 0.6],
                     epochs_done=5)
    live.fill_holes([later])
    assert not live.has_holes()
    assert list(live.trials[0].val_loss_curve) == [1.0, 0.9, 0.8, 0.7, 0.5] and live.trials[0].epochs_done == 5
    assert live.curves("train_loss")["trial 0"] == pytest.approx([1.1, 1.0, 0.9, 0.8, 0.6])


def test_pareto_set_of_two_objectives():
    spec = pb.StudySpec(objectives=[pb.Objective(metric="val_loss", direction=pb.DIRECTION_MINIMIZE),
                                    pb.Objective(metric="val_accuracy", direction=pb.DIRECTION_MAXIMIZE)])
    snap = pb.StudySnapshot(study=pb.Study(id="s", spec=spec))
    values = {0: [0.5, 0.8], 1: [0.4, 0.7], 2: [0.6, 0.7], 3: [0.4, 0.7], 4: [0.3, 0.6]}
    for n, v in values.items():
        snap.trials.append(pb.Trial(number=n, state=pb.TRIAL_STATE_COMPLETE, values=v))
    snap.trials.append(pb.Trial(number=5, state=pb.TRIAL_STATE_PRUNED))
    live = LiveStudy.from_snapshot(snap)
    assert live.multi_objective and live.objectives() == [("val_loss", False), ("val_accuracy", True)]
    # 2 is beaten by 0 on both; 1 and 3 tie (neither beats the other): both stay.
    assert live.pareto_numbers() == {0, 1, 3, 4}
    rows = {r["number"]: r for r in live.table_rows()}
    assert {n for n, r in rows.items() if r["best"]} == {0, 1, 3, 4} and rows[0]["value"] == "0.5 / 0.8"
    opts = charts.pareto_front(live.pareto_points(), "val_loss", "val_accuracy")
    assert sorted(p[2] for p in opts["series"][0]["data"]) == [0, 1, 3, 4]
    assert [p[2] for p in opts["series"][1]["data"]] == [2]


def test_contour_interpolates_between_trials():
    points = [("0.001", "1", 1.0, 0), ("0.1", "3", 3.0, 1), ("0.01", "2", 2.0, 2)]
    opts = charts.contour(points, "learning_rate", "n_layers", "val_loss")
    surface, trials = opts["series"]
    assert opts["yAxis"]["data"] == ["1", "2", "3"] and len(opts["xAxis"]["data"]) == charts.CONTOUR_CELLS
    assert len(surface["data"]) == charts.CONTOUR_CELLS * 3
    assert all(1.0 <= c[2] <= 3.0 for c in surface["data"])
    corner = {(c[0], c[1]): c[2] for c in surface["data"]}
    assert corner[(0, 0)] < corner[(charts.CONTOUR_CELLS - 1, 2)]  # near trial 0 low, near trial 1 high
    assert sorted(p[3] for p in trials["data"]) == [0, 1, 2]
    assert opts["visualMap"]["min"] == 1.0 and opts["visualMap"]["max"] == 3.0
    assert "needs two completed trials" in charts.contour(points[:1], "learning_rate", "n_layers", "v")["title"]["subtext"]


def test_best_for_maximized_objective():
    live = LiveStudy.from_snapshot(snapshot(maximize=True))
    run_trial(live, 0, [0.5], "0.01", value=0.7)
    run_trial(live, 1, [0.5], "0.01", value=0.9)
    assert live.best_trial().number == 1
    assert charts.best_so_far(live.completed_values(), maximize=True) == [[0, 0.7], [1, 0.9]]


def test_history_chart_points_and_best_line():
    opts = charts.history([(0, 3.0), (1, 2.0), (2, 5.0), (3, float("nan"))], "val_loss", maximize=False)
    scatter, best = opts["series"]
    assert scatter["data"] == [[0, 3.0], [1, 2.0], [2, 5.0]]
    assert best["data"] == [[0, 3.0], [1, 2.0], [2, 2.0]]


def test_parallel_and_slice_charts_handle_categories_and_log_axes():
    rows = [(0, {"learning_rate": "0.01", "optimizer": "adam"}, 1.0),
            (1, {"learning_rate": "0.001", "optimizer": "sgd"}, 0.5)]
    opts = charts.parallel_coordinates(rows, ["learning_rate", "optimizer"], "val_loss")
    axes = opts["parallelAxis"]
    assert axes[0]["type"] == "log" and axes[1]["type"] == "category" and axes[1]["data"] == ["adam", "sgd"]
    assert opts["series"][0]["data"] == [[0.01, "adam", 1.0], [0.001, "sgd", 0.5]]
    s = charts.slice_plot("optimizer", [("adam", 1.0, 0), ("sgd", 0.5, 1)], "val_loss")
    assert s["xAxis"]["type"] == "category"
    assert charts.slice_plot("learning_rate", [("0.01", 1.0, 0)], "val_loss")["xAxis"]["type"] == "log"


def test_histogram_labels_bins_by_left_edge():
    opts = charts.histogram([1, 2], [0.0, 0.5, 1.0], "x")
    assert opts["xAxis"]["data"] == ["0", "0.5"] and opts["series"][0]["data"] == [1, 2]


def test_a_row_checks_its_shape_and_leaves_the_rules_to_the_service():
    """The ranges' rules are the tuning service's (asked with validate_only as the user
    types): a row checks only that it has a shape to send."""
    rows = {r.name: r for r in default_rows()}
    assert all(not r.error() for r in rows.values())
    rows["dropout"].low, rows["dropout"].high = 0.6, 0.3
    assert rows["dropout"].error() == ""  # the service's to refuse, in its words
    rows["units"].high = None
    assert rows["units"].error() == "units: enter both min and max"
    rows["n_layers"].high = 2.5
    assert "whole numbers" in rows["n_layers"].error()
    rows["n_layers"].enabled = False  # a switched-off row is not checked
    assert rows["n_layers"].error() == ""


def test_a_refusal_lands_on_the_row_it_names():
    assert refusal_of("search_space.dropout: min 0.6 is greater than max 0.4") == (
        "dropout", "min 0.6 is greater than max 0.4")
    assert refusal_of("sampler: CMA-ES cannot search categorical parameters") == (
        "", "sampler: CMA-ES cannot search categorical parameters")
    rows = default_rows()
    assert size_text(rows, {"dropout"}) == "4 hyperparameters searched; fix dropout to see the size of the space."


def test_space_size_counts_discrete_spaces():
    rows = default_rows()
    assert "unbounded" in size_text(rows)
    for r in rows:
        r.enabled = r.name in ("n_layers", "batch_size", "optimizer")
    assert size_text(rows) == "3 hyperparameters searched; 30 distinct combinations."


def test_space_size_counts_every_ticked_row():
    """Issue 16.10: the count is the number of ticked rows, a row being edited included."""
    rows = {r.name: r for r in default_rows()}
    ticked = [r for r in rows.values() if r.enabled]
    assert len(ticked) == 4 and size_text(list(rows.values())).startswith("4 hyperparameters searched;")
    rows["units"].high = None  # the max field cleared while typing
    assert size_text(list(rows.values())) == "4 hyperparameters searched; fix units to see the size of the space."
    rows["weight_decay"].enabled = True
    assert size_text(list(rows.values())).startswith("5 hyperparameters searched;")
    for r in rows.values():
        r.enabled = r.name == "n_layers"
    assert size_text(list(rows.values())) == "1 hyperparameter searched; 5 distinct combinations."


def test_nothing_ticked_says_the_default_space_is_searched():
    """With nothing ticked the tuning service searches its default space: the page says
    which, and its rows ticked by default are that space (one default for UI and CLI)."""
    rows = default_rows()
    assert [r.spec() for r in rows if r.enabled] == list(hyperparams.DEFAULT_SEARCH_SPACE)
    for r in rows:
        r.enabled = False
    assert size_text(rows) == ("Nothing ticked: the study searches the default space "
                               "(learning_rate, dropout, n_layers, units).")


def test_health_summary():
    parts = [gateway_pb2.PartHealth(name="gateway", status="SERVING"),
             gateway_pb2.PartHealth(name="registry", status="UNAVAILABLE", address="127.0.0.1:1")]
    ok, text, detail = health_summary(gateway_pb2.GetPlatformHealthResponse(parts=parts[:1], all_serving=True))
    assert ok and text == "all systems serving"
    ok, text, detail = health_summary(gateway_pb2.GetPlatformHealthResponse(parts=parts))
    assert not ok and text == "registry down" and "registry: UNAVAILABLE (127.0.0.1:1)" in detail
    ok, text, _ = health_summary(None, "connection refused")
    assert not ok and text == "gateway unreachable"


async def test_pager_reaches_any_page_in_one_call():
    calls = []

    async def fake(request: tpb.ListRunsRequest):
        offset = int(request.page_token or 0) + request.skip
        calls.append((offset, request.page_size))
        end = min(offset + request.page_size, 10_000)
        return tpb.ListRunsResponse(runs=[tpb.Run(run_id=str(i)) for i in range(offset, end)],
                                    next_page_token=str(end) if end < 10_000 else "", total=10_000)

    pager = Pager(RunQuery(page_size=50))
    first = await pager.page(fake, 1)
    assert first.runs[0].run_id == "0" and calls == [(0, 50)]
    last = await pager.page(fake, 200)
    assert last.runs[0].run_id == "9950" and len(last.runs) == 50 and calls[-1] == (9950, 50)
    await pager.page(fake, 7)
    assert len(calls) == 3 and calls[-1] == (300, 50) and pager.total == 10_000


def test_run_query_request():
    q = RunQuery(experiment_ids=["1"], filters=[Filter("metric", "val_loss", "<", "1.5")], sort_column="metric:val_loss",
                 descending=False, page_size=25)
    r = q.request("tok")
    assert r.sort_kind == tpb.FIELD_KIND_METRIC and r.sort_key == "val_loss" and not r.descending
    assert r.filters[0].op == tpb.FILTER_OP_LT and r.page_token == "tok" and r.page_size == 25 and r.trials_only
    q.sort_column = "started"
    assert q.request().sort_key == "started_at"


def test_run_rows_and_comparison():
    run = tpb.Run(run_id="abcdef123", name="s-trial-1", study_id="study1", trial=1, metrics={"val_loss": 0.123456},
                  params={"units": "32"})
    row = run_row(run, {"study1": "my-study"})
    assert row["study"] == "my-study" and row["metric:val_loss"] == "0.12346" and row["param:units"] == "32"
    compared = tpb.CompareRunsResponse(
        runs=[tpb.Run(run_id="a"), tpb.Run(run_id="b")],
        differing_params={"units": tpb.ValuesByRun(values={"a": "8", "b": "16"})},
        same_params={"optimizer": tpb.ValuesByRun(values={"a": "adam", "b": "adam"})},
        metrics={"val_loss": tpb.MetricsByRun(values={"a": 0.5})})
    columns, rows = compare_rows(compared, {"a": "A", "b": "B"})
    assert [c["label"] for c in columns] == ["", "A", "B"]
    assert [(r["key"], r["kind"]) for r in rows] == [("val_loss", "metric"), ("units", "differs"), ("optimizer", "same")]
    assert rows[0]["b"] == "–"


@pytest.mark.parametrize("text,names,expected", [
    ("x0,x1\n1,2\n3,4", ["x0", "x1"], [["1", "2"], ["3", "4"]]),
    ("x1,x0,target\n2,1,9", ["x1", "x0", "target"], [["2", "1", "9"]]),  # by name; the target is reported
    ("1;2\n3;4", ["x0", "x1"], [["1", "2"], ["3", "4"]]),  # no header: the first row is data, kept
    ("1,\nNA,red", ["x0", "x1"], [["1", ""], ["NA", "red"]]),  # missing values; a category
])
def test_parse_prediction_rows(text, names, expected):
    columns = [Column("x0"), Column("x1", "categorical")]
    got_names, rows, ignored = parse_rows(text, columns)
    assert (got_names, rows) == (names, expected)
    assert ignored == (["target"] if "target" in names else [])


@pytest.mark.parametrize("text,message", [
    ("", "The CSV is empty"),
    ("0,1,2", "The CSV has no header row (its first row is data) and 3 values per row"),
    ("x0,x1\n1,a\nb,c", "The CSV line 3, column 'x0': 'b' is not a number"),
    ("x1\nred", "The CSV: the model needs column x0, missing from the header (x1)"),
])
def test_prediction_rows_refused_with_the_reason(text, message):
    with pytest.raises(BadTable) as err:
        parse_rows(text, [Column("x0"), Column("x1", "categorical")])
    assert str(err.value).startswith(message)


def test_one_row_from_the_form():
    columns = [Column("age"), Column("city", "categorical"), Column("member", "boolean")]
    assert form_row({"age": "31", "city": "Paris"}, columns) == ["31", "Paris", ""]
    with pytest.raises(BadTable, match="age: 'old' is not a number"):
        form_row({"age": "old"}, columns)


def test_prediction_results_to_csv():
    response = registry_pb2.PredictResponse(model="m", version="1", predictions=[registry_pb2.Prediction(value=1.5)])
    rows = result_rows([["1", "2"]], ["x0", "x1"], response)
    assert rows == [{"row": 1, "x0": "1", "x1": "2", "prediction": "1.5"}]
    assert to_csv(rows).splitlines() == ["row,x0,x1,prediction", "1,1,2,1.5"]


def test_dataset_name_from_file_name():
    assert name_from_filename("My Houses (2024).csv") == "my-houses-2024"
    assert name_from_filename("...csv") == "dataset"


def test_the_tune_form_leaves_the_seed_to_the_service():
    """Issue 16.8: no fixed seed by default (the service draws one per study and records
    it); a seed typed in is sent as given, for reproducibility."""
    from ui.pages.tune import TuneForm

    form = TuneForm(["diabetes"], "diabetes")
    assert form.spec().seed == 0
    form.values["seed"] = 7
    assert form.spec().seed == 7
