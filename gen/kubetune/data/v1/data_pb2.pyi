import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    TASK_KIND_REGRESSION: _ClassVar[TaskKind]
    TASK_KIND_CLASSIFICATION: _ClassVar[TaskKind]

class MissingPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISSING_POLICY_UNSPECIFIED: _ClassVar[MissingPolicy]
    MISSING_POLICY_DROP_ROWS: _ClassVar[MissingPolicy]
    MISSING_POLICY_IMPUTE: _ClassVar[MissingPolicy]
    MISSING_POLICY_REFUSE: _ClassVar[MissingPolicy]

class Layout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYOUT_UNSPECIFIED: _ClassVar[Layout]
    LAYOUT_XY_FOLDER: _ClassVar[Layout]
    LAYOUT_SINGLE_TABLE: _ClassVar[Layout]

class ColumnRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_ROLE_UNSPECIFIED: _ClassVar[ColumnRole]
    COLUMN_ROLE_FEATURE: _ClassVar[ColumnRole]
    COLUMN_ROLE_TARGET: _ClassVar[ColumnRole]
    COLUMN_ROLE_EXCLUDED: _ClassVar[ColumnRole]
    COLUMN_ROLE_INDEX: _ClassVar[ColumnRole]

class ColumnKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_KIND_UNSPECIFIED: _ClassVar[ColumnKind]
    COLUMN_KIND_NUMERIC: _ClassVar[ColumnKind]
    COLUMN_KIND_CATEGORICAL: _ClassVar[ColumnKind]
    COLUMN_KIND_BOOLEAN: _ClassVar[ColumnKind]
TASK_KIND_UNSPECIFIED: TaskKind
TASK_KIND_REGRESSION: TaskKind
TASK_KIND_CLASSIFICATION: TaskKind
MISSING_POLICY_UNSPECIFIED: MissingPolicy
MISSING_POLICY_DROP_ROWS: MissingPolicy
MISSING_POLICY_IMPUTE: MissingPolicy
MISSING_POLICY_REFUSE: MissingPolicy
LAYOUT_UNSPECIFIED: Layout
LAYOUT_XY_FOLDER: Layout
LAYOUT_SINGLE_TABLE: Layout
COLUMN_ROLE_UNSPECIFIED: ColumnRole
COLUMN_ROLE_FEATURE: ColumnRole
COLUMN_ROLE_TARGET: ColumnRole
COLUMN_ROLE_EXCLUDED: ColumnRole
COLUMN_ROLE_INDEX: ColumnRole
COLUMN_KIND_UNSPECIFIED: ColumnKind
COLUMN_KIND_NUMERIC: ColumnKind
COLUMN_KIND_CATEGORICAL: ColumnKind
COLUMN_KIND_BOOLEAN: ColumnKind

class IngestOptions(_message.Message):
    __slots__ = ("target_column", "exclude_columns", "missing_policy", "task_kind", "split_seed", "categorical_columns", "numeric_columns")
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MISSING_POLICY_FIELD_NUMBER: _ClassVar[int]
    TASK_KIND_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    target_column: str
    exclude_columns: _containers.RepeatedScalarFieldContainer[str]
    missing_policy: MissingPolicy
    task_kind: TaskKind
    split_seed: int
    categorical_columns: _containers.RepeatedScalarFieldContainer[str]
    numeric_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, target_column: _Optional[str] = ..., exclude_columns: _Optional[_Iterable[str]] = ..., missing_policy: _Optional[_Union[MissingPolicy, str]] = ..., task_kind: _Optional[_Union[TaskKind, str]] = ..., split_seed: _Optional[int] = ..., categorical_columns: _Optional[_Iterable[str]] = ..., numeric_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterDatasetRequest(_message.Message):
    __slots__ = ("name", "uri", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    options: IngestOptions
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., options: _Optional[_Union[IngestOptions, _Mapping]] = ...) -> None: ...

