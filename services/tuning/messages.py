"""The tuning records as the API's protobuf messages and back: the one translation,
used by the servicer (requests in, replies out), the store (a study's spec is kept as
its message's JSON, a trial's end as its event's bytes, as they always were), the
adapters and the worker's (a ticket on the queue, a trial's end on the bus)."""

from __future__ import annotations

import datetime as dt

from google.protobuf import json_format

from kubetune.events.v1 import events_pb2 as ev
from kubetune.tuning.v1 import tuning_pb2 as pb
from services.tuning import records

# Enum prefixes: SAMPLER_TPE <-> "tpe", STUDY_STATE_RUNNING <-> "RUNNING".
_SAMPLER, _PRUNER, _DIRECTION = (pb.Sampler, "SAMPLER_"), (pb.Pruner, "PRUNER_"), (pb.Direction, "DIRECTION_")
_STUDY_STATE, _TRIAL_STATE = (pb.StudyState, "STUDY_STATE_"), (pb.TrialState, "TRIAL_STATE_")


def _name(enum, value: int, lower: bool = True) -> str:
    """"" for UNSPECIFIED; a number the enum does not know stays that number, so
    validation can name it."""
    if not value:
        return ""
    kind, prefix = enum
    try:
        name = kind.Name(value).removeprefix(prefix)
    except ValueError:
        return str(value)
    return name.lower() if lower else name


def _number(enum, name: str) -> int:
    if not name:
        return 0
    if name.isdigit():
        return int(name)
    kind, prefix = enum
    return kind.Value(prefix + name.upper())


# Read per trial and study: looked up once here (a study page lists hundreds of trials).
_TRIAL_STATE_NUMBERS = {_name(_TRIAL_STATE, v, lower=False): v for v in pb.TrialState.values()}
_STUDY_STATE_NUMBERS = {_name(_STUDY_STATE, v, lower=False): v for v in pb.StudyState.values()}


def study_state_name(value: int) -> str:
    return _name(_STUDY_STATE, value, lower=False)


def trial_state_name(value: int) -> str:
    return _name(_TRIAL_STATE, value, lower=False)


# -- the spec ---------------------------------------------------------------------------

def param_from_pb(p: pb.ParamSpec) -> records.ParamSpec:
    domain = p.WhichOneof("domain")
    if domain == "float_range":
        r = p.float_range
        return records.ParamSpec(p.name, float_range=records.Range(r.low, r.high, r.log, r.step))
    if domain == "int_range":
        r = p.int_range
        return records.ParamSpec(p.name, int_range=records.Range(r.low, r.high, r.log, r.step))
    if domain == "categorical":
        return records.ParamSpec(p.name, categorical=tuple(p.categorical.choices))
    return records.ParamSpec(p.name)


def param_to_pb(p: records.ParamSpec) -> pb.ParamSpec:
    if p.float_range is not None:
        r = p.float_range
        return pb.ParamSpec(name=p.name, float_range=pb.FloatRange(low=r.low, high=r.high, log=r.log, step=r.step))
    if p.int_range is not None:
        r = p.int_range
        return pb.ParamSpec(name=p.name, int_range=pb.IntRange(low=int(r.low), high=int(r.high), log=r.log,
                                                              step=int(r.step)))
    if p.categorical is not None:
        return pb.ParamSpec(name=p.name, categorical=pb.Categorical(choices=list(p.categorical)))
    return pb.ParamSpec(name=p.name)


def spec_from_pb(s: pb.StudySpec) -> records.StudySpec:
    return records.StudySpec(
        name=s.name, dataset=s.dataset,
        search_space=tuple(param_from_pb(p) for p in s.search_space),
        objectives=tuple(records.Objective(o.metric, _name(_DIRECTION, o.direction)) for o in s.objectives),
        sampler=_name(_SAMPLER, s.sampler), seed=s.seed, pruner=_name(_PRUNER, s.pruner),
        n_trials=s.n_trials, max_parallel=s.max_parallel, timeout_seconds=s.timeout_seconds,
        early_stopping_patience=s.early_stopping_patience, max_epochs=s.max_epochs,
        pruner_warmup_epochs=s.pruner_warmup_epochs, cv_folds=s.cv_folds,
    )


def spec_to_pb(s: records.StudySpec) -> pb.StudySpec:
    return pb.StudySpec(
        name=s.name, dataset=s.dataset,
        search_space=[param_to_pb(p) for p in s.search_space],
        objectives=[pb.Objective(metric=o.metric, direction=_number(_DIRECTION, o.direction)) for o in s.objectives],
        sampler=_number(_SAMPLER, s.sampler), seed=s.seed, pruner=_number(_PRUNER, s.pruner),
        n_trials=s.n_trials, max_parallel=s.max_parallel, timeout_seconds=s.timeout_seconds,
        early_stopping_patience=s.early_stopping_patience, max_epochs=s.max_epochs,
        pruner_warmup_epochs=s.pruner_warmup_epochs, cv_folds=s.cv_folds,
    )


