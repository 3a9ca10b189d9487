"""How values are shown: states, numbers, times. Pure functions, no NiceGUI."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2

STUDY_STATES = {
    tuning_pb2.STUDY_STATE_UNSPECIFIED: "unknown",
    tuning_pb2.STUDY_STATE_RUNNING: "running",
    tuning_pb2.STUDY_STATE_STOPPED: "stopped",
    tuning_pb2.STUDY_STATE_COMPLETED: "completed",
}
TRIAL_STATES = {
    tuning_pb2.TRIAL_STATE_UNSPECIFIED: "unknown",
    tuning_pb2.TRIAL_STATE_QUEUED: "queued",
    tuning_pb2.TRIAL_STATE_RUNNING: "running",
    tuning_pb2.TRIAL_STATE_COMPLETE: "complete",
    tuning_pb2.TRIAL_STATE_PRUNED: "pruned",
    tuning_pb2.TRIAL_STATE_FAIL: "failed",
}
RUN_STATUSES = {
    tracking_pb2.RUN_STATUS_UNSPECIFIED: "",
    tracking_pb2.RUN_STATUS_RUNNING: "running",
    tracking_pb2.RUN_STATUS_FINISHED: "finished",
    tracking_pb2.RUN_STATUS_FAILED: "failed",
    tracking_pb2.RUN_STATUS_KILLED: "killed",
}
STATE_COLORS = {
    "running": "primary", "completed": "positive", "complete": "positive", "finished": "positive",
    "stopped": "warning", "pruned": "warning", "queued": "grey", "failed": "negative", "killed": "negative",
    "unknown": "grey",
}


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def when(ts) -> str:
    """A protobuf Timestamp as local 'YYYY-MM-DD HH:MM:SS'; '' when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start, end) -> str:
    if not start.seconds:
        return ""
    end_s = end.seconds + end.nanos / 1e9 if end.seconds else datetime.now(timezone.utc).timestamp()
    s = max(0.0, end_s - (start.seconds + start.nanos / 1e9))
    if s < 60:
        return f"{s:.1f}s"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def finished_count(counts) -> int:
    return counts.complete + counts.pruned + counts.fail


def study_name(study) -> str:
    return study.spec.name or study.id


def objective_label(spec) -> str:
    if not spec.objectives:
        return "val_loss"
    return spec.objectives[0].metric or "val_loss"


def maximizes(spec) -> bool:
    if not spec.objectives:
        return False
    obj = spec.objectives[0]
    if obj.direction == tuning_pb2.DIRECTION_MAXIMIZE:
        return True
    return obj.direction == tuning_pb2.DIRECTION_UNSPECIFIED and obj.metric == "val_accuracy"


def study_row(study) -> dict:
    c = study.counts
    return {
        "id": study.id,
        "name": study_name(study),
        "dataset": study.dataset_version,
        "state": STUDY_STATES.get(study.state, "unknown"),
        "progress": f"{finished_count(c)}/{study.spec.n_trials}",
        "best": number(study.best_values[0]) if study.best_values else "–",
        "created": when(study.created_at),
    }
