"""Every NATS subject kubetune uses, in one place.

Facts that happened: `kubetune.<service>.<entity>.<past-tense-verb>`, one subject per
payload type of kubetune.events.v1.Event. Work to be done: the trial queue."""

from __future__ import annotations

DATASET_REGISTERED = "kubetune.data.dataset.registered"
DATASET_DELETED = "kubetune.data.dataset.deleted"
DOWNLOAD_PROGRESSED = "kubetune.data.download.progressed"
STUDY_CREATED = "kubetune.tuning.study.created"
STUDY_COMPLETED = "kubetune.tuning.study.completed"
STUDY_STOPPED = "kubetune.tuning.study.stopped"
STUDY_RESUMED = "kubetune.tuning.study.resumed"
TRIAL_STARTED = "kubetune.tuning.trial.started"
EPOCH_COMPLETED = "kubetune.tuning.trial.epoch_completed"
TRIAL_COMPLETED = "kubetune.tuning.trial.completed"
TRIAL_PRUNED = "kubetune.tuning.trial.pruned"
TRIAL_FAILED = "kubetune.tuning.trial.failed"
MODEL_REGISTERED = "kubetune.registry.model.registered"
ALIAS_SET = "kubetune.registry.alias.set"

# Event payload field (the oneof case of Event) -> subject.
SUBJECT_BY_PAYLOAD = {
    "dataset_registered": DATASET_REGISTERED,
    "dataset_deleted": DATASET_DELETED,
    "download_progressed": DOWNLOAD_PROGRESSED,
    "study_created": STUDY_CREATED,
    "study_completed": STUDY_COMPLETED,
    "study_stopped": STUDY_STOPPED,
    "study_resumed": STUDY_RESUMED,
    "trial_started": TRIAL_STARTED,
    "epoch_completed": EPOCH_COMPLETED,
    "trial_completed": TRIAL_COMPLETED,
    "trial_pruned": TRIAL_PRUNED,
    "trial_failed": TRIAL_FAILED,
    "model_registered": MODEL_REGISTERED,
    "alias_set": ALIAS_SET,
}

# One pattern per emitting part: `kubetune.*.*.*` would also match the work queue's
# `kubetune.work.trial.<study_id>` (NATS refuses overlapping streams, and a watcher
# would get tickets that are not events).
EVENT_PARTS = ("data", "tuning", "tracking", "registry", "gateway")
EVENT_PATTERNS = tuple(f"kubetune.{part}.*.*" for part in EVENT_PARTS)
TRIAL_EVENTS = "kubetune.tuning.trial.*"
STUDY_EVENTS = "kubetune.tuning.study.*"

# Streams. Events are kept a while so a consumer that was down catches up;
# tickets are a work queue: each is removed once a worker acks it.
EVENTS_STREAM = "KUBETUNE_EVENTS"
WORK_STREAM = "KUBETUNE_WORK"
# One subject per study (`kubetune.work.trial.<study_id>`), so a stopped study's
# queued tickets can be purged; workers take from all of them.
TRIAL_TICKETS = "kubetune.work.trial"
ALL_TRIAL_TICKETS = TRIAL_TICKETS + ".>"
WORKERS_CONSUMER = "workers"


def ticket_subject(study_id: str) -> str:
    return f"{TRIAL_TICKETS}.{study_id}"
