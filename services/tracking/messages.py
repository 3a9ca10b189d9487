"""The bus's events as the tracking records the recorder takes (records.py): the one
translation, used by the events consumer (adapters.py). Only the kinds written to
MLflow are read beyond their id, kind and time."""

from __future__ import annotations

import time

from kubetune.events.v1 import events_pb2
from services.tracking.records import TRIAL_ENDS, EpochCompleted, Event, StudyCompleted, TrialEnd


def event_ms(event: events_pb2.Event) -> int:
    if event.HasField("time"):
        return event.time.seconds * 1000 + event.time.nanos // 1_000_000
    return int(time.time() * 1000)


def event_from_pb(event: events_pb2.Event) -> Event:
    kind = event.WhichOneof("payload") or ""
    p = getattr(event, kind) if kind else None
    if kind == "epoch_completed":
        payload = EpochCompleted(p.study_id, p.trial, p.mlflow_run_id, p.epoch, p.train_loss, p.val_loss,
                                 p.val_accuracy)
    elif kind in TRIAL_ENDS:
        payload = TrialEnd(p.study_id, p.trial, p.mlflow_run_id, dict(p.metrics), p.best_epoch,
                             getattr(p, "reason", ""))
    elif kind == "study_completed":
        payload = StudyCompleted(p.study_id, p.mlflow_run_id, p.best_trial, tuple(p.best_values),
                                 dict(p.best_params), p.complete, p.pruned, p.fail)
    else:
        payload = None
    return Event(event.id, kind, event_ms(event), payload)
