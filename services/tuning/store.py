"""The tuning service's store: Optuna's storage (its RDB backends, opened once and
cached) and what kubetune keeps in it beside Optuna's own data, under the attribute
keys below: the study's spec and state as study user attributes, the ticket, worker
and MLflow run of each trial as trial attributes, the study events not yet sent as
study system attributes (the outbox). Read by the service and by workers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.orm
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models as optuna_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from kubetune_common.sqlite import use_wal
from services.common.outbox import OutboxEvent, OutboxStore
from services.tuning import messages
from services.tuning.records import StudySpec, TrialEnd

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
# The study's time budget (spec.timeout_seconds) counts from its last resume, or its creation.
RESUMED = "kubetune:resumed_at"
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
# A trial's state as records.Trial names it.
TRIAL_STATES = {
    TrialState.RUNNING: "RUNNING",
    TrialState.WAITING: "QUEUED",
    TrialState.COMPLETE: "COMPLETE",
    TrialState.PRUNED: "PRUNED",
    TrialState.FAIL: "FAIL",
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


def timed_out(spec: StudySpec, attrs: dict) -> bool:
    if not spec.timeout_seconds:
        return False
    since = dt.datetime.fromisoformat(attrs.get(RESUMED) or attrs[CREATED])
    return (dt.datetime.now(dt.timezone.utc) - since).total_seconds() > spec.timeout_seconds


def spec_to_json(spec: StudySpec) -> str:
    """Kept as the API message's JSON, as it always was: studies made before stay readable."""
    return messages.spec_to_json(spec)


def spec_from_attrs(attrs: dict) -> StudySpec:
    return messages.spec_from_json(attrs[SPEC])


def curves_value(train_loss: list[float], val_loss: list[float]) -> dict[str, list[float]]:
    return {"train_loss": list(train_loss), "val_loss": list(val_loss)}


def curves_of(t: FrozenTrial) -> tuple[list[float], list[float]]:
    """(train_loss, val_loss) per epoch, as far as the trial's worker has written them."""
    stored = t.user_attrs.get(T_CURVES)
    if stored:
        return stored.get("train_loss", []), stored.get("val_loss", [])
    return t.user_attrs.get(T_TRAIN_CURVE, []), t.user_attrs.get(T_VAL_CURVE, [])


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Counts by state, abandoned trials left out (their tickets ran again). A RUNNING
    trial whose end is saved counts as that end: it is published, Optuna is told next."""
    out = {"running": 0, "complete": 0, "pruned": 0, "fail": 0, "abandoned": 0}
    for t in trials:
        state = t.state
        if state == TrialState.RUNNING and T_END in t.system_attrs:
            state = END_STATES[t.system_attrs[T_END]["kind"]]
        if state == TrialState.RUNNING:
            out["running"] += 1
        elif state == TrialState.COMPLETE:
            out["complete"] += 1
        elif state == TrialState.PRUNED:
            out["pruned"] += 1
        elif state == TrialState.FAIL:
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


# -- a trial's end and its heartbeat ---------------------------------------------------
# A trial's end event is saved on the trial, published, and only then the trial is
# finished in Optuna: a finished trial's end has gone out at least once, and a RUNNING
# trial whose worker died after saving it is finished from it (by a redelivered ticket
# or by the tuning service's reclaim) instead of being run again.
T_END = "kubetune:end_event"
# Reclaimed by the tuning service (no heartbeat): a replacement ticket was issued, so a
# later delivery of the trial's own ticket is not needed.
T_RECLAIMED = "kubetune:reclaimed"
END_STATES = {"trial_completed": TrialState.COMPLETE, "trial_pruned": TrialState.PRUNED, "trial_failed": TrialState.FAIL}


def end_event_id(study_id: str, number: int) -> str:
    """The one event id a trial's end goes out with, however many times it is published:
    JetStream stores it once (within its duplicate window) and tracking writes it once."""
    return f"{study_id}.{number}.end"


def save_end(storage, trial_id: int, end: TrialEnd) -> None:
    """Kept as the end event's payload bytes, as it always was. Raises optuna's
    UpdateFinishedTrialError when the trial was finished by someone else."""
    storage.set_trial_system_attr(trial_id, T_END, {"kind": end.kind, "payload": messages.end_to_bytes(end).hex()})


def saved_end(trial: FrozenTrial) -> TrialEnd | None:
    saved = trial.system_attrs.get(T_END)
    if not saved:
        return None
    return messages.end_from_bytes(saved["kind"], bytes.fromhex(saved["payload"]))


def end_state(end: TrialEnd) -> tuple[TrialState, list[float] | None]:
    return END_STATES[end.kind], (list(end.values) if end.kind == "trial_completed" else None)


def stale_trial_ids(storage, study_key: int, grace_s: float) -> list[int]:
    """RUNNING trials of a study whose worker is gone: no heartbeat for grace_s (read on
    the database's clock, as Optuna does), or none ever and started grace_s ago."""
    backend = _rdb(storage)
    grace = dt.timedelta(seconds=grace_s)
    with _create_scoped_session(backend.scoped_session) as session:
        db_now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar().replace(tzinfo=None)
        # Optuna stamps datetime_start with the creating process's local clock.
        local_now = dt.datetime.now()
        running = (session.query(optuna_models.TrialModel)
                   .options(sqlalchemy.orm.selectinload(optuna_models.TrialModel.heartbeats))
                   .filter(optuna_models.TrialModel.state == TrialState.RUNNING)
                   .filter(optuna_models.TrialModel.study_id == study_key).all())
        return [t.trial_id for t in running
                if (db_now - t.heartbeats[0].heartbeat if t.heartbeats else local_now - t.datetime_start) > grace]


def new_trial(storage, study_key: int, *, ticket: str, sequence: int, worker: str) -> int:
    """A RUNNING trial that carries its ticket from the start (one transaction), as
    `study.ask()` would create it: a trial can never exist without its ticket."""
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=dt.datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={T_WORKER: worker},
        system_attrs={T_TICKET: ticket, T_SEQUENCE: sequence}, intermediate_values={}, trial_id=-1,
    )
    return storage.create_new_trial(study_key, template_trial=template)


