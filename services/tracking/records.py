"""What the tracking domain and its stores pass between them: plain data, no MLflow
and no protobuf types, so a store can be swapped without touching the domain."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubetune_common.errors import InvalidArgument

# Attributes a filter or a sort may name (FIELD_KIND_ATTRIBUTE).
ATTRIBUTES = ("status", "started_at", "ended_at", "run_name", "run_id")
OPS = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    version: str = ""
    content_sha256: str = ""
    source_uri: str = ""
    schema_json: str = ""
    row_count: int = 0


@dataclass
class ExperimentRecord:
    id: str
    name: str
    created_ms: int
    updated_ms: int
    run_count: int = 0


@dataclass
class RunRecord:
    run_id: str
    experiment_id: str
    name: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    start_ms: int | None = None
    end_ms: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    dataset: DatasetRecord | None = None
    model_uri: str = ""


@dataclass(frozen=True)
class RunFilter:
    kind: str  # metric, param, tag, attribute
    key: str
    op: str  # one of OPS
    value: str


# Compared as strings only for (in)equality, as MLflow's search refuses `<` on them.
STRING_ATTRIBUTES = frozenset({"status", "run_name", "run_id"})


def check_string_comparison(f: RunFilter) -> None:
    if f.op not in ("=", "!=") and (f.kind in ("param", "tag") or (f.kind == "attribute" and f.key in STRING_ATTRIBUTES)):
        raise InvalidArgument(f"filter {f.kind} {f.key} {f.op}: {f.kind}s are text, compared only with = and !=")


@dataclass(frozen=True)
class Columns:
    """Which params, metrics and tags a listing fills in. `None` for a kind: all of it."""

    metrics: frozenset[str] | None = None
    params: frozenset[str] | None = None
    tags: frozenset[str] | None = None
    dataset: bool = True
    model_uri: bool = True

    @property
    def everything(self) -> bool:
        return self.metrics is None and self.params is None and self.tags is None


ALL_COLUMNS = Columns()


@dataclass(frozen=True)
class RunQuery:
    experiment_ids: tuple[str, ...] = ()
    filters: tuple[RunFilter, ...] = ()
    sort_kind: str = "attribute"
    sort_key: str = "started_at"
    descending: bool = True
    page_size: int = 100
    offset: int = 0
    columns: Columns = ALL_COLUMNS
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass
class RunPage:
    runs: list[RunRecord]
    total: int
    # Offset of the next page, None when this page is the last.
    next_offset: int | None


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp_ms: int


@dataclass(frozen=True)
class MetricValue:
    """One metric value to write."""

    key: str
    value: float
    timestamp_ms: int
    step: int


# -- the bus's events, as the recorder writes them into runs ---------------------------------

@dataclass(frozen=True)
class EpochCompleted:
    study_id: str
    trial: int
    mlflow_run_id: str  # "" when the run was not known yet: found by its tags
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float  # NaN for regression


# The kinds of event that end a trial (each carries a TrialEnd).
TRIAL_ENDS = frozenset({"trial_completed", "trial_pruned", "trial_failed"})


@dataclass(frozen=True)
class TrialEnd:
    """A trial completed, pruned or failed: its saved epoch's summary and why it stopped."""
    study_id: str
    trial: int
    mlflow_run_id: str
    metrics: dict[str, float]
    best_epoch: int
    reason: str = ""


@dataclass(frozen=True)
class StudyCompleted:
    study_id: str
    mlflow_run_id: str
    best_trial: int  # -1: none
    best_values: tuple[float, ...]
    best_params: dict[str, str]
    complete: int
    pruned: int
    fail: int


@dataclass(frozen=True)
class Event:
    """One event off the bus: `kind` is its payload's name in kubetune.events.v1.Event
    (epoch_completed, trial_completed...), `payload` its content where the recorder
    writes that kind, else None."""
    id: str
    kind: str
    time_ms: int
    payload: EpochCompleted | TrialEnd | StudyCompleted | None = None
