import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from kubetune.events.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_MINIMIZE: _ClassVar[Direction]
    DIRECTION_MAXIMIZE: _ClassVar[Direction]

class Sampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLER_UNSPECIFIED: _ClassVar[Sampler]
    SAMPLER_TPE: _ClassVar[Sampler]
    SAMPLER_RANDOM: _ClassVar[Sampler]
    SAMPLER_CMAES: _ClassVar[Sampler]
    SAMPLER_QMC: _ClassVar[Sampler]
    SAMPLER_NSGA2: _ClassVar[Sampler]
    SAMPLER_GRID: _ClassVar[Sampler]

class Pruner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRUNER_UNSPECIFIED: _ClassVar[Pruner]
    PRUNER_MEDIAN: _ClassVar[Pruner]
    PRUNER_HYPERBAND: _ClassVar[Pruner]
    PRUNER_SUCCESSIVE_HALVING: _ClassVar[Pruner]
    PRUNER_NONE: _ClassVar[Pruner]

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDY_STATE_UNSPECIFIED: _ClassVar[StudyState]
    STUDY_STATE_RUNNING: _ClassVar[StudyState]
    STUDY_STATE_STOPPED: _ClassVar[StudyState]
    STUDY_STATE_COMPLETED: _ClassVar[StudyState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_QUEUED: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETE: _ClassVar[TrialState]
    TRIAL_STATE_PRUNED: _ClassVar[TrialState]
    TRIAL_STATE_FAIL: _ClassVar[TrialState]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_MINIMIZE: Direction
DIRECTION_MAXIMIZE: Direction
SAMPLER_UNSPECIFIED: Sampler
SAMPLER_TPE: Sampler
SAMPLER_RANDOM: Sampler
SAMPLER_CMAES: Sampler
SAMPLER_QMC: Sampler
SAMPLER_NSGA2: Sampler
SAMPLER_GRID: Sampler
PRUNER_UNSPECIFIED: Pruner
PRUNER_MEDIAN: Pruner
PRUNER_HYPERBAND: Pruner
PRUNER_SUCCESSIVE_HALVING: Pruner
PRUNER_NONE: Pruner
STUDY_STATE_UNSPECIFIED: StudyState
STUDY_STATE_RUNNING: StudyState
STUDY_STATE_STOPPED: StudyState
STUDY_STATE_COMPLETED: StudyState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_QUEUED: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETE: TrialState
TRIAL_STATE_PRUNED: TrialState
TRIAL_STATE_FAIL: TrialState

class FloatRange(_message.Message):
    __slots__ = ("low", "high", "log", "step")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    log: bool
    step: float
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ..., log: _Optional[bool] = ..., step: _Optional[float] = ...) -> None: ...

class IntRange(_message.Message):
    __slots__ = ("low", "high", "step", "log")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    low: int
    high: int
    step: int
    log: bool
    def __init__(self, low: _Optional[int] = ..., high: _Optional[int] = ..., step: _Optional[int] = ..., log: _Optional[bool] = ...) -> None: ...

class Categorical(_message.Message):
    __slots__ = ("choices",)
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    choices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, choices: _Optional[_Iterable[str]] = ...) -> None: ...