# -- the study's outbox ----------------------------------------------------------------
# Optuna's tables are not ours to add one to, but its attribute rows are: a study's
# lifecycle event (created, stopped, resumed, completed) is a study system attribute
# `kubetune:outbox:<event id>`, written in the same transaction as the state it reports;
# the tuning service's relay sends it and deletes the row. (A trial's end has its own
# equivalent: T_END above.)
OUTBOX = "kubetune:outbox:"


def _rdb(storage) -> optuna.storages.RDBStorage:
    return storage._backend if isinstance(storage, _CachedStorage) else storage


def set_study_attrs(storage, study_key: int, attrs: dict, events: list[OutboxEvent] = ()) -> None:
    """Study user attributes, and the events that report the change, in one transaction:
    both are stored, or neither."""
    with _create_scoped_session(_rdb(storage).scoped_session, True) as session:
        study = optuna_models.StudyModel.find_or_raise_by_id(study_key, session)
        for key, value in attrs.items():
            row = optuna_models.StudyUserAttributeModel.find_by_study_and_key(study, key, session)
            if row is None:
                session.add(optuna_models.StudyUserAttributeModel(study_id=study_key, key=key, value_json=json.dumps(value)))
            else:
                row.value_json = json.dumps(value)
        for event in events:
            session.add(optuna_models.StudySystemAttributeModel(
                study_id=study_key, key=OUTBOX + event.id,
                value_json=json.dumps({"subject": event.subject, "data": event.data.hex()})))


class StudyOutbox(OutboxStore):
    """The studies' unsent events, across every study, oldest first."""

    def __init__(self, storage):
        self.backend = _rdb(storage)

    def _rows(self, session):
        model = optuna_models.StudySystemAttributeModel
        return session.query(model).filter(model.key.like(OUTBOX + "%"))

    def pending(self, limit):
        model = optuna_models.StudySystemAttributeModel
        with _create_scoped_session(self.backend.scoped_session) as session:
            rows = self._rows(session).order_by(model.study_system_attribute_id).limit(limit).all()
            stored = [(r.key[len(OUTBOX):], json.loads(r.value_json)) for r in rows]
        return [OutboxEvent(event_id, v["subject"], bytes.fromhex(v["data"])) for event_id, v in stored]

    def mark_sent(self, events):
        keys = [OUTBOX + e.id for e in events]
        model = optuna_models.StudySystemAttributeModel
        with _create_scoped_session(self.backend.scoped_session, True) as session:
            session.query(model).filter(model.key.in_(keys)).delete(synchronize_session=False)
