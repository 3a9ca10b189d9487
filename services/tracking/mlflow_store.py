"""The tracking store over MLflow's REST API (our own small client; `mlflow` itself is
never imported here): every write, and the queries when no direct read path is
configured (fine for hundreds of runs; see sql_store.py for thousands)."""

from __future__ import annotations

import json
import logging

from services.common import mlflow_tags, packed_model
from services.common.mlflow_rest import DatasetInput, Metric, MlflowError, MlflowRest, Run, domain_error, mlflow_calls
from services.tracking.records import (
    ALL_COLUMNS,
    Columns,
    DatasetRecord,
    ExperimentRecord,
    MetricPoint,
    RunPage,
    RunQuery,
    RunRecord,
)
from services.tracking.store import TrackingStore

log = logging.getLogger(__name__)

# MLflow's limits per log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
SEARCH_PAGE = 1000
# On an experiment made in place of deleted ones of the same name: their ids.
REPLACES_TAG = "kubetune.replaces_deleted"
# Input tags kubetune adds to a dataset input (MLflow's digest holds only 36 characters).
INPUT_TAG_VERSION = "kubetune.dataset_version"
INPUT_TAG_SHA256 = "kubetune.content_sha256"
INPUT_TAG_CONTEXT = "mlflow.data.context"

_ATTRIBUTE_COLUMN = {
    "status": "status",
    "started_at": "start_time",
    "ended_at": "end_time",
    "run_name": "run_name",
    "run_id": "run_id",
}


def dataset_input(dataset: DatasetRecord) -> DatasetInput:
    source_type = dataset.source_uri.split("://", 1)[0] if "://" in dataset.source_uri else "local"
    profile = json.dumps({"num_rows": dataset.row_count}) if dataset.row_count else None
    tags = {INPUT_TAG_CONTEXT: "train"}
    if dataset.version:
        tags[INPUT_TAG_VERSION] = dataset.version
    if dataset.content_sha256:
        tags[INPUT_TAG_SHA256] = dataset.content_sha256
    return DatasetInput(
        name=dataset.name,
        digest=(dataset.content_sha256 or dataset.version or dataset.name)[:36],
        source_type=source_type,
        source=dataset.source_uri or dataset.name,
        schema=dataset.schema_json or None,
        profile=profile,
        tags=tags,
    )


def dataset_record(
    name: str, digest: str, source: str, schema: str | None, profile: str | None, tags: dict[str, str]
) -> DatasetRecord:
    rows = 0
    if profile:
        try:
            rows = int(json.loads(profile).get("num_rows", 0))
        except (ValueError, TypeError, AttributeError):
            rows = 0
    return DatasetRecord(
        name=name,
        version=tags.get(INPUT_TAG_VERSION, ""),
        content_sha256=tags.get(INPUT_TAG_SHA256, digest),
        source_uri=source,
        schema_json=schema or "",
        row_count=rows,
    )


def project(run: RunRecord, columns: Columns) -> RunRecord:
    """Keeps only the asked-for columns; the tags the domain reads are always kept."""
    if columns.everything and columns.dataset and columns.model_uri:
        return run
    keep_tags = set(columns.tags or ()) | {mlflow_tags.TAG_STUDY, mlflow_tags.TAG_TRIAL, mlflow_tags.MLFLOW_PARENT}
    if columns.metrics is not None:
        run.metrics = {k: v for k, v in run.metrics.items() if k in columns.metrics}
    if columns.params is not None:
        run.params = {k: v for k, v in run.params.items() if k in columns.params}
    if columns.tags is not None:
        run.tags = {k: v for k, v in run.tags.items() if k in keep_tags}
    if not columns.dataset:
        run.dataset = None
    if not columns.model_uri:
        run.model_uri = ""
    return run


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise InvalidArgument("a filter value may not contain both ' and \"")


def filter_string(query: RunQuery) -> str:
    """The query's filters in MLflow's search syntax."""
    clauses = []
    for f in query.filters:
        if f.kind == "metric":
            clauses.append(f"metrics.`{f.key}` {f.op} {float(f.value)!r}")
        elif f.kind in ("param", "tag"):
            clauses.append(f"{f.kind}s.`{f.key}` {f.op} {_quote(f.value)}")
        else:
            column = _ATTRIBUTE_COLUMN[f.key]
            value = f.value if column in ("start_time", "end_time") else _quote(f.value)
            clauses.append(f"attributes.{column} {f.op} {value}")
    if query.since_ms is not None:
        clauses.append(f"attributes.start_time >= {query.since_ms}")
    if query.until_ms is not None:
        clauses.append(f"attributes.start_time < {query.until_ms}")
    return " and ".join(clauses)


