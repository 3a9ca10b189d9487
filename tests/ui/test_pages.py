"""Each page's logic through NiceGUI's simulated user, against the real platform."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nicegui import ui
from nicegui.elements.upload_files import SmallFileUpload

from kubetune.registry.v1 import registry_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from tests.conftest import SEED
from testing.studies import completed, small_spec, wait_for_study

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")
# should_see looks every 0.1 s: the Tune page's checks wait for the user to pause, then
# ask the tuning service, on a machine that may be busy.
RETRIES_FOR_THE_SERVICE = 100


async def eventually(check, timeout: float = 120, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {check}")
        await asyncio.sleep(every)


def texts(user, marker: str) -> list[str]:
    return [getattr(e, "text", "") for e in user.find(marker=marker).elements]


@pytest.fixture(scope="session")
def done_study(gw) -> pb.Study:
    """A finished study of 4 trials, shared by the pages that read runs."""
    spec = small_spec(trials=4, epochs=3, parallel=2, name="ui-done")
    study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    return wait_for_study(gw, study.id, completed, timeout=300)


async def test_home_shows_health_studies_and_start(user, done_study):
    await user.open("/")
    await user.should_see("Platform")
    await user.should_see("gateway: serving")
    await user.should_see("tuning: serving")
    studies = user.find(marker="recent-studies").elements.pop()
    await eventually(lambda: studies.rows, timeout=10)
    assert any(r["name"] == "ui-done" and r["state"] == "completed" and r["progress"] == "4/4" for r in studies.rows), studies.rows
    user.find(marker="start-a-study").click()
    await user.should_see("Start a study")


async def test_status_chip_reports_health(user):
    await user.open("/tune")
    chip = user.find(marker="status-chip").elements.pop()
    await eventually(lambda: chip.text != "checking…", timeout=10)
    assert chip.text == "all systems serving" and chip.props["color"] == "positive"


async def test_tune_validates_inline_and_starts_a_study(user, gw):
    """The tuning service checks the spec as the user types (validate_only, debounced):
    its refusals land on the row they name, and Start waits for a spec it accepts."""
    asked = RETRIES_FOR_THE_SERVICE
    await user.open("/tune")
    await user.should_see("Search space")
    submit = user.find(marker="start-study").elements.pop()
    assert submit.enabled
    user.find(marker="dropout-min").clear().type("0.6")  # above max 0.4
    await user.should_see("dropout: min 0.6 is greater than max 0.4", retries=asked)
    assert not submit.enabled
    user.find(marker="dropout-min").clear().type("0.1")
    await user.should_not_see("dropout: min", retries=asked)
    user.find(marker="learning_rate-min").clear().type("-0.001")
    await user.should_see("learning_rate: a log scale needs min > 0 (got -0.001)", retries=asked)
    assert not submit.enabled
    user.find(marker="learning_rate-log").click()  # off the log scale: now the bound is the problem
    await user.should_see("learning_rate: range must lie within", retries=asked)
    user.find(marker="learning_rate-log").click()
    user.find(marker="learning_rate-min").clear().type("0.0001")
    await user.should_not_see("learning_rate:", retries=asked)
    assert submit.enabled
    await user.should_see("make the space unbounded")
    name = f"ui-tune-{int(time.time())}"
    user.find(marker="study-name").clear().type(name)
    for marker, value in (("n-trials", "2"), ("max-epochs", "2")):
        user.find(marker=marker).clear().type(value)
    user.find(marker="start-study").click()
    await user.should_see(f"Study {name} created", retries=50)  # a notification, then the live page
    await user.should_see("trials finished", retries=50)
    study = gw.GetStudy(pb.GetStudyRequest(study_id=name)).study
    assert study.spec.n_trials == 2 and study.spec.max_epochs == 2
    assert {p.name for p in study.spec.search_space} == {"learning_rate", "dropout", "n_layers", "units"}
    wait_for_study(gw, name, completed, timeout=300)


async def test_several_objectives_from_tune_and_the_pareto_front(user, gw, ui_platform):
    """Issue 16.12: minimise val_loss and n_params with NSGA-II from the Tune page; the study
    page draws the Pareto front and marks the same trials Optuna calls best."""
    import optuna

    await user.open("/tune")
    await user.should_see("Search space")
    user.find(marker="objectives").elements.pop().value = ["val_loss", "n_params"]
    await user.should_see("Several objectives: pruning is switched off")
    await user.should_see("several objectives: the study page shows their Pareto front")
    form = client_view(user.find(marker="start-study").elements.pop())
    form.values.update(sampler=pb.SAMPLER_NSGA2)
    name = f"ui-pareto-{int(time.time())}"
    user.find(marker="study-name").clear().type(name)
    for marker, value in (("n-trials", "6"), ("max-parallel", "2"), ("max-epochs", "3")):
        user.find(marker=marker).clear().type(value)
    await user.should_see("learning_rate")
    user.find(marker="start-study").click()
    await user.should_see(f"Study {name} created", retries=50)
    study = gw.GetStudy(pb.GetStudyRequest(study_id=name)).study
    assert [(o.metric, o.direction) for o in study.spec.objectives] == [
        ("val_loss", pb.DIRECTION_MINIMIZE), ("n_params", pb.DIRECTION_MINIMIZE)]
    assert study.spec.sampler == pb.SAMPLER_NSGA2 and study.spec.pruner == pb.PRUNER_NONE
    done = wait_for_study(gw, name, completed, timeout=300)
    await user.should_see("6/6 trials finished", retries=100)
    best = {t.number for t in optuna.load_study(study_name=name, storage=ui_platform.optuna_storage).best_trials}
    pareto = next(e for e in user.find(kind=ui.echart).elements if "pareto-chart" in e.classes)
    await eventually(lambda: {p[2] for p in pareto.options["series"][0]["data"]} == best, timeout=10)
    dominated = {p[2] for p in pareto.options["series"][1]["data"]}
    assert best and not best & dominated and len(best | dominated) == done.counts.complete
    assert pareto.options["xAxis"]["name"] == "val_loss" and pareto.options["yAxis"]["name"] == "n_params"
    table = next(e for e in user.find(kind=ui.table).elements if "trials-table" in e.classes)
    assert {r["number"] for r in table.rows if r["best"]} == best
    await user.should_see(f"{len(best)} Pareto-optimal trial")


async def test_tune_reports_server_side_refusals(user):
    await user.open("/tune")
    await user.should_see("Search space")
    user.find(marker="study-name").type("Bad Name!")  # the tuning service's name rule, checked before submit
    await user.should_see("name: use lowercase letters", retries=RETRIES_FOR_THE_SERVICE)
    assert not user.find(marker="start-study").elements.pop().enabled


async def test_live_study_updates_from_the_stream(user, gw):
    spec = small_spec(trials=3, epochs=4, parallel=2, name=f"ui-live-{int(time.time())}", pruner=pb.PRUNER_NONE)
    study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    await user.open(f"/study/{study.id}")
    await user.should_see(study.id)
    progress = user.find(marker="progress-label").elements.pop()
    await eventually(lambda: progress.text.startswith("3/3"), timeout=300)
    await user.should_see("completed", retries=30)
    client = progress.client
    view = client.page_view
    assert view.updates > 0, "the page saw no events: it must update from WatchStudy"
    history = next(e for e in user.find(kind=ui.echart).elements if "history-chart" in e.classes)
    points = history.options["series"][0]["data"]
    done = wait_for_study(gw, study.id, completed)
    assert len(points) == done.counts.complete
    curves = next(e for e in user.find(kind=ui.echart).elements if "curves-chart" in e.classes)
    assert len(curves.options["series"]) == 3
    # Contour: the first two searched parameters against the objective, every completed trial on it.
    contour = next(e for e in user.find(kind=ui.echart).elements if "contour-chart" in e.classes)
    assert (contour.options["xAxis"]["name"], contour.options["yAxis"]["name"]) == ("learning_rate", "n_layers")
    surface, trials = contour.options["series"]
    assert sorted(p[3] for p in trials["data"]) == sorted(n for n, _ in view.live.completed_values())
    values = [v for _, v in view.live.completed_values()]
    assert surface["data"] and all(min(values) - 1e-9 <= c[2] <= max(values) + 1e-9 for c in surface["data"])
    user.find(marker="contour-y").elements.pop().value = "units"
    await eventually(lambda: contour.options["yAxis"]["name"] == "units", timeout=5)
    table = next(e for e in user.find(kind=ui.table).elements if "trials-table" in e.classes)
    assert {r["number"] for r in table.rows} == {0, 1, 2}
    await eventually(lambda: "MLflow" in "".join(texts(user, "mlflow-link")) and view.mlflow_url.endswith(
        f"/#/experiments/{done.mlflow_experiment_id}"), timeout=5)


async def test_study_page_shows_the_best_trial_beside_the_baseline(user, gw, done_study):
    study = gw.GetStudy(pb.GetStudyRequest(study_id=done_study.id)).study
    assert study.baseline.model == "ridge regression" and "test/rmse" in study.baseline.metrics
    await user.open(f"/study/{done_study.id}")
    label = user.find(marker="quality-label").elements.pop()
    await eventually(lambda: "baseline (ridge regression): test RMSE" in label.text, timeout=60)
    assert f"best trial: test RMSE {study.best_trial.metrics['test/rmse']:.4g}" in label.text
    assert f"test RMSE {study.baseline.metrics['test/rmse']:.4g}" in label.text


async def test_stop_and_resume_buttons(user, gw):
    spec = small_spec(trials=40, epochs=30, parallel=1, name=f"ui-stop-{int(time.time())}")
    study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    await user.open(f"/study/{study.id}")
    badge = user.find(marker="study-state").elements.pop()
    await eventually(lambda: badge.text == "running", timeout=30)
    user.find("Stop").click()
    await eventually(lambda: badge.text == "stopped", timeout=30)
    assert gw.GetStudy(pb.GetStudyRequest(study_id=study.id)).study.state == pb.STUDY_STATE_STOPPED
    user.find("Resume").click()
    await eventually(lambda: badge.text == "running", timeout=30)
    user.find("Stop").click()
    await eventually(lambda: badge.text == "stopped", timeout=30)


async def test_page_opened_mid_trial_shows_whole_curves_and_stopped_trials_keep_their_epochs(user, gw, ui_platform):
    """Issue 16.3: the snapshot carries each trial's curve from epoch 0 (the worker writes
    it while training and when the trial ends), and counts stay true after a stop."""
    spec = small_spec(trials=2, epochs=10_000, parallel=2, name=f"ui-mid-{int(time.time())}",
                      pruner=pb.PRUNER_NONE, early_stopping_patience=10_000)
    study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study

    def epochs_so_far() -> int:
        trials = gw.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials
        return min((t.epochs_done for t in trials), default=0) if len(trials) == 2 else 0

    await eventually(lambda: epochs_so_far() >= 20, timeout=120, every=0.5)
    await user.open(f"/study/{study.id}")
    await user.should_see(study.id)
    curves = next(e for e in user.find(kind=ui.echart).elements if "curves-chart" in e.classes)

    def whole(series) -> bool:
        # From epoch 0, every epoch a number (a missing one is drawn as null).
        return all(len(s["data"]) >= 20 and [i for i, _ in s["data"]] == list(range(len(s["data"])))
                   and all(v is not None for _, v in s["data"]) for s in series)

    await eventually(lambda: len(curves.options["series"]) == 2 and whole(curves.options["series"]), timeout=30)
    gw.StopStudy(pb.StopStudyRequest(study_id=study.id))
    await eventually(lambda: all(t.state == pb.TRIAL_STATE_FAIL for t in gw.ListTrials(
        pb.ListTrialsRequest(study_id=study.id)).trials), timeout=60, every=0.5)
    stored = {t.number: t for t in gw.ListTrials(pb.ListTrialsRequest(study_id=study.id, with_curves=True)).trials}
    for t in stored.values():
        assert t.epochs_done >= 20 and t.epochs_done == len(t.val_loss_curve) == len(t.train_loss_curve), t
        assert "study stopped" in t.reason
    # The page, live all along, drew the same whole curves as the storage now holds.
    view = client_view(curves)
    await eventually(lambda: not view.live.has_holes(), timeout=10)
    for n, t in stored.items():
        assert list(view.live.trials[n].val_loss_curve) == list(t.val_loss_curve)
    table = next(e for e in user.find(kind=ui.table).elements if "trials-table" in e.classes)
    await eventually(lambda: {r["number"]: r["epochs"] for r in table.rows} == {n: t.epochs_done for n, t in stored.items()},
                     timeout=10)
    # A page opened afterwards, and the CLI, count the same epochs.
    await user.open(f"/study/{study.id}")
    await user.should_see("stopped", retries=30)
    shown = json.loads(subprocess.run([KUBETUNE, "study", "show", study.id, "--json", "--gateway", ui_platform.gateway],
                                      capture_output=True, text=True, timeout=60, check=True).stdout)
    assert {t.get("number", 0): t["epochs_done"] for t in shown["trials"]} == {n: t.epochs_done for n, t in stored.items()}


async def test_unknown_study_is_explained(user):
    await user.open("/study/no-such-study")
    await user.should_see("Cannot show this study", retries=30)


async def test_data_registers_previews_and_explains_errors(user):
    await user.open("/data")
    datasets = user.find(marker="datasets-table").elements.pop()
    await eventually(lambda: datasets.rows, timeout=10)
    assert any(r["name"] == "sample" and r["rows"] == 100 for r in datasets.rows)
    user.find(marker="register-name").type("seed-copy")
    user.find(marker="register-uri").type(str(SEED))
    user.find(marker="register-button").click()
    await eventually(lambda: user.notify.contains("seed-copy@"), timeout=60)
    await user.should_see("x4")  # the preview's per-column stats
    await user.should_see("target")
    histograms = [e for e in user.find(kind=ui.echart).elements]
    assert len(histograms) >= 6 and sum(histograms[0].options["series"][0]["data"]) == 100
    user.find(marker="register-name").clear().type("broken")
    user.find(marker="register-uri").clear().type("/no/such/folder")
    user.find(marker="register-button").click()
    await eventually(lambda: any(texts(user, "register-error")), timeout=30)
    error = texts(user, "register-error")[0]
    assert "Traceback" not in error and error
    assert user.notify.contains("Registering broken failed")


async def test_data_upload_streams_a_file(user, gw):
    x = list(csv.reader((SEED / "X.csv").read_text().splitlines()))
    y = (SEED / "y.csv").read_text().split()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["a", "b", "c", "d", "e", "price"])
    for row, target in zip(x, y):
        w.writerow([*row[1:], target])
    await user.open("/data")
    await user.should_see("Upload a file")
    user.find(marker="upload-name").type("uploaded-seed")
    target_inputs = [e for e in user.find(kind=ui.input).elements if e.props.get("label") == "Target column (single table)"]
    for e in target_inputs:
        e.value = "price"
    upload = user.find(kind=ui.upload).elements.pop()
    await upload.handle_uploads([SmallFileUpload(name="houses.csv", content_type="text/csv",
                                                 _data=buf.getvalue().encode())])
    await eventually(lambda: user.notify.contains("uploaded-seed@"), timeout=60)
    datasets = user.find(marker="datasets-table").elements.pop()
    row = next(r for r in datasets.rows if r["name"] == "uploaded-seed")
    assert row["rows"] == 100 and row["target"] == "price" and row["features"] == 5


def mixed_table(path) -> str:
    """A small table with a category, a boolean, an id, a date and missing values."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    n = 120
    frame = pd.DataFrame({
        "customer": [f"c-{i:04d}" for i in range(n)],
        "day": [f"2024-03-{1 + i % 28:02d}" for i in range(n)],
        "colour": rng.choice(["red", "green", "blue"], n),
        "store": rng.integers(1, 4, n),
        "member": rng.choice(["yes", "no"], n),
        "size": rng.normal(size=n),
        "price": rng.normal(size=n),
    })
    frame.loc[[3, 9], "size"] = np.nan
    frame.loc[5, "colour"] = None
    file = path / "shop.csv"
    frame.to_csv(file, index=False)
    return str(file)


