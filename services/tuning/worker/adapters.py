"""The worker's ports for the trial thread, implemented over gRPC and the Optuna
storage: the typed data and tracking clients, called on the worker's event loop
(grpc.aio calls must be made there) while the trial thread waits; and whether a
study was stopped, from study events checked against the storage."""

from __future__ import annotations

from kubetune.data.v1 import data_pb2
from kubetune.tracking.v1 import tracking_pb2
from services.common.clients import DataClient, TrackingClient
from services.tuning import store


class Backends:
    """The data and tracking services for a trial: both calls are safe to repeat (a
    read, and a run keyed by (study, trial)), so each rides out a restart within its
    backend's retry budget."""

    def __init__(self, worker, data: DataClient, tracking: TrackingClient):
        self.worker, self.data, self.tracking = worker, data, tracking

    def _wait(self, client) -> float:
        # What one call may take at most, its retries included.
        return client.backend.retry_budget_s + 2 * client.backend.deadline_s

    def get_dataset(self, ref: str) -> data_pb2.DatasetVersion:
        return self.worker.call(lambda: self.data.get_dataset(ref), timeout=self._wait(self.data))

    def create_run(self, request: tracking_pb2.CreateTrialRunRequest) -> str:
        return self.worker.call(lambda: self.tracking.create_trial_run(request), timeout=self._wait(self.tracking))


class StoppedStudies:
    """The set fed by study events is a hint (a core NATS subscription can miss
    study_resumed): the storage has the last word, and a stale entry is dropped."""

    def __init__(self, worker, storage):
        self.worker, self.storage = worker, storage

    def __call__(self, study_id: str) -> bool:
        if study_id not in self.worker.stopped_studies:
            return False
        try:
            state = self.storage.get_study_user_attrs(self.storage.get_study_id_from_name(study_id)).get(store.STATE)
        except Exception:  # noqa: BLE001 - the storage unreachable: trust the hint
            return True
        if state == store.RUNNING:
            self.worker.stopped_studies.discard(study_id)
            return False
        return True
