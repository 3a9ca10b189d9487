"""Queries straight from MLflow's SQL tables, read-only; writes still go through
MLflow's REST API (MlflowStore), so the MLflow server stays the one writer.

Why: MLflow's REST search loads every matching run with all its params, tags and
metrics before it sorts and pages; at 10,000 runs a first page takes seconds. Here a
page is one indexed query for the ids, one count, and four small look-ups for the
100 runs shown. The tables read (runs, latest_metrics, metrics, params, tags,
experiments, inputs, input_tags, datasets, logged_models) have kept their shape
across MLflow 2.x and 3.x; the contract suite runs every query against both stores."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy import and_, case, column, exists, func, literal, or_, select, table

from kubetune_common.errors import InvalidArgument
from services.common import mlflow_tags
from services.tracking.mlflow_store import MlflowStore, dataset_record, mlflow_calls
from services.tracking.records import (ALL_COLUMNS, Columns, ExperimentRecord, MetricPoint, RunFilter, RunPage,
                                       RunQuery, RunRecord, check_string_comparison)

runs = table(
    "runs", column("run_uuid"), column("name"), column("status"), column("start_time"),
    column("end_time"), column("lifecycle_stage"), column("experiment_id"),
)
experiments = table(
    "experiments", column("experiment_id"), column("name"), column("creation_time"),
    column("last_update_time"), column("lifecycle_stage"),
)
latest_metrics = table(
    "latest_metrics", column("key"), column("value"), column("timestamp"), column("step"),
    column("is_nan"), column("run_uuid"),
)
metrics = table(
    "metrics", column("key"), column("value"), column("timestamp"), column("step"),
    column("is_nan"), column("run_uuid"),
)
params = table("params", column("key"), column("value"), column("run_uuid"))
tags = table("tags", column("key"), column("value"), column("run_uuid"))
inputs = table(
    "inputs", column("input_uuid"), column("source_type"), column("source_id"),
    column("destination_type"), column("destination_id"),
)
input_tags = table("input_tags", column("input_uuid"), column("name"), column("value"))
datasets = table(
    "datasets", column("dataset_uuid"), column("name"), column("digest"), column("dataset_source"),
    column("dataset_schema"), column("dataset_profile"),
)
logged_models = table(
    "logged_models", column("model_id"), column("name"), column("source_run_id"), column("lifecycle_stage"),
)

_CMP = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_ATTRIBUTE = {"status": runs.c.status, "started_at": runs.c.start_time, "ended_at": runs.c.end_time,
              "run_name": runs.c.name, "run_id": runs.c.run_uuid}
_NAN = float("nan")
# SQLite limits bound parameters per statement; chunk IN lists well below it.
_IN_CHUNK = 500


def read_only_engine(backend_store_uri: str) -> sa.Engine:
    """An engine on MLflow's database that cannot write to it."""
    if backend_store_uri.startswith("sqlite:///"):
        path = backend_store_uri[len("sqlite:///"):]
        return sa.create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true",
            connect_args={"check_same_thread": False, "timeout": 30},
        )
    if backend_store_uri.startswith(("postgresql", "postgres")):
        return sa.create_engine(
            backend_store_uri, pool_pre_ping=True,
            connect_args={"options": "-c default_transaction_read_only=on"},
        )
    # MySQL went: no driver is installed and no test could hold a read-only connection to it.
    raise InvalidArgument(f"backend_store_uri {backend_store_uri!r}: only sqlite and postgresql are read directly")


def _chunks(items: list, size: int = _IN_CHUNK) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _filter_clause(f: RunFilter):
    check_string_comparison(f)
    cmp = _CMP[f.op]
    if f.kind == "metric":
        # As MLflow's own search: a NaN (stored as 0 with is_nan set) compares as NaN does,
        # false for every operator but `!=`, so `val != 0.5` keeps NaN runs.
        nan = latest_metrics.c.is_nan == literal(True)
        value = cmp(latest_metrics.c.value, float(f.value))
        return exists().where(
            latest_metrics.c.run_uuid == runs.c.run_uuid, latest_metrics.c.key == f.key,
            or_(value, nan) if f.op == "!=" else and_(value, ~nan),
        )
    if f.kind in ("param", "tag"):
        t = params if f.kind == "param" else tags
        return exists().where(t.c.run_uuid == runs.c.run_uuid, t.c.key == f.key, cmp(t.c.value, f.value))
    col = _ATTRIBUTE[f.key]
    value = int(f.value) if f.key in ("started_at", "ended_at") else f.value
    return cmp(col, value)


