"""The catalog's records: plain dataclasses, stored as JSON, mapped to protobuf by the servicer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass, field

DEFAULT_SPLIT_SEED = 42


class Layout(enum.StrEnum):
    XY_FOLDER = "xy_folder"
    SINGLE_TABLE = "single_table"


class TaskKind(enum.StrEnum):
    AUTO = "auto"  # detect from the target
    REGRESSION = "regression"
    CLASSIFICATION = "classification"


class MissingPolicy(enum.StrEnum):
    IMPUTE = "impute"  # keep missing features: the model imputes them (fitted on the training split)
    DROP_ROWS = "drop_rows"
    REFUSE = "refuse"


class Kind(enum.StrEnum):
    """How a feature enters the model; "" for columns that are not features."""

    NONE = ""
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class Role(enum.StrEnum):
    FEATURE = "feature"
    TARGET = "target"
    EXCLUDED = "excluded"
    INDEX = "index"


@dataclass(frozen=True)
class IngestOptions:
    target_column: str = ""
    exclude_columns: tuple[str, ...] = ()
    missing_policy: MissingPolicy = MissingPolicy.IMPUTE
    task_kind: TaskKind = TaskKind.AUTO
    split_seed: int = 0
    categorical_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()

    def normalized(self, layout: Layout) -> "IngestOptions":
        """The canonical form: the one that enters the version id."""
        return IngestOptions(
            target_column="" if layout is Layout.XY_FOLDER else self.target_column,
            exclude_columns=tuple(sorted(set(self.exclude_columns))),
            missing_policy=MissingPolicy(self.missing_policy),
            task_kind=TaskKind(self.task_kind),
            split_seed=self.split_seed or DEFAULT_SPLIT_SEED,
            categorical_columns=tuple(sorted(set(self.categorical_columns))),
            numeric_columns=tuple(sorted(set(self.numeric_columns))),
        )


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    role: Role
    kind: Kind = Kind.NONE
    note: str = ""  # why it has its role or kind, when that was decided for the user
    missing: int = 0
    distinct: int = 0


@dataclass(frozen=True)
class Stats:
    """Of the values present (missing ones left out); `missing` counts source cells."""

    name: str
    min: float
    max: float
    mean: float
    std: float
    missing: int = 0


@dataclass(frozen=True)
class TargetStats:
    min: float
    max: float
    mean: float
    std: float
    distinct: int


@dataclass(frozen=True)
class Table:
    """What ingestion made of a source: the stored Parquet file and its description."""

    path: str
    sha256: str
    size_bytes: int
    columns: list[Column]
    target: str
    row_count: int
    rows_dropped: int
    target_stats: TargetStats
    task_kind: TaskKind
    class_labels: list[str]
    stats: list[Stats]
    rows_missing_target: int = 0

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role is Role.FEATURE]


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: str
    content_sha256: str
    source_uri: str
    source_sha256: str
    source_etags: dict[str, str]
    layout: Layout
    columns: list[Column]
    target: str
    row_count: int
    target_stats: TargetStats
    task_kind: TaskKind
    class_labels: list[str]
    split_seed: int
    created_at: dt.datetime
    location: str
    size_bytes: int
    missing_policy: MissingPolicy
    rows_dropped: int
    stats: list[Stats] = field(default_factory=list)
    rows_missing_target: int = 0

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns if c.role is Role.FEATURE]

    def to_json(self) -> dict:
        record = dataclasses.asdict(self)
        record["created_at"] = self.created_at.isoformat()
        return record

    @classmethod
    def from_json(cls, record: dict) -> "DatasetVersion":
        record = dict(record)
        record["created_at"] = dt.datetime.fromisoformat(record["created_at"])
        record["layout"] = Layout(record["layout"])
        record["task_kind"] = TaskKind(record["task_kind"])
        record["missing_policy"] = MissingPolicy(_POLICY_RENAMED.get(record["missing_policy"], record["missing_policy"]))
        record["columns"] = [
            Column(c["name"], c["dtype"], Role(c["role"]), Kind(c["kind"] if "kind" in c else _kind_of(c)), c.get("note", ""),
                   c.get("missing", 0), c.get("distinct", 0))
            for c in record["columns"]
        ]
        record["target_stats"] = TargetStats(**record["target_stats"])
        record["stats"] = [Stats(**s) for s in record.get("stats", [])]
        return cls(**record)


# Versions stored before column kinds: every feature was a number, "fill_mean" filled them.
_POLICY_RENAMED = {"fill_mean": "impute"}


def _kind_of(column: dict) -> str:
    return Kind.NUMERIC if column["role"] == Role.FEATURE else Kind.NONE


@dataclass(frozen=True)
class Reference:
    """Something outside the data service that uses a version: a study or a model."""

    kind: str  # "study" or "model"
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"