async def test_data_shows_column_types_and_registers_them_changed(user, tmp_path):
    """The Data page says how each column is read and why, and a user can retype them:
    registering again makes a new version with the chosen types."""
    uri = mixed_table(tmp_path)
    await user.open("/data")
    await user.should_see("Add a dataset")
    user.find(marker="register-name").type("shop")
    user.find(marker="register-uri").type(uri)
    for e in user.find(kind=ui.input).elements:
        if e.props.get("label") == "Target column (single table)":
            e.value = "price"
    user.find(marker="register-button").click()
    await eventually(lambda: user.notify.contains("shop@"), timeout=180)
    table = user.find(marker="column-types").elements.pop()
    await eventually(lambda: any(r["name"] == "colour" for r in table.rows), timeout=30)
    kinds = {r["name"]: r for r in table.rows}
    assert kinds["colour"]["type"] == "categorical" and kinds["colour"]["missing"] == 1
    assert kinds["member"]["type"] == "boolean" and kinds["size"]["missing"] == 2
    assert kinds["store"]["type"] == "numeric"
    assert kinds["customer"]["type"] == "excluded" and "distinct values" in kinds["customer"]["note"]
    assert kinds["day"]["type"] == "excluded" and "ISO dates" in kinds["day"]["note"]
    assert kinds["price"]["type"] == "target"
    user.find(marker="type-store").elements.pop().value = "categorical"
    user.find(marker="type-colour").elements.pop().value = "exclude"
    user.find(marker="retype-button").click()
    await eventually(lambda: {r["name"]: r["type"] for r in table.rows}.get("store") == "categorical", timeout=180)
    now = {r["name"]: r["type"] for r in table.rows}
    assert now["colour"] == "excluded" and now["customer"] == "excluded"
    datasets = user.find(marker="datasets-table").elements.pop()
    assert next(r for r in datasets.rows if r["name"] == "shop")["versions"] == 2