class ParamSpec(_message.Message):
    __slots__ = ("name", "float_range", "int_range", "categorical")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOAT_RANGE_FIELD_NUMBER: _ClassVar[int]
    INT_RANGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    float_range: FloatRange
    int_range: IntRange
    categorical: Categorical
    def __init__(self, name: _Optional[str] = ..., float_range: _Optional[_Union[FloatRange, _Mapping]] = ..., int_range: _Optional[_Union[IntRange, _Mapping]] = ..., categorical: _Optional[_Union[Categorical, _Mapping]] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ("metric", "direction")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    metric: str
    direction: Direction
    def __init__(self, metric: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ...) -> None: ...

class StudySpec(_message.Message):
    __slots__ = ("name", "dataset", "search_space", "objectives", "sampler", "seed", "pruner", "n_trials", "max_parallel", "timeout_seconds", "early_stopping_patience", "max_epochs", "pruner_warmup_epochs", "cv_folds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRUNER_FIELD_NUMBER: _ClassVar[int]
    N_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PRUNER_WARMUP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    CV_FOLDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset: str
    search_space: _containers.RepeatedCompositeFieldContainer[ParamSpec]
    objectives: _containers.RepeatedCompositeFieldContainer[Objective]
    sampler: Sampler
    seed: int
    pruner: Pruner
    n_trials: int
    max_parallel: int
    timeout_seconds: float
    early_stopping_patience: int
    max_epochs: int
    pruner_warmup_epochs: int
    cv_folds: int
    def __init__(self, name: _Optional[str] = ..., dataset: _Optional[str] = ..., search_space: _Optional[_Iterable[_Union[ParamSpec, _Mapping]]] = ..., objectives: _Optional[_Iterable[_Union[Objective, _Mapping]]] = ..., sampler: _Optional[_Union[Sampler, str]] = ..., seed: _Optional[int] = ..., pruner: _Optional[_Union[Pruner, str]] = ..., n_trials: _Optional[int] = ..., max_parallel: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., early_stopping_patience: _Optional[int] = ..., max_epochs: _Optional[int] = ..., pruner_warmup_epochs: _Optional[int] = ..., cv_folds: _Optional[int] = ...) -> None: ...

class TrialCounts(_message.Message):
    __slots__ = ("queued", "running", "complete", "pruned", "fail")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    FAIL_FIELD_NUMBER: _ClassVar[int]
    queued: int
    running: int
    complete: int
    pruned: int
    fail: int
    def __init__(self, queued: _Optional[int] = ..., running: _Optional[int] = ..., complete: _Optional[int] = ..., pruned: _Optional[int] = ..., fail: _Optional[int] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("study_id", "number", "state", "params", "values", "epochs_done", "started_at", "finished_at", "mlflow_run_id", "worker", "reason", "val_loss_curve", "train_loss_curve", "metrics")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_DONE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VAL_LOSS_CURVE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_CURVE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    number: int
    state: TrialState
    params: _containers.ScalarMap[str, str]
    values: _containers.RepeatedScalarFieldContainer[float]
    epochs_done: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    mlflow_run_id: str
    worker: str
    reason: str
    val_loss_curve: _containers.RepeatedScalarFieldContainer[float]
    train_loss_curve: _containers.RepeatedScalarFieldContainer[float]
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, study_id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., params: _Optional[_Mapping[str, str]] = ..., values: _Optional[_Iterable[float]] = ..., epochs_done: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mlflow_run_id: _Optional[str] = ..., worker: _Optional[str] = ..., reason: _Optional[str] = ..., val_loss_curve: _Optional[_Iterable[float]] = ..., train_loss_curve: _Optional[_Iterable[float]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Baseline(_message.Message):
    __slots__ = ("model", "mlflow_run_id", "metrics", "error")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    model: str
    mlflow_run_id: str
    metrics: _containers.ScalarMap[str, float]
    error: str
    def __init__(self, model: _Optional[str] = ..., mlflow_run_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., error: _Optional[str] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("id", "spec", "state", "dataset_version", "counts", "best_trial", "best_values", "created_at", "finished_at", "mlflow_experiment_id", "mlflow_run_id", "task_kind", "baseline")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_FIELD_NUMBER: _ClassVar[int]
    BEST_VALUES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_KIND_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: StudySpec
    state: StudyState
    dataset_version: str
    counts: TrialCounts
    best_trial: Trial
    best_values: _containers.RepeatedScalarFieldContainer[float]
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    mlflow_experiment_id: str
    mlflow_run_id: str
    task_kind: str
    baseline: Baseline
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[StudySpec, _Mapping]] = ..., state: _Optional[_Union[StudyState, str]] = ..., dataset_version: _Optional[str] = ..., counts: _Optional[_Union[TrialCounts, _Mapping]] = ..., best_trial: _Optional[_Union[Trial, _Mapping]] = ..., best_values: _Optional[_Iterable[float]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mlflow_experiment_id: _Optional[str] = ..., mlflow_run_id: _Optional[str] = ..., task_kind: _Optional[str] = ..., baseline: _Optional[_Union[Baseline, _Mapping]] = ...) -> None: ...

class CreateStudyRequest(_message.Message):
    __slots__ = ("spec", "validate_only")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    spec: StudySpec
    validate_only: bool
    def __init__(self, spec: _Optional[_Union[StudySpec, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class GetStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ("states", "dataset")
    STATES_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[StudyState]
    dataset: str
    def __init__(self, states: _Optional[_Iterable[_Union[StudyState, str]]] = ..., dataset: _Optional[str] = ...) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies",)
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[Study]
    def __init__(self, studies: _Optional[_Iterable[_Union[Study, _Mapping]]] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ("study_id", "states", "with_curves")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    WITH_CURVES_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    states: _containers.RepeatedScalarFieldContainer[TrialState]
    with_curves: bool
    def __init__(self, study_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TrialState, str]]] = ..., with_curves: _Optional[bool] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ("trials",)
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class WatchStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class StudySnapshot(_message.Message):
    __slots__ = ("study", "trials")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    study: Study
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class WatchStudyResponse(_message.Message):
    __slots__ = ("snapshot", "event")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    snapshot: StudySnapshot
    event: _events_pb2.Event
    def __init__(self, snapshot: _Optional[_Union[StudySnapshot, _Mapping]] = ..., event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ...) -> None: ...

class StopStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class StopStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class ResumeStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class ResumeStudyResponse(_message.Message):
    __slots__ = ("study",)
    STUDY_FIELD_NUMBER: _ClassVar[int]
    study: Study
    def __init__(self, study: _Optional[_Union[Study, _Mapping]] = ...) -> None: ...

class StudySummaryRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("trial", "value", "best_so_far", "state")
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BEST_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    trial: int
    value: float
    best_so_far: float
    state: str
    def __init__(self, trial: _Optional[int] = ..., value: _Optional[float] = ..., best_so_far: _Optional[float] = ..., state: _Optional[str] = ...) -> None: ...

class ParamImportance(_message.Message):
    __slots__ = ("param", "importance")
    PARAM_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    param: str
    importance: float
    def __init__(self, param: _Optional[str] = ..., importance: _Optional[float] = ...) -> None: ...

class ParallelCoordinate(_message.Message):
    __slots__ = ("trial", "params", "value")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    trial: int
    params: _containers.ScalarMap[str, str]
    value: float
    def __init__(self, trial: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ...) -> None: ...

class StudySummaryResponse(_message.Message):
    __slots__ = ("study_id", "history", "counts_by_state", "importances", "parallel_coordinates", "revision")
    class CountsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    COUNTS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCES_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_COORDINATES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    history: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    counts_by_state: _containers.ScalarMap[str, int]
    importances: _containers.RepeatedCompositeFieldContainer[ParamImportance]
    parallel_coordinates: _containers.RepeatedCompositeFieldContainer[ParallelCoordinate]
    revision: str
    def __init__(self, study_id: _Optional[str] = ..., history: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ..., counts_by_state: _Optional[_Mapping[str, int]] = ..., importances: _Optional[_Iterable[_Union[ParamImportance, _Mapping]]] = ..., parallel_coordinates: _Optional[_Iterable[_Union[ParallelCoordinate, _Mapping]]] = ..., revision: _Optional[str] = ...) -> None: ...

class TrialTicket(_message.Message):
    __slots__ = ("study_id", "ticket_id", "sequence")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    ticket_id: str
    sequence: int
    def __init__(self, study_id: _Optional[str] = ..., ticket_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...
