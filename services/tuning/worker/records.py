"""What a trial takes from the data service and gives the tracking service: plain data,
no protobuf (services/tuning/worker/messages.py turns the messages into these and
back). A ticket and a trial's end are the tuning service's records (services/tuning/
records.py): the worker is tuning's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Column(NamedTuple):
    """One column of the stored table. A tuple rather than a frozen dataclass: a version
    is read for every trial, a column at a time, and a tuple builds in a quarter of the
    time (a thousand columns: ~0.3 ms where a frozen dataclass took ~1.1 ms)."""
    name: str
    dtype: str  # as stored: float64, string, int64
    role: str  # "feature", "target", "excluded", "index" or "" (unspecified)
    kind: str  # how a feature enters the model: tabular_model's NUMERIC, CATEGORICAL or BOOLEAN


@dataclass(frozen=True)
class DatasetVersion:
    """What a trial needs of a dataset version: where its table is, what it holds."""
    name: str
    version: str
    content_sha256: str
    location: str  # file:///... or s3://...
    target: str
    task_kind: str  # "classification" or "regression"
    source_uri: str = ""
    row_count: int = 0
    split_seed: int = 0  # 0: the default seed
    class_labels: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()

    @property
    def features(self) -> dict[str, str]:
        """The features, in order, with how each enters the model."""
        return {c.name: c.kind for c in self.columns if c.role == "feature"}


@dataclass(frozen=True)
class TrialRun:
    """A trial's MLflow run as the worker asks tracking for it: a child of its study's
    run, with the trial's parameters, tags and dataset."""
    experiment_id: str
    parent_run_id: str
    study_id: str
    trial: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    dataset: DatasetVersion | None = None