async def test_experiments_lists_sorts_filters_and_compares(user, done_study):
    await user.open("/experiments")
    await user.should_see("Runs")
    table = next(e for e in user.find(kind=ui.table).elements if "runs-table" in e.classes)
    await eventually(lambda: len(table.rows) >= 4, timeout=30)
    summary = user.find(marker="runs-summary").elements.pop()
    assert "runs" in summary.text
    page = client_view(table)
    # sort by val_loss, ascending, as clicking the header does
    await page.on_request(type("E", (), {"args": {"pagination": {"page": 1, "rowsPerPage": 50,
                                                                  "sortBy": "metric:val_loss", "descending": False}}}))
    # Ranked by the saved epoch's val_loss: trials that saved a model; the others (pruned,
    # failed) have none and come after them.
    losses = [float(r["metric:val_loss"]) for r in table.rows if "metric:val_loss" in r]
    ranked = losses[:4]  # at least the finished study's four completed trials saved a model
    assert len(losses) >= 4 and ranked == sorted(ranked) and ranked[0] == min(losses)
    # one study only
    page.study_select.value = done_study.id
    await eventually(lambda: table.rows and all(r["study_id"] == done_study.id for r in table.rows), timeout=10)
    assert len(table.rows) == 4
    # a filter
    cutoff = sorted(float(r["metric:val_loss"]) for r in table.rows if "metric:val_loss" in r)[1] * 1.0001
    page.filter_form.update(kind="metric", key="val_loss", op="≤", value=str(cutoff))
    await page.add_filter()
    assert 1 <= len(table.rows) < 4
    await page.remove_filter(page.query.filters[0])
    assert len(table.rows) == 4
    table.selected = table.rows[:2]
    page.on_select(None)
    await page.compare()
    chart = next(e for e in user.find(kind=ui.echart).elements if "compare-val-chart" in e.classes)
    assert len(chart.options["series"]) == 2 and all(s["data"] for s in chart.options["series"])
    compare = user.find(marker="compare-table").elements.pop()
    assert compare.rows[0]["kind"] == "metric" and any(r["kind"] == "differs" for r in compare.rows)