def spec_to_json(s: records.StudySpec) -> str:
    return json_format.MessageToJson(spec_to_pb(s), indent=None, preserving_proto_field_name=True)


def spec_from_json(text: str) -> records.StudySpec:
    return spec_from_pb(json_format.Parse(text, pb.StudySpec()))


# -- studies and trials -------------------------------------------------------------------

def _stamp(message, when: dt.datetime | None) -> None:
    if when is not None:
        message.FromDatetime(when)


def trial_to_pb(t: records.Trial) -> pb.Trial:
    out = pb.Trial(
        study_id=t.study_id, number=t.number, state=_TRIAL_STATE_NUMBERS[t.state], params=t.params,
        values=t.values, epochs_done=t.epochs_done, mlflow_run_id=t.mlflow_run_id, worker=t.worker,
        reason=t.reason, val_loss_curve=t.val_loss_curve, train_loss_curve=t.train_loss_curve, metrics=t.metrics,
    )
    _stamp(out.started_at, t.started_at)
    _stamp(out.finished_at, t.finished_at)
    return out


def study_to_pb(s: records.Study) -> pb.Study:
    c = s.counts
    out = pb.Study(
        id=s.id, spec=spec_to_pb(s.spec), state=_STUDY_STATE_NUMBERS[s.state], dataset_version=s.dataset_version,
        counts=pb.TrialCounts(queued=c.queued, running=c.running, complete=c.complete, pruned=c.pruned, fail=c.fail),
        best_values=s.best_values, mlflow_experiment_id=s.mlflow_experiment_id, mlflow_run_id=s.mlflow_run_id,
        task_kind=s.task_kind,
    )
    _stamp(out.created_at, s.created_at)
    _stamp(out.finished_at, s.finished_at)
    if s.best_trial is not None:
        out.best_trial.CopyFrom(trial_to_pb(s.best_trial))
    if s.baseline is not None:
        b = s.baseline
        out.baseline.CopyFrom(pb.Baseline(model=b.model, mlflow_run_id=b.mlflow_run_id, metrics=b.metrics,
                                          error=b.error))
    return out


def snapshot_to_pb(s: records.StudySnapshot) -> pb.StudySnapshot:
    return pb.StudySnapshot(study=study_to_pb(s.study), trials=[trial_to_pb(t) for t in s.trials])


def ticket_to_pb(t: records.TrialTicket) -> pb.TrialTicket:
    return pb.TrialTicket(study_id=t.study_id, ticket_id=t.ticket_id, sequence=t.sequence)


def ticket_from_pb(t: pb.TrialTicket) -> records.TrialTicket:
    return records.TrialTicket(study_id=t.study_id, ticket_id=t.ticket_id, sequence=t.sequence)


# -- a trial's end --------------------------------------------------------------------------

_END_MESSAGES = {"trial_completed": ev.TrialCompleted, "trial_pruned": ev.TrialPruned, "trial_failed": ev.TrialFailed}


def end_to_pb(e: records.TrialEnd) -> ev.TrialCompleted | ev.TrialPruned | ev.TrialFailed:
    """The end event's payload, published under the name `e.kind`."""
    if e.kind == "trial_completed":
        return ev.TrialCompleted(study_id=e.study_id, trial=e.trial, mlflow_run_id=e.mlflow_run_id, values=e.values,
                                 metrics=e.metrics, epochs_done=e.epochs_done, best_epoch=e.best_epoch)
    if e.kind == "trial_pruned":
        return ev.TrialPruned(study_id=e.study_id, trial=e.trial, mlflow_run_id=e.mlflow_run_id,
                              epochs_done=e.epochs_done, reason=e.reason, metrics=e.metrics, best_epoch=e.best_epoch)
    if e.kind == "trial_failed":
        return ev.TrialFailed(study_id=e.study_id, trial=e.trial, mlflow_run_id=e.mlflow_run_id, reason=e.reason,
                              metrics=e.metrics, best_epoch=e.best_epoch)
    raise ValueError(f"not a trial's end: {e.kind!r}")


def end_from_pb(kind: str, p) -> records.TrialEnd:
    return records.TrialEnd(
        kind=kind, study_id=p.study_id, trial=p.trial, mlflow_run_id=p.mlflow_run_id,
        values=tuple(getattr(p, "values", ())), metrics=dict(p.metrics), epochs_done=getattr(p, "epochs_done", 0),
        best_epoch=p.best_epoch, reason=getattr(p, "reason", ""),
    )


def end_to_bytes(e: records.TrialEnd) -> bytes:
    return end_to_pb(e).SerializeToString()


def end_from_bytes(kind: str, data: bytes) -> records.TrialEnd:
    return end_from_pb(kind, _END_MESSAGES[kind].FromString(data))
