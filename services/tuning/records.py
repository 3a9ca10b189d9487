"""What the tuning domain takes and returns: plain data, no protobuf and no Optuna types
(services/tuning/messages.py turns them into the API's messages and back). Enum-like
fields hold names: a sampler, pruner or direction in lowercase ("tpe", "median",
"minimize"; "" when the caller left it unset), a study or trial state in uppercase as
Optuna and the store write them ("RUNNING", "COMPLETE")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float = 0  # 0: continuous (a float range) or 1 (an int range)


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter's domain: a float range, an int range or categorical choices."""
    name: str
    float_range: Range | None = None
    int_range: Range | None = None
    categorical: tuple[str, ...] | None = None

    @property
    def domain(self) -> str | None:
        if self.float_range is not None:
            return "float_range"
        if self.int_range is not None:
            return "int_range"
        if self.categorical is not None:
            return "categorical"
        return None


@dataclass(frozen=True)
class Objective:
    metric: str = ""
    direction: str = ""  # "", "minimize" or "maximize"


@dataclass(frozen=True)
class StudySpec:
    """What a study is asked to do; zero values mean the defaults tuning.proto names."""
    name: str = ""
    dataset: str = ""
    search_space: tuple[ParamSpec, ...] = ()
    objectives: tuple[Objective, ...] = ()
    sampler: str = ""
    seed: int = 0
    pruner: str = ""
    n_trials: int = 0
    max_parallel: int = 0
    timeout_seconds: float = 0.0
    early_stopping_patience: int = 0
    max_epochs: int = 0
    pruner_warmup_epochs: int = 0
    cv_folds: int = 0


@dataclass(frozen=True)
class TrialCounts:
    queued: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    fail: int = 0


@dataclass
class Trial:
    study_id: str
    number: int
    state: str  # "" (unknown), QUEUED, RUNNING, COMPLETE, PRUNED, FAIL
    params: dict[str, str] = field(default_factory=dict)
    values: list[float] = field(default_factory=list)
    epochs_done: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    mlflow_run_id: str = ""
    worker: str = ""
    reason: str = ""
    val_loss_curve: list[float] = field(default_factory=list)
    train_loss_curve: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Baseline:
    model: str = ""
    mlflow_run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


@dataclass
class Study:
    id: str
    spec: StudySpec
    state: str = ""  # "" (not made yet: validate_only), RUNNING, STOPPED, COMPLETED
    dataset_version: str = ""
    counts: TrialCounts = TrialCounts()
    best_trial: Trial | None = None
    best_values: list[float] = field(default_factory=list)
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    mlflow_experiment_id: str = ""
    mlflow_run_id: str = ""
    task_kind: str = ""  # classification or regression
    baseline: Baseline | None = None


@dataclass
class StudySnapshot:
    study: Study
    trials: list[Trial]


@dataclass(frozen=True)
class TrialTicket:
    """Work for one trial, on the queue: the ticket id deduplicates a resend."""
    study_id: str
    ticket_id: str
    sequence: int


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ended, as its end event tells it: saved on the trial, published, then
    told to Optuna (store.save_end). `kind` is the event's payload name; `values` belong
    to a completed trial, `reason` to a pruned or failed one, `epochs_done` to both of
    the first two."""
    kind: str  # "trial_completed", "trial_pruned" or "trial_failed"
    study_id: str
    trial: int
    mlflow_run_id: str = ""
    values: tuple[float, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0
    best_epoch: int = 0
    reason: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """What a study needs to know of its dataset version."""
    name: str
    version: str
    task_kind: str  # classification or regression
