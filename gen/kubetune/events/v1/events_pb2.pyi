import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Event(_message.Message):
    __slots__ = ("id", "time", "subject", "dataset_registered", "dataset_deleted", "download_progressed", "study_created", "study_completed", "study_stopped", "study_resumed", "trial_started", "epoch_completed", "trial_completed", "trial_pruned", "trial_failed", "model_registered", "alias_set")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DATASET_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    DATASET_DELETED_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_PROGRESSED_FIELD_NUMBER: _ClassVar[int]
    STUDY_CREATED_FIELD_NUMBER: _ClassVar[int]
    STUDY_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    STUDY_STOPPED_FIELD_NUMBER: _ClassVar[int]
    STUDY_RESUMED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_STARTED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_PRUNED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODEL_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ALIAS_SET_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    subject: str
    dataset_registered: DatasetRegistered
    dataset_deleted: DatasetDeleted
    download_progressed: DownloadProgressed
    study_created: StudyCreated
    study_completed: StudyCompleted
    study_stopped: StudyStopped
    study_resumed: StudyResumed
    trial_started: TrialStarted
    epoch_completed: EpochCompleted
    trial_completed: TrialCompleted
    trial_pruned: TrialPruned
    trial_failed: TrialFailed
    model_registered: ModelRegistered
    alias_set: AliasSet
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., dataset_registered: _Optional[_Union[DatasetRegistered, _Mapping]] = ..., dataset_deleted: _Optional[_Union[DatasetDeleted, _Mapping]] = ..., download_progressed: _Optional[_Union[DownloadProgressed, _Mapping]] = ..., study_created: _Optional[_Union[StudyCreated, _Mapping]] = ..., study_completed: _Optional[_Union[StudyCompleted, _Mapping]] = ..., study_stopped: _Optional[_Union[StudyStopped, _Mapping]] = ..., study_resumed: _Optional[_Union[StudyResumed, _Mapping]] = ..., trial_started: _Optional[_Union[TrialStarted, _Mapping]] = ..., epoch_completed: _Optional[_Union[EpochCompleted, _Mapping]] = ..., trial_completed: _Optional[_Union[TrialCompleted, _Mapping]] = ..., trial_pruned: _Optional[_Union[TrialPruned, _Mapping]] = ..., trial_failed: _Optional[_Union[TrialFailed, _Mapping]] = ..., model_registered: _Optional[_Union[ModelRegistered, _Mapping]] = ..., alias_set: _Optional[_Union[AliasSet, _Mapping]] = ...) -> None: ...

class DatasetRegistered(_message.Message):
    __slots__ = ("name", "version", "content_sha256", "row_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    content_sha256: str
    row_count: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., content_sha256: _Optional[str] = ..., row_count: _Optional[int] = ...) -> None: ...

class DatasetDeleted(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DownloadProgressed(_message.Message):
    __slots__ = ("name", "uri", "bytes_done", "bytes_total")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    bytes_done: int
    bytes_total: int
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...

class StudyCreated(_message.Message):
    __slots__ = ("study_id", "dataset_version", "n_trials")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    N_TRIALS_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    dataset_version: str
    n_trials: int
    def __init__(self, study_id: _Optional[str] = ..., dataset_version: _Optional[str] = ..., n_trials: _Optional[int] = ...) -> None: ...

class StudyCompleted(_message.Message):
    __slots__ = ("study_id", "best_trial", "best_values", "best_params", "mlflow_run_id", "complete", "pruned", "fail")
    class BestParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_FIELD_NUMBER: _ClassVar[int]
    BEST_VALUES_FIELD_NUMBER: _ClassVar[int]
    BEST_PARAMS_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    best_trial: int
    best_values: _containers.RepeatedScalarFieldContainer[float]
    best_params: _containers.ScalarMap[str, str]
    mlflow_run_id: str
    complete: int
    pruned: int
    fail: int
    def __init__(self, study_id: _Optional[str] = ..., best_trial: _Optional[int] = ..., best_values: _Optional[_Iterable[float]] = ..., best_params: _Optional[_Mapping[str, str]] = ..., mlflow_run_id: _Optional[str] = ..., complete: _Optional[int] = ..., pruned: _Optional[int] = ..., fail: _Optional[int] = ...) -> None: ...

class StudyStopped(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class StudyResumed(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class TrialStarted(_message.Message):
    __slots__ = ("study_id", "trial", "params", "mlflow_run_id", "worker")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    trial: int
    params: _containers.ScalarMap[str, str]
    mlflow_run_id: str
    worker: str
    def __init__(self, study_id: _Optional[str] = ..., trial: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., mlflow_run_id: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class EpochCompleted(_message.Message):
    __slots__ = ("study_id", "trial", "mlflow_run_id", "epoch", "train_loss", "val_loss", "val_accuracy", "elapsed_s")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    VAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    trial: int
    mlflow_run_id: str
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    elapsed_s: float
    def __init__(self, study_id: _Optional[str] = ..., trial: _Optional[int] = ..., mlflow_run_id: _Optional[str] = ..., epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., val_loss: _Optional[float] = ..., val_accuracy: _Optional[float] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class TrialCompleted(_message.Message):
    __slots__ = ("study_id", "trial", "mlflow_run_id", "values", "metrics", "epochs_done", "best_epoch")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_DONE_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    trial: int
    mlflow_run_id: str
    values: _containers.RepeatedScalarFieldContainer[float]
    metrics: _containers.ScalarMap[str, float]
    epochs_done: int
    best_epoch: int
    def __init__(self, study_id: _Optional[str] = ..., trial: _Optional[int] = ..., mlflow_run_id: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., epochs_done: _Optional[int] = ..., best_epoch: _Optional[int] = ...) -> None: ...

class TrialPruned(_message.Message):
    __slots__ = ("study_id", "trial", "mlflow_run_id", "epochs_done", "reason", "metrics", "best_epoch")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_DONE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    trial: int
    mlflow_run_id: str
    epochs_done: int
    reason: str
    metrics: _containers.ScalarMap[str, float]
    best_epoch: int
    def __init__(self, study_id: _Optional[str] = ..., trial: _Optional[int] = ..., mlflow_run_id: _Optional[str] = ..., epochs_done: _Optional[int] = ..., reason: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., best_epoch: _Optional[int] = ...) -> None: ...

class TrialFailed(_message.Message):
    __slots__ = ("study_id", "trial", "mlflow_run_id", "reason", "metrics", "best_epoch")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    trial: int
    mlflow_run_id: str
    reason: str
    metrics: _containers.ScalarMap[str, float]
    best_epoch: int
    def __init__(self, study_id: _Optional[str] = ..., trial: _Optional[int] = ..., mlflow_run_id: _Optional[str] = ..., reason: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., best_epoch: _Optional[int] = ...) -> None: ...

class ModelRegistered(_message.Message):
    __slots__ = ("name", "version", "run_id", "study_id", "dataset_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    run_id: str
    study_id: str
    dataset_version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., run_id: _Optional[str] = ..., study_id: _Optional[str] = ..., dataset_version: _Optional[str] = ...) -> None: ...

class AliasSet(_message.Message):
    __slots__ = ("name", "alias", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...