async def test_experiments_date_range_outside_the_runs(user, done_study):
    await user.open("/experiments")
    table = next(e for e in user.find(kind=ui.table).elements if "runs-table" in e.classes)
    await eventually(lambda: len(table.rows) >= 4, timeout=30)
    page = client_view(table)
    page.date.value = {"from": "2001-01-01", "to": "2001-01-31"}
    await eventually(lambda: not table.rows, timeout=10)
    assert page.summary.text.startswith("0 runs")
    await page.preset(None)
    await eventually(lambda: len(table.rows) >= 4, timeout=10)


def client_view(element):
    """The page object that built an element."""
    return element.client.page_view


async def test_offline_gateway_gives_readable_notifications(offline_user):
    await offline_user.open("/tune")
    await offline_user.should_see("Start a study")
    assert offline_user.notify.contains("Loading datasets failed:")
    assert not any("Traceback" in m for m in offline_user.notify.messages)
    await offline_user.open("/experiments")
    # The refusal arrives when the offline call gives up: later than the page under load.
    await eventually(lambda: offline_user.notify.contains("Loading runs failed:"), timeout=10)
    chip = offline_user.find(marker="status-chip").elements.pop()
    await eventually(lambda: chip.text == "gateway unreachable", timeout=10)


async def test_models_register_alias_and_predict(user, gw, done_study):
    run_id = done_study.best_trial.mlflow_run_id
    gw.RegisterModel(registry_pb2.RegisterModelRequest(run_id=run_id, name="ui-model"), timeout=120)
    other = next(t for t in gw.ListTrials(pb.ListTrialsRequest(study_id=done_study.id)).trials
                 if t.mlflow_run_id != run_id and t.state == pb.TRIAL_STATE_COMPLETE)
    gw.RegisterModel(registry_pb2.RegisterModelRequest(run_id=other.mlflow_run_id, name="ui-model"), timeout=120)
    gw.RegisterModel(registry_pb2.RegisterModelRequest(run_id=run_id, name="ui-model-one"), timeout=120)
    await user.open("/models?name=ui-model")
    await user.should_see("Versions", retries=50)
    # The list counts every model's versions, the ones not opened too (ListModels carries them).
    await user.should_see("2 versions")
    await user.should_see("1 version")
    versions = user.find(marker="versions-table").elements.pop()
    await eventually(lambda: len(versions.rows) == 2, timeout=10)
    assert versions.rows[0]["study_id"] == done_study.id and versions.rows[0]["dataset"].startswith("sample@")
    page = client_view(user.find(marker="predict-button").elements.pop())
    page.alias_form.update(alias="champion", version=versions.rows[-1]["version"])
    await page.set_alias()
    assert gw.GetModel(registry_pb2.GetModelRequest(name="ui-model")).model.aliases["champion"] == \
        versions.rows[-1]["version"]
    page.predict_form.update(model="ui-model@champion", text="0.1,0.2,0.3,0.4,0.5\n1,1,1,1,1")
    predictions = user.find(marker="predictions").elements.pop()
    for _ in range(5):
        # A cold load (mlflow, torch) can outlast the gateway's deadline on a busy
        # machine; the registry goes on loading, and pressing Predict again finds it.
        await page.predict()
        if predictions.rows:
            break
        assert user.notify.messages[-1].endswith("did not answer in time"), user.notify.messages
    assert len(predictions.rows) == 2 and all(r["prediction"] for r in predictions.rows), (
        page.predict_error.text, user.notify.messages)
    user.find(marker="download").click()
    response = await user.download.next(timeout=5)
    assert response.text.splitlines()[0] == "row,x0,x1,x2,x3,x4,prediction"
    first = predictions.rows[0]["prediction"]
    # By name, in another order, with a column the model does not use: the same answer.
    page.predict_form.update(text="id,x4,x3,x2,x1,x0\n7,0.5,0.4,0.3,0.2,0.1")
    await page.predict()
    assert predictions.rows[0]["prediction"] == first
    assert "ignored columns the model does not use: id" in user.find(marker="predict-info").elements.pop().text
    # One row typed into the form, an input per column by name; then a refused value.
    assert {m for m in ("input-x0", "input-x4") if user.find(marker=m).elements} == {"input-x0", "input-x4"}
    page.row_values.update(x0="0.1", x1="0.2", x2="0.3", x3="0.4", x4="0.5")
    await page.predict_row()
    assert len(predictions.rows) == 1 and predictions.rows[0]["prediction"] == first
    page.predict_form.update(text="x0,x1,x2,x3,x4\n1,2,three,4,5")
    await page.predict()
    assert user.find(marker="predict-error").elements.pop().text == \
        "The CSV line 2, column 'x2': 'three' is not a number"


async def test_tune_opens_on_the_demo_with_signal(user):
    await user.open("/tune")
    await user.should_see("Search space")
    assert user.find(marker="dataset").elements.pop().value == "diabetes"