class MlflowSqlStore(MlflowStore):
    def __init__(self, tracking_uri: str, backend_store_uri: str):
        super().__init__(tracking_uri)
        self.engine = read_only_engine(backend_store_uri)

    def close(self) -> None:
        self.engine.dispose()
        super().close()

    # --- the look-ups that make writes idempotent -------------------------------
    @mlflow_calls
    def find_runs(self, experiment_id: str | None, tags_wanted: dict[str, str]) -> list[str]:
        q = select(runs.c.run_uuid).where(
            runs.c.lifecycle_stage == "active",
            *[exists().where(tags.c.run_uuid == runs.c.run_uuid, tags.c.key == k, tags.c.value == v)
              for k, v in tags_wanted.items()],
        ).order_by(runs.c.start_time, runs.c.run_uuid)
        if experiment_id:
            q = q.where(runs.c.experiment_id == int(experiment_id))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q)]

    @mlflow_calls
    def metric_steps(self, run_id: str, keys: list[str]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {k: set() for k in keys}
        q = select(metrics.c.key, metrics.c.step).where(
            metrics.c.run_uuid == run_id, metrics.c.key.in_(keys)
        ).distinct()
        with self.engine.connect() as conn:
            for key, step in conn.execute(q):
                out[key].add(int(step))
        return out

    # --- queries ----------------------------------------------------------------
    @mlflow_calls
    def list_experiments(self, name_contains="", since_ms=None, until_ms=None) -> list[ExperimentRecord]:
        join_on = [runs.c.experiment_id == experiments.c.experiment_id, runs.c.lifecycle_stage == "active"]
        if since_ms is not None:
            join_on.append(runs.c.start_time >= since_ms)
        if until_ms is not None:
            join_on.append(runs.c.start_time < until_ms)
        q = (
            select(experiments.c.experiment_id, experiments.c.name, experiments.c.creation_time,
                   experiments.c.last_update_time, func.count(runs.c.run_uuid))
            .select_from(experiments.outerjoin(runs, and_(*join_on)))
            .where(experiments.c.lifecycle_stage == "active")
            .group_by(experiments.c.experiment_id, experiments.c.name, experiments.c.creation_time,
                      experiments.c.last_update_time)
            .order_by(experiments.c.creation_time.desc(), experiments.c.experiment_id.desc())
        )
        if name_contains:
            q = q.where(func.lower(experiments.c.name).contains(name_contains.lower(), autoescape=True))
        if since_ms is not None or until_ms is not None:
            q = q.having(func.count(runs.c.run_uuid) > 0)
        with self.engine.connect() as conn:
            return [ExperimentRecord(str(i), n, c or 0, u or 0, cnt) for i, n, c, u, cnt in conn.execute(q)]

    def _where(self, query: RunQuery) -> list:
        where = [runs.c.lifecycle_stage == "active"]
        if query.experiment_ids:
            where.append(runs.c.experiment_id.in_([int(e) for e in query.experiment_ids]))
        else:
            where.append(runs.c.experiment_id.in_(
                select(experiments.c.experiment_id).where(experiments.c.lifecycle_stage == "active")))
        if query.since_ms is not None:
            where.append(runs.c.start_time >= query.since_ms)
        if query.until_ms is not None:
            where.append(runs.c.start_time < query.until_ms)
        where.extend(_filter_clause(f) for f in query.filters)
        return where

    def _ordered_ids(self, query: RunQuery):
        q = select(runs.c.run_uuid).where(*self._where(query))
        # As MLflow's SQL search, whatever the database's NULL ordering: values first, then
        # NaN, then runs without the key, in either direction.
        if query.sort_kind == "attribute":
            col = _ATTRIBUTE[query.sort_key]
            keys = [case((col.is_(None), 1), else_=0), col.desc() if query.descending else col.asc()]
        else:
            if query.sort_kind == "metric":
                s = latest_metrics.alias("s")
                rank = case((s.c.is_nan == literal(True), 1), (s.c.value.is_(None), 2), else_=0)
            else:
                s = (params if query.sort_kind == "param" else tags).alias("s")
                rank = case((s.c.value.is_(None), 1), else_=0)
            q = q.outerjoin(s, and_(s.c.run_uuid == runs.c.run_uuid, s.c.key == query.sort_key))
            keys = [rank, s.c.value.desc() if query.descending else s.c.value.asc()]
        return q.order_by(*keys, runs.c.start_time.desc(), runs.c.run_uuid)

    @mlflow_calls
    def list_runs(self, query: RunQuery) -> RunPage:
        count = select(func.count()).select_from(runs).where(*self._where(query))
        page = self._ordered_ids(query).limit(query.page_size).offset(query.offset)
        with self.engine.connect() as conn:
            total = conn.execute(count).scalar_one()
            ids = [r[0] for r in conn.execute(page)]
            records = self._records(conn, ids, query.columns)
        next_offset = query.offset + query.page_size
        return RunPage(records, total, next_offset if next_offset < total else None)

    @mlflow_calls
    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        with self.engine.connect() as conn:
            records = self._records(conn, list(run_ids), ALL_COLUMNS)
        for record in records:
            if not record.model_uri and self.has_model_artifacts(record.run_id):
                # A model logged the MLflow 2 way, as run artifacts.
                record.model_uri = mlflow_tags.model_uri(record.run_id)
        return records

    def _records(self, conn, ids: list[str], columns: Columns) -> list[RunRecord]:
        if not ids:
            return []
        by_id: dict[str, RunRecord] = {}
        for chunk in _chunks(ids):
            q = select(runs.c.run_uuid, runs.c.experiment_id, runs.c.name, runs.c.status,
                       runs.c.start_time, runs.c.end_time).where(
                runs.c.run_uuid.in_(chunk), runs.c.lifecycle_stage == "active")
            for run_id, exp, name, status, start, end in conn.execute(q):
                by_id[run_id] = RunRecord(run_id, str(exp), name or "", status, start, end)
        found = list(by_id)
        if not found:
            return []
        tag_keys = None
        if columns.tags is not None:
            tag_keys = set(columns.tags) | {mlflow_tags.TAG_STUDY, mlflow_tags.TAG_TRIAL, mlflow_tags.MLFLOW_PARENT,
                                            mlflow_tags.TAG_MODEL_URI}
        for chunk in _chunks(found):
            self._fill(conn, tags, chunk, tag_keys, lambda r, k, v: r.tags.__setitem__(k, v), by_id)
            self._fill(conn, params, chunk, columns.params, lambda r, k, v: r.params.__setitem__(k, v), by_id)
            q = select(latest_metrics.c.run_uuid, latest_metrics.c.key, latest_metrics.c.value,
                       latest_metrics.c.is_nan).where(latest_metrics.c.run_uuid.in_(chunk))
            if columns.metrics is not None:
                q = q.where(latest_metrics.c.key.in_(list(columns.metrics)))
            for run_id, key, value, is_nan in conn.execute(q):
                by_id[run_id].metrics[key] = _NAN if is_nan else value
            if columns.dataset:
                self._fill_datasets(conn, chunk, by_id)
            if columns.model_uri:
                self._fill_models(conn, chunk, by_id)
        if columns.tags is not None and mlflow_tags.TAG_MODEL_URI not in columns.tags:
            # Read only to fill model_uri; not asked for as a column.
            for record in by_id.values():
                record.tags.pop(mlflow_tags.TAG_MODEL_URI, None)
        return [by_id[i] for i in ids if i in by_id]

    @staticmethod
    def _fill(conn, t, chunk, keys, put, by_id) -> None:
        if keys is not None and not keys:
            return
        q = select(t.c.run_uuid, t.c.key, t.c.value).where(t.c.run_uuid.in_(chunk))
        if keys is not None:
            q = q.where(t.c.key.in_(list(keys)))
        for run_id, key, value in conn.execute(q):
            put(by_id[run_id], key, value)

    @staticmethod
    def _fill_datasets(conn, chunk, by_id) -> None:
        q = (
            select(inputs.c.destination_id, inputs.c.input_uuid, datasets.c.name, datasets.c.digest,
                   datasets.c.dataset_source, datasets.c.dataset_schema, datasets.c.dataset_profile)
            .select_from(inputs.join(datasets, datasets.c.dataset_uuid == inputs.c.source_id))
            .where(inputs.c.destination_type == "RUN", inputs.c.source_type == "DATASET",
                   inputs.c.destination_id.in_(chunk))
        )
        rows = list(conn.execute(q))
        if not rows:
            return
        input_tag_values: dict[str, dict[str, str]] = defaultdict(dict)
        tq = select(input_tags.c.input_uuid, input_tags.c.name, input_tags.c.value).where(
            input_tags.c.input_uuid.in_([r[1] for r in rows]))
        for input_uuid, name, value in conn.execute(tq):
            input_tag_values[input_uuid][name] = value
        for run_id, input_uuid, name, digest, source, schema, profile in rows:
            if by_id[run_id].dataset is None:
                by_id[run_id].dataset = dataset_record(name, digest, source, schema, profile,
                                                       input_tag_values[input_uuid])

    @staticmethod
    def _fill_models(conn, chunk, by_id) -> None:
        for record in by_id.values():
            if record.run_id in chunk and record.tags.get(mlflow_tags.TAG_MODEL_URI):
                record.model_uri = record.tags[mlflow_tags.TAG_MODEL_URI]
        q = select(logged_models.c.source_run_id).where(
            logged_models.c.source_run_id.in_(chunk), logged_models.c.name == mlflow_tags.MODEL_ARTIFACT,
            or_(logged_models.c.lifecycle_stage.is_(None), logged_models.c.lifecycle_stage == "active"),
        ).distinct()
        for (run_id,) in conn.execute(q):
            if not by_id[run_id].model_uri:
                by_id[run_id].model_uri = mlflow_tags.model_uri(run_id)

    @mlflow_calls
    def metric_histories(self, run_ids, keys) -> dict[tuple[str, str], list[MetricPoint]]:
        out: dict[tuple[str, str], list[MetricPoint]] = defaultdict(list)
        with self.engine.connect() as conn:
            for chunk in _chunks(list(run_ids)):
                q = select(metrics.c.run_uuid, metrics.c.key, metrics.c.step, metrics.c.value,
                           metrics.c.timestamp, metrics.c.is_nan).where(
                    metrics.c.run_uuid.in_(chunk), metrics.c.key.in_(list(keys))
                ).order_by(metrics.c.run_uuid, metrics.c.key, metrics.c.step, metrics.c.timestamp)
                for run_id, key, step, value, ts, is_nan in conn.execute(q):
                    out[(run_id, key)].append(MetricPoint(int(step), _NAN if is_nan else value, int(ts)))
        return dict(out)
