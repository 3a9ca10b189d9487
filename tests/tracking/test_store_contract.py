"""One contract suite over both store implementations: MLflow's REST API and the
direct SQL read path must answer every query the same way, with MLflow on SQLite and on
PostgreSQL (whose NULL ordering differs)."""

from __future__ import annotations

import math
import time

import uuid

import psycopg2
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from kubetune_common.errors import InvalidArgument
from services.common import mlflow_tags
from services.tracking.mlflow_store import MlflowStore
from services.tracking.records import Columns, DatasetRecord, MetricValue, RunFilter, RunQuery
from services.tracking.sql_store import MlflowSqlStore, read_only_engine
from testing import servers

N = 24
T0 = 1_700_000_000_000  # runs start an hour apart from here


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mlflow_backend(request, tmp_path_factory):
    """(tracking URI, backend store URI): the shared SQLite-backed server, or one on a
    fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield request.getfixturevalue("tracking_mlflow")
        return
    admin_url = request.getfixturevalue("postgres_url")
    name = f"mlflow_contract_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    backend = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        with servers.mlflow_server(tmp_path_factory.mktemp("mlflow-pg"), backend) as url:
            yield url, backend
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="module")
def seeded(mlflow_backend):
    """Two experiments; the first with N runs: params, tags, 5 epochs of metrics."""
    url, _ = mlflow_backend
    client = MlflowClient(url)
    suffix = str(time.time_ns())
    exp = client.create_experiment(f"contract/{suffix}")
    other = client.create_experiment(f"other/{suffix}")
    run_ids, logged = [], {}
    for i in range(N):
        run = client.create_run(exp, start_time=T0 + i * 3_600_000, run_name=f"r{i}",
                                tags={mlflow_tags.TAG_KIND: "trial", mlflow_tags.TAG_TRIAL: str(i),
                                      mlflow_tags.TAG_STATE: "COMPLETE" if i % 3 else "PRUNED"})
        rid = run.info.run_id
        metrics = []
        epochs = 5 if i % 4 else 3
        for e in range(epochs):
            metrics.append(Metric("val_loss", 1.0 / (i + 1) + 0.1 * (epochs - e), T0 + e, e))
            metrics.append(Metric("train_loss", 2.0 / (i + 1) + 0.1 * (epochs - e), T0 + e, e))
        if i == 7:
            metrics = []  # a run with no metric at all sorts last
        client.log_batch(rid, metrics=metrics, params=[Param("lr", str(10 ** -(i % 4))), Param("i", str(i))],
                         tags=[RunTag("group", "even" if i % 2 == 0 else "odd")])
        for m in metrics:
            logged.setdefault((rid, m.key), []).append((m.step, m.value))
        if i % 5 == 0:
            client.set_terminated(rid, "FAILED" if i == 10 else "FINISHED", end_time=T0 + i * 3_600_000 + 10)
        run_ids.append(rid)
    client.create_run(other, start_time=T0 - 10 * 86_400_000, run_name="old")
    # NaN, missing and plain values of one metric, for MLflow's semantics of each.
    nan_exp = client.create_experiment(f"nan/{suffix}")
    for i, (name, value) in enumerate([("a", 0.3), ("b", math.nan), ("c", None), ("d", 0.7), ("e", 0.5)]):
        rid = client.create_run(nan_exp, start_time=T0 + i, run_name=name).info.run_id
        client.log_batch(rid, metrics=[Metric("val", value, T0, 0)] if value is not None else [Metric("other", 1.0, T0, 0)],
                         params=[Param("p", name)])
    return {"exp": exp, "other": other, "nan_exp": nan_exp, "run_ids": run_ids, "logged": logged, "client": client}


@pytest.fixture(params=["rest", "sql"], scope="module")
def store(request, mlflow_backend):
    url, backend = mlflow_backend
    s = MlflowStore(url) if request.param == "rest" else MlflowSqlStore(url, backend)
    yield s
    s.close()


def _ids(page):
    return [r.run_id for r in page.runs]


def test_sort_by_metric_missing_last(store, seeded):
    q = RunQuery(experiment_ids=(seeded["exp"],), sort_kind="metric", sort_key="val_loss", descending=False)
    page = store.list_runs(q)
    assert page.total == N
    vals = [r.metrics.get("val_loss") for r in page.runs]
    assert vals[-1] is None and page.runs[-1].name == "r7"
    assert vals[:-1] == sorted(vals[:-1])
    desc = store.list_runs(RunQuery(experiment_ids=(seeded["exp"],), sort_kind="metric", sort_key="val_loss",
                                    descending=True))
    dvals = [r.metrics.get("val_loss") for r in desc.runs]
    assert dvals[:-1] == sorted(dvals[:-1], reverse=True) and dvals[-1] is None


def test_pages_cover_everything_once(store, seeded):
    seen, offset = [], 0
    while True:
        q = RunQuery(experiment_ids=(seeded["exp"],), sort_kind="metric", sort_key="train_loss",
                     page_size=5, offset=offset)
        page = store.list_runs(q)
        seen += _ids(page)
        assert page.total == N
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert len(seen) == N and set(seen) == set(seeded["run_ids"])


def test_filters(store, seeded):
    exp = (seeded["exp"],)
    page = store.list_runs(RunQuery(exp, filters=(RunFilter("metric", "val_loss", "<", "0.2"),)))
    assert page.total > 0 and all(r.metrics["val_loss"] < 0.2 for r in page.runs)
    page = store.list_runs(RunQuery(exp, filters=(RunFilter("param", "lr", "=", "0.01"),)))
    assert {r.params["i"] for r in page.runs} == {str(i) for i in range(N) if i % 4 == 2}
    page = store.list_runs(RunQuery(exp, filters=(RunFilter("tag", mlflow_tags.TAG_STATE, "=", "PRUNED"),
                                                  RunFilter("tag", "group", "!=", "odd"))))
    assert {r.name for r in page.runs} == {f"r{i}" for i in range(N) if i % 3 == 0 and i % 2 == 0}
    page = store.list_runs(RunQuery(exp, filters=(RunFilter("attribute", "status", "=", "FAILED"),)))
    assert [r.name for r in page.runs] == ["r10"]
    page = store.list_runs(RunQuery(exp, filters=(RunFilter("attribute", "run_name", "=", "r3"),)))
    assert _ids(page) == [seeded["run_ids"][3]]


def test_date_range_and_newest_first(store, seeded):
    q = RunQuery((seeded["exp"],), since_ms=T0 + 2 * 3_600_000, until_ms=T0 + 6 * 3_600_000)
    page = store.list_runs(q)
    assert [r.name for r in page.runs] == ["r5", "r4", "r3", "r2"]
    assert page.runs[0].start_ms == T0 + 5 * 3_600_000


def test_columns_projection(store, seeded):
    cols = Columns(metrics=frozenset({"val_loss"}), params=frozenset(), tags=frozenset({"group"}),
                   dataset=False, model_uri=False)
    page = store.list_runs(RunQuery((seeded["exp"],), page_size=3, columns=cols))
    for r in page.runs:
        assert set(r.metrics) <= {"val_loss"} and r.params == {}
        assert set(r.tags) <= {"group", mlflow_tags.TAG_TRIAL, mlflow_tags.TAG_STUDY, mlflow_tags.MLFLOW_PARENT}
        assert "group" in r.tags


def test_list_experiments_by_name_and_date(store, seeded):
    names = {e.name: e for e in store.list_experiments("CONTRACT/")}
    (exp,) = [e for e in names.values() if e.id == seeded["exp"]]
    assert exp.run_count == N
    dated = store.list_experiments("", since_ms=T0 - 11 * 86_400_000, until_ms=T0 - 9 * 86_400_000)
    ids = {e.id for e in dated}
    assert seeded["other"] in ids and seeded["exp"] not in ids


def test_metric_histories_equal_what_was_logged(store, seeded):
    ids = seeded["run_ids"][:6]
    got = store.metric_histories(ids, ["val_loss", "train_loss", "nope"])
    expected = {k: v for k, v in seeded["logged"].items() if k[0] in ids}
    assert {k: [(p.step, p.value) for p in pts] for k, pts in got.items()} == expected


def test_find_runs_steps_and_writes(store, seeded):
    rid = seeded["run_ids"][3]
    assert store.find_runs(seeded["exp"], {mlflow_tags.TAG_TRIAL: "3", mlflow_tags.TAG_KIND: "trial"}) == [rid]
    # Every experiment: the shared server may hold another module's seeding (pytest can set
    # a module fixture up twice when its parameters interleave), so this run is among them.
    everywhere = store.find_runs(None, {mlflow_tags.TAG_TRIAL: "3", mlflow_tags.TAG_KIND: "trial", "group": "odd"})
    assert rid in everywhere and rid not in store.find_runs(None, {mlflow_tags.TAG_TRIAL: "3", "group": "even"})
    assert store.metric_steps(rid, ["val_loss", "x"]) == {"val_loss": {0, 1, 2, 3, 4}, "x": set()}
    new = store.create_run(seeded["other"], "w", {"a": "b"})
    store.log_batch(new, [MetricValue("m", 1.5, T0, 0), MetricValue("m", math.nan, T0, 1)], {"p": "1"}, {"t": "v"})
    store.log_dataset(new, DatasetRecord("seed", "seed@1", "ab" * 32, "s3://b/seed", '{"x": 1}', 442))
    store.end_run(new, "FINISHED", T0 + 5)
    (run,) = store.get_runs([new, "0" * 32])
    assert run.status == "FINISHED" and run.end_ms == T0 + 5
    assert run.params == {"p": "1"} and run.tags["t"] == "v" and math.isnan(run.metrics["m"])
    assert run.dataset == DatasetRecord("seed", "seed@1", "ab" * 32, "s3://b/seed", '{"x": 1}', 442)
    assert run.model_uri == ""


def test_nan_and_missing_as_mlflow_search_runs(store, seeded):
    """A NaN compares as NaN does (MLflow stores it as 0, flagged): `val != 0.5` keeps the
    NaN run, which the SQL path used to drop; `<` and `>` leave it out. Sorting puts values first, then NaN, then runs without the
    metric, in either direction, on SQLite and PostgreSQL alike."""
    exp = (seeded["nan_exp"],)

    def names(**kw):
        return [r.name for r in store.list_runs(RunQuery(exp, **kw)).runs]

    assert sorted(names(filters=(RunFilter("metric", "val", "!=", "0.5"),))) == ["a", "b", "d"]
    assert sorted(names(filters=(RunFilter("metric", "val", "<", "0.5"),))) == ["a"]
    assert sorted(names(filters=(RunFilter("metric", "val", ">", "0.4"),))) == ["d", "e"]
    assert names(sort_kind="metric", sort_key="val", descending=False) == ["a", "e", "d", "b", "c"]
    assert names(sort_kind="metric", sort_key="val", descending=True) == ["d", "e", "a", "b", "c"]
    assert names(sort_kind="param", sort_key="p", descending=True) == ["e", "d", "c", "b", "a"]


@pytest.mark.parametrize("f", [RunFilter("param", "p", "<", "c"), RunFilter("tag", "group", ">=", "a"),
                               RunFilter("attribute", "run_name", ">", "b")])
def test_text_is_compared_only_for_equality(store, seeded, f):
    with pytest.raises(InvalidArgument):
        store.list_runs(RunQuery((seeded["nan_exp"],), filters=(f,)))


def test_the_sql_path_cannot_write_to_mlflows_tables(mlflow_backend, seeded):
    """MLflow's server stays the one writer: the direct engine refuses any write, on
    SQLite and PostgreSQL alike, and a backend it cannot open read-only is refused."""
    _, backend = mlflow_backend
    engine = read_only_engine(backend)
    try:
        with pytest.raises(sa.exc.DBAPIError, match="(?i)read.?only"), engine.begin() as conn:
            conn.execute(sa.text("UPDATE experiments SET name = name || '!'"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM experiments WHERE name LIKE '%!'")).scalar() == 0
    finally:
        engine.dispose()
    with pytest.raises(InvalidArgument, match="only sqlite and postgresql"):
        read_only_engine("mysql://root@127.0.0.1/mlflow")