class RegisterDatasetResponse(_message.Message):
    __slots__ = ("version", "created")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    version: DatasetVersion
    created: bool
    def __init__(self, version: _Optional[_Union[DatasetVersion, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "filename", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    filename: str
    options: IngestOptions
    def __init__(self, name: _Optional[str] = ..., filename: _Optional[str] = ..., options: _Optional[_Union[IngestOptions, _Mapping]] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadDatasetResponse(_message.Message):
    __slots__ = ("version", "created")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    version: DatasetVersion
    created: bool
    def __init__(self, version: _Optional[_Union[DatasetVersion, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "dtype", "role", "kind", "note", "missing", "distinct")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    role: ColumnRole
    kind: ColumnKind
    note: str
    missing: int
    distinct: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., role: _Optional[_Union[ColumnRole, str]] = ..., kind: _Optional[_Union[ColumnKind, str]] = ..., note: _Optional[str] = ..., missing: _Optional[int] = ..., distinct: _Optional[int] = ...) -> None: ...

class TargetStats(_message.Message):
    __slots__ = ("min", "max", "mean", "std", "distinct")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    mean: float
    std: float
    distinct: int
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., distinct: _Optional[int] = ...) -> None: ...

class DatasetVersion(_message.Message):
    __slots__ = ("name", "version", "content_sha256", "source_uri", "source_etags", "layout", "columns", "target", "row_count", "target_stats", "task_kind", "class_labels", "split_seed", "created_at", "location", "size_bytes", "missing_policy", "rows_dropped", "rows_missing_target")
    class SourceEtagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ETAGS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    TARGET_STATS_FIELD_NUMBER: _ClassVar[int]
    TASK_KIND_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABELS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MISSING_POLICY_FIELD_NUMBER: _ClassVar[int]
    ROWS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ROWS_MISSING_TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    content_sha256: str
    source_uri: str
    source_etags: _containers.ScalarMap[str, str]
    layout: Layout
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    target: str
    row_count: int
    target_stats: TargetStats
    task_kind: TaskKind
    class_labels: _containers.RepeatedScalarFieldContainer[str]
    split_seed: int
    created_at: _timestamp_pb2.Timestamp
    location: str
    size_bytes: int
    missing_policy: MissingPolicy
    rows_dropped: int
    rows_missing_target: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., content_sha256: _Optional[str] = ..., source_uri: _Optional[str] = ..., source_etags: _Optional[_Mapping[str, str]] = ..., layout: _Optional[_Union[Layout, str]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., target: _Optional[str] = ..., row_count: _Optional[int] = ..., target_stats: _Optional[_Union[TargetStats, _Mapping]] = ..., task_kind: _Optional[_Union[TaskKind, str]] = ..., class_labels: _Optional[_Iterable[str]] = ..., split_seed: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., location: _Optional[str] = ..., size_bytes: _Optional[int] = ..., missing_policy: _Optional[_Union[MissingPolicy, str]] = ..., rows_dropped: _Optional[int] = ..., rows_missing_target: _Optional[int] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[DatasetVersion]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[DatasetVersion, _Mapping]]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("name_prefix",)
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    name_prefix: str
    def __init__(self, name_prefix: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: DatasetVersion
    def __init__(self, version: _Optional[_Union[DatasetVersion, _Mapping]] = ...) -> None: ...

class PreviewDatasetRequest(_message.Message):
    __slots__ = ("ref", "rows", "bins")
    REF_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    rows: int
    bins: int
    def __init__(self, ref: _Optional[str] = ..., rows: _Optional[int] = ..., bins: _Optional[int] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("values", "cells")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    cells: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[float]] = ..., cells: _Optional[_Iterable[str]] = ...) -> None: ...

class ColumnStats(_message.Message):
    __slots__ = ("name", "min", "max", "mean", "std", "missing", "histogram_counts", "histogram_edges", "categories")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_COUNTS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_EDGES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    min: float
    max: float
    mean: float
    std: float
    missing: int
    histogram_counts: _containers.RepeatedScalarFieldContainer[int]
    histogram_edges: _containers.RepeatedScalarFieldContainer[float]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., missing: _Optional[int] = ..., histogram_counts: _Optional[_Iterable[int]] = ..., histogram_edges: _Optional[_Iterable[float]] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class PreviewDatasetResponse(_message.Message):
    __slots__ = ("version", "columns", "rows", "stats")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    version: DatasetVersion
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    stats: _containers.RepeatedCompositeFieldContainer[ColumnStats]
    def __init__(self, version: _Optional[_Union[DatasetVersion, _Mapping]] = ..., columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., stats: _Optional[_Iterable[_Union[ColumnStats, _Mapping]]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