def order_by(query: RunQuery) -> list[str]:
    direction = "DESC" if query.descending else "ASC"
    if query.sort_kind == "attribute":
        return [f"attributes.{_ATTRIBUTE_COLUMN[query.sort_key]} {direction}"]
    return [f"{query.sort_kind}s.`{query.sort_key}` {direction}"]


class MlflowStore(TrackingStore):
    def __init__(self, tracking_uri: str):
        self.uri = tracking_uri
        self.client = MlflowRest(tracking_uri)

    def close(self) -> None:
        self.client.close()

    # --- writes -----------------------------------------------------------------
    @mlflow_calls
    def get_or_create_experiment(self, name: str) -> str:
        """A user who deleted the experiment meant it: restoring it would bring back every
        run it had. MLflow keeps a deleted experiment's name taken, so the new one is
        `<name> (2)` (then 3...), tagged with the id of the one it replaces."""
        deleted: list[str] = []
        for n in range(1, 1000):
            candidate = name if n == 1 else f"{name} ({n})"
            experiment = self.client.get_experiment_by_name(candidate)
            if experiment is not None and experiment.lifecycle_stage == "active":
                return experiment.experiment_id
            if experiment is not None:
                deleted.append(experiment.experiment_id)
                continue
            tags = {REPLACES_TAG: ",".join(deleted)} if deleted else None
            try:
                experiment_id = self.client.create_experiment(candidate, tags)
            except MlflowError as exc:
                # Created by a concurrent caller between our look-up and create.
                experiment = self.client.get_experiment_by_name(candidate)
                if experiment is None or experiment.lifecycle_stage != "active":
                    raise
                log.debug("experiment %s created concurrently: %s", candidate, exc)
                return experiment.experiment_id
            if deleted:
                log.warning("experiment %r was deleted (ids %s): created %r (id %s) instead of restoring it",
                            name, ", ".join(deleted), candidate, experiment_id)
            return experiment_id
        raise FailedPrecondition(f"experiment {name!r}: 999 deleted experiments of that name; purge some in MLflow")

    @mlflow_calls
    def find_runs(self, experiment_id: str | None, tags: dict[str, str]) -> list[str]:
        filters = " and ".join(f"tags.`{k}` = {_quote(v)}" for k, v in tags.items())
        experiment_ids = [experiment_id] if experiment_id else [e.experiment_id for e in self._active_experiments()]
        runs = self.client.search_runs(
            experiment_ids, filters, "ACTIVE_ONLY", max_results=100, order_by=["attributes.start_time ASC"],
        )
        return [r.run_id for r in runs]

    @mlflow_calls
    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(experiment_id, tags=tags, run_name=name).run_id

    @mlflow_calls
    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    @mlflow_calls
    def log_batch(self, run_id, metrics=(), params=None, tags=None) -> None:
        metrics = [Metric(m.key, m.value, m.timestamp_ms, m.step) for m in metrics]
        params = [(k, str(v)) for k, v in (params or {}).items()]
        tags = [(k, str(v)) for k, v in (tags or {}).items()]
        # Params and tags first, metrics after: a batch is retried whole, and each
        # part is idempotent on its own.
        while metrics or params or tags:
            self.client.log_batch(
                run_id, metrics=metrics[:MAX_METRICS], params=dict(params[:MAX_PARAMS]), tags=dict(tags[:MAX_TAGS]),
            )
            metrics, params, tags = metrics[MAX_METRICS:], params[MAX_PARAMS:], tags[MAX_TAGS:]

    @mlflow_calls
    def log_dataset(self, run_id: str, dataset: DatasetRecord) -> None:
        try:
            self.client.log_inputs(run_id, [dataset_input(dataset)])
        except MlflowError as exc:
            # Two runs logging a dataset new to the experiment at once: MLflow inserts it
            # twice and one insert fails. The dataset exists now, so the retry links it.
            if "UNIQUE constraint" not in exc.message and "duplicate key" not in exc.message:
                raise
            self.client.log_inputs(run_id, [dataset_input(dataset)])

    @mlflow_calls
    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        self.client.set_terminated(run_id, status=status, end_time=end_ms)

    @mlflow_calls
    def metric_steps(self, run_id: str, keys: list[str]) -> dict[str, set[int]]:
        return {k: {m.step for m in self.client.get_metric_history(run_id, k)} for k in keys}

    # --- queries ----------------------------------------------------------------
    def _active_experiments(self):
        return self.client.all_experiments("ACTIVE_ONLY")

    @mlflow_calls
    def list_experiments(self, name_contains="", since_ms=None, until_ms=None) -> list[ExperimentRecord]:
        out = []
        needle = name_contains.lower()
        for e in self._active_experiments():
            if needle and needle not in e.name.lower():
                continue
            query = RunQuery(experiment_ids=(e.experiment_id,), since_ms=since_ms, until_ms=until_ms)
            count = self._count(query)
            if (since_ms is not None or until_ms is not None) and count == 0:
                continue
            out.append(ExperimentRecord(e.experiment_id, e.name, e.creation_time, e.last_update_time, count))
        return sorted(out, key=lambda e: e.created_ms, reverse=True)

    def _search(self, query: RunQuery, max_results: int, page_token=None):
        experiment_ids = list(query.experiment_ids) or [e.experiment_id for e in self._active_experiments()]
        return self.client.search_runs(
            experiment_ids, filter_string(query), "ACTIVE_ONLY",
            max_results=max_results, order_by=order_by(query), page_token=page_token,
        )

    def _count(self, query: RunQuery) -> int:
        total, token = 0, None
        while True:
            page = self._search(query, SEARCH_PAGE, token)
            total += len(page)
            token = page.token
            if not token:
                return total

    @mlflow_calls
    def list_runs(self, query: RunQuery) -> RunPage:
        # REST search has no offset and no count: walk the pages.
        matched, token, total = [], None, 0
        while True:
            page = self._search(query, SEARCH_PAGE, token)
            for run in page:
                if query.offset <= total < query.offset + query.page_size:
                    matched.append(run)
                total += 1
            token = page.token
            if not token:
                break
        runs = [project(self._record(r), query.columns) for r in matched]
        next_offset = query.offset + query.page_size
        return RunPage(runs, total, next_offset if next_offset < total else None)

    @mlflow_calls
    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        out = []
        for run_id in run_ids:
            try:
                run = self.client.get_run(run_id)
            except MlflowError as exc:
                if exc.not_found:
                    continue
                raise
            if run.lifecycle_stage != "active":
                continue
            record = self._record(run, check_model=True)
            out.append(record)
        return out

    @mlflow_calls
    def metric_histories(self, run_ids, keys) -> dict[tuple[str, str], list[MetricPoint]]:
        out = {}
        for run_id in run_ids:
            for key in keys:
                try:
                    history = self.client.get_metric_history(run_id, key)
                except MlflowError as exc:
                    if exc.not_found:
                        break
                    raise
                if history:
                    points = sorted(
                        (MetricPoint(m.step, m.value, m.timestamp) for m in history),
                        key=lambda p: (p.step, p.timestamp_ms),
                    )
                    out[(run_id, key)] = points
        return out

    def _record(self, run: Run, check_model: bool = False) -> RunRecord:
        dataset = None
        if run.datasets:
            ds = run.datasets[0]
            dataset = dataset_record(ds.name, ds.digest, ds.source, ds.schema, ds.profile, ds.tags)
        model_uri = run.tags.get(mlflow_tags.TAG_MODEL_URI, "")
        if not model_uri and run.model_outputs:
            model_uri = mlflow_tags.model_uri(run.run_id)
        if not model_uri and check_model and self.has_model_artifacts(run.run_id):
            model_uri = mlflow_tags.model_uri(run.run_id)
        return RunRecord(
            run_id=run.run_id,
            experiment_id=run.experiment_id,
            name=run.run_name,
            status=run.status,
            start_ms=run.start_time,
            end_ms=run.end_time,
            params=dict(run.params),
            metrics=dict(run.metrics),
            tags=dict(run.tags),
            dataset=dataset,
            model_uri=model_uri,
        )

    def has_model_artifacts(self, run_id: str) -> bool:
        """A model in the run's artifacts: a trial's packed file (packed_model.py), or one
        logged the MLflow 2 way (an MLmodel file)."""
        names = {a.path.rsplit("/", 1)[-1] for a in self.client.list_artifacts(run_id, mlflow_tags.MODEL_ARTIFACT)}
        return bool(names & {packed_model.MLMODEL, packed_model.PACKED_FILE})


__all__ = ["ALL_COLUMNS", "MlflowStore", "domain_error", "project"]
