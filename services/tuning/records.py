"""What kubetune keeps in the Optuna storage beside Optuna's own data: the study's
spec and state as study user attributes, the ticket, worker and MLflow run of each
trial as trial attributes. Read by the tuning service and by workers alike."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import optuna
from google.protobuf import json_format
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common.sqlite import use_wal

SPEC = "kubetune:spec"
STATE = "kubetune:state"
DATASET = "kubetune:dataset_version"
TASK = "kubetune:task_kind"
EXPERIMENT = "kubetune:mlflow_experiment_id"
RUN = "kubetune:mlflow_run_id"
CREATED = "kubetune:created_at"
FINISHED = "kubetune:finished_at"
# The study's linear baseline, once a worker fitted it: {"model", "run_id", "metrics", "error"}.
BASELINE = "kubetune:baseline"
# Tickets carry sequence numbers 0, 1, 2...: ISSUED is the next one. Tickets below
# VOID_BELOW were purged when the study stopped and will never run.
ISSUED = "kubetune:tickets_issued"
VOID_BELOW = "kubetune:tickets_void_below"

T_TICKET = "kubetune:ticket"
T_SEQUENCE = "kubetune:sequence"
T_WORKER = "kubetune:worker"
T_RUN = "kubetune:mlflow_run_id"
T_REASON = "kubetune:reason"
# Per-epoch curves, {"train_loss": [...], "val_loss": [...]}: one attribute, one write.
T_CURVES = "kubetune:curves"
# Before T_CURVES: written only for completed trials; still read for old studies.
T_TRAIN_CURVE = "kubetune:train_loss_curve"
T_VAL_CURVE = "kubetune:val_loss_curve"
T_EPOCHS = "kubetune:epochs_done"
# A COMPLETE trial's saved epoch, per split (`val/rmse`, ...): shown for the best trial.
T_METRICS = "kubetune:metrics"
# A trial lost with its worker (or abandoned at shutdown): FAIL in Optuna, but its
# ticket runs again, so it does not count towards n_trials.
T_ABANDONED = "kubetune:abandoned"

RUNNING, STOPPED, COMPLETED = "RUNNING", "STOPPED", "COMPLETED"
STATE_PB = {RUNNING: pb.STUDY_STATE_RUNNING, STOPPED: pb.STUDY_STATE_STOPPED, COMPLETED: pb.STUDY_STATE_COMPLETED}
TRIAL_STATE_PB = {
    TrialState.RUNNING: pb.TRIAL_STATE_RUNNING,
    TrialState.WAITING: pb.TRIAL_STATE_QUEUED,
    TrialState.COMPLETE: pb.TRIAL_STATE_COMPLETE,
    TrialState.PRUNED: pb.TRIAL_STATE_PRUNED,
    TrialState.FAIL: pb.TRIAL_STATE_FAIL,
}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def default_storage_url(home: Path) -> str:
    path = (home / "tuning" / "optuna.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Storage(_CachedStorage):  # Optuna's own (private) cache class: pyproject keeps optuna < 6
    """Optuna's read cache over the RDB storage, kept for the process's life.

    The cache holds finished trials (which Optuna never changes again) and re-reads only
    unfinished and new ones, so reading a study costs its running trials, not all of them
    (`optuna.load_study` given a bare RDBStorage would wrap it in a fresh, empty cache
    each time; given this one, it keeps it). It also remembers which id each study name
    has, which never changes while the study exists: every ticket looked it up twice."""

    def __init__(self, backend: optuna.storages.RDBStorage):
        super().__init__(backend)
        self._ids: dict[str, int] = {}

    def get_study_id_from_name(self, study_name: str) -> int:
        study_id = self._ids.get(study_name)
        if study_id is None:
            study_id = self._ids[study_name] = super().get_study_id_from_name(study_name)
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._ids = {name: i for name, i in self._ids.items() if i != study_id}
        super().delete_study(study_id)


def make_storage(url: str) -> Storage:
    kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        use_wal(url)
        # Several worker processes write one SQLite file: wait for the lock, don't fail.
        kwargs["connect_args"] = {"timeout": 60}
    return Storage(optuna.storages.RDBStorage(url, engine_kwargs=kwargs))


def spec_to_json(spec: pb.StudySpec) -> str:
    return json_format.MessageToJson(spec, indent=None, preserving_proto_field_name=True)


def spec_from_attrs(attrs: dict) -> pb.StudySpec:
    return json_format.Parse(attrs[SPEC], pb.StudySpec())


def curves_value(train_loss: list[float], val_loss: list[float]) -> dict[str, list[float]]:
    return {"train_loss": list(train_loss), "val_loss": list(val_loss)}


def curves_of(t: FrozenTrial) -> tuple[list[float], list[float]]:
    """(train_loss, val_loss) per epoch, as far as the trial's worker has written them."""
    stored = t.user_attrs.get(T_CURVES)
    if stored:
        return stored.get("train_loss", []), stored.get("val_loss", [])
    return t.user_attrs.get(T_TRAIN_CURVE, []), t.user_attrs.get(T_VAL_CURVE, [])


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Counts by state, abandoned trials left out (their tickets ran again)."""
    out = {"running": 0, "complete": 0, "pruned": 0, "fail": 0, "abandoned": 0}
    for t in trials:
        if t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.FAIL:
            out["abandoned" if t.user_attrs.get(T_ABANDONED) else "fail"] += 1
    out["finished"] = out["complete"] + out["pruned"] + out["fail"]
    return out


def queued(attrs: dict, trials: list[FrozenTrial]) -> int:
    """Tickets issued and still live that no trial has taken yet."""
    void_below = int(attrs.get(VOID_BELOW, 0))
    live = int(attrs.get(ISSUED, 0)) - void_below
    taken = {t.system_attrs.get(T_SEQUENCE) for t in trials}
    taken = {s for s in taken if s is not None and s >= void_below}
    return max(0, live - len(taken))


def untaken_sequences(attrs: dict, trials: list[FrozenTrial]) -> list[int]:
    taken = {t.system_attrs.get(T_SEQUENCE) for t in trials}
    return [s for s in range(int(attrs.get(VOID_BELOW, 0)), int(attrs.get(ISSUED, 0))) if s not in taken]


def ticket_id(study_id: str, sequence: int) -> str:
    return f"{study_id}-{sequence}"
