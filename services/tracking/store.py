"""The tracking store: one abstract base, chosen implementations.

`MlflowStore` (mlflow_store.py) does everything through MLflow's REST API.
`MlflowSqlStore` (sql_store.py) writes the same way but answers queries by reading
MLflow's tables directly, read-only: MLflow's REST search is too slow at 10,000 runs.
Methods are blocking; the domain calls them in threads."""

from __future__ import annotations

import abc

from services.tracking.records import (
    DatasetRecord,
    ExperimentRecord,
    MetricPoint,
    MetricValue,
    RunPage,
    RunQuery,
    RunRecord,
)


class TrackingStore(abc.ABC):
    # --- writes -----------------------------------------------------------------
    @abc.abstractmethod
    def get_or_create_experiment(self, name: str) -> str:
        """The id of the active experiment with this name, created if missing."""

    @abc.abstractmethod
    def find_runs(self, experiment_id: str | None, tags: dict[str, str]) -> list[str]:
        """Ids of active runs carrying every one of these tags, oldest first; in one
        experiment, or in any when experiment_id is None."""

    @abc.abstractmethod
    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str: ...

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Marks the run deleted (MLflow's soft delete): gone from every search."""

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: list[MetricValue] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def log_dataset(self, run_id: str, dataset: DatasetRecord) -> None: ...

    @abc.abstractmethod
    def end_run(self, run_id: str, status: str, end_ms: int) -> None:
        """Sets the run's status (FINISHED, FAILED, KILLED) and end time."""

    @abc.abstractmethod
    def metric_steps(self, run_id: str, keys: list[str]) -> dict[str, set[int]]:
        """Steps already logged for each key: what makes writes idempotent."""

    # --- queries ----------------------------------------------------------------
    @abc.abstractmethod
    def list_experiments(
        self, name_contains: str = "", since_ms: int | None = None, until_ms: int | None = None
    ) -> list[ExperimentRecord]: ...

    @abc.abstractmethod
    def list_runs(self, query: RunQuery) -> RunPage: ...

    @abc.abstractmethod
    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """Full runs (every column) in the order asked; unknown ids are left out."""

    @abc.abstractmethod
    def metric_histories(
        self, run_ids: list[str], keys: list[str]
    ) -> dict[tuple[str, str], list[MetricPoint]]:
        """Every point of each (run, key) that has any, ordered by step then time."""

    def close(self) -> None:
        """Releases connections."""
