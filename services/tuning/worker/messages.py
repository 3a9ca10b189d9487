"""The worker's records as the messages of the data, tracking and events APIs and back:
the one translation, used by its adapters (and by the benchmarks, which read a
dataset version as a worker does)."""

from __future__ import annotations

import json

from kubetune.data.v1 import data_pb2
from kubetune.events.v1 import events_pb2 as ev
from kubetune.tracking.v1 import tracking_pb2
from services.tuning.worker.records import Column, DatasetVersion, TrialRun
from services.tuning.worker.tabular_model import BOOLEAN, CATEGORICAL, NUMERIC
from services.tuning.worker.training import EpochResult

KINDS = {
    data_pb2.COLUMN_KIND_NUMERIC: NUMERIC,
    data_pb2.COLUMN_KIND_CATEGORICAL: CATEGORICAL,
    data_pb2.COLUMN_KIND_BOOLEAN: BOOLEAN,
    # Versions registered before column kinds: every feature was a number.
    data_pb2.COLUMN_KIND_UNSPECIFIED: NUMERIC,
}
ROLES = {
    data_pb2.COLUMN_ROLE_FEATURE: "feature",
    data_pb2.COLUMN_ROLE_TARGET: "target",
    data_pb2.COLUMN_ROLE_EXCLUDED: "excluded",
    data_pb2.COLUMN_ROLE_INDEX: "index",
}


def version_from_pb(v: data_pb2.DatasetVersion) -> DatasetVersion:
    classification = v.task_kind == data_pb2.TASK_KIND_CLASSIFICATION
    return DatasetVersion(
        name=v.name, version=v.version, content_sha256=v.content_sha256, location=v.location, target=v.target,
        task_kind="classification" if classification else "regression", source_uri=v.source_uri,
        row_count=v.row_count, split_seed=v.split_seed, class_labels=tuple(v.class_labels),
        columns=tuple(Column(c.name, c.dtype, ROLES.get(c.role, ""), KINDS[c.kind]) for c in v.columns),
    )


def run_to_pb(run: TrialRun) -> tracking_pb2.CreateTrialRunRequest:
    request = tracking_pb2.CreateTrialRunRequest(
        experiment_id=run.experiment_id, parent_run_id=run.parent_run_id, study_id=run.study_id, trial=run.trial,
        params=run.params, tags=run.tags,
    )
    d = run.dataset
    if d is not None:
        request.dataset.CopyFrom(tracking_pb2.DatasetInput(
            name=d.name, version=d.version, content_sha256=d.content_sha256, source_uri=d.source_uri,
            row_count=d.row_count, schema_json=json.dumps([{"name": c.name, "type": c.dtype} for c in d.columns]),
        ))
    return request


def started_to_pb(study_id: str, trial: int, params: dict[str, str], mlflow_run_id: str,
                  worker: str) -> ev.TrialStarted:
    return ev.TrialStarted(study_id=study_id, trial=trial, params=params, mlflow_run_id=mlflow_run_id, worker=worker)


def epoch_to_pb(study_id: str, trial: int, mlflow_run_id: str, e: EpochResult) -> ev.EpochCompleted:
    return ev.EpochCompleted(study_id=study_id, trial=trial, mlflow_run_id=mlflow_run_id, epoch=e.epoch,
                             train_loss=e.train_loss, val_loss=e.val_loss, val_accuracy=e.val_accuracy,
                             elapsed_s=e.elapsed_s)
