"""A trial's end as the store keeps it (its event's payload bytes, as before the domain
took plain records) and as the bus carries it: each kind reads back as it was saved,
and an end an older worker saved reads back as the same record."""

from __future__ import annotations

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from kubetune.events.v1 import events_pb2 as ev
from services.tuning import messages, store
from services.tuning.records import TrialEnd

ENDS = [
    TrialEnd("trial_completed", "s", 1, "run-1", values=(0.25, 3.0), metrics={"val/loss": 0.25, "test/rmse": 1.5},
             epochs_done=20, best_epoch=12),
    TrialEnd("trial_pruned", "s", 2, "run-2", metrics={"val/loss": 0.5}, epochs_done=4, best_epoch=2,
             reason="Trial was pruned at epoch 3."),
    TrialEnd("trial_failed", "s", 3, "", reason="worker w-1 was lost (no heartbeat for 30s); the ticket runs again"),
]


@pytest.mark.parametrize("end", ENDS, ids=lambda e: e.kind)
def test_an_end_reads_back_from_the_storage_as_saved(end):
    storage = optuna.storages.InMemoryStorage()
    study = storage.create_new_study([StudyDirection.MINIMIZE], "s")
    trial = storage.create_new_trial(study)
    assert store.saved_end(storage.get_trial(trial)) is None
    store.save_end(storage, trial, end)
    assert store.saved_end(storage.get_trial(trial)) == end
    state, values = store.end_state(end)
    assert state == store.END_STATES[end.kind]
    assert values == (list(end.values) if end.kind == "trial_completed" else None)


def test_an_end_saved_by_an_older_worker_reads_back_and_goes_out_unchanged():
    # As the worker saved it before: the payload message itself, serialized.
    old = ev.TrialCompleted(study_id="s", trial=7, mlflow_run_id="r", values=[0.5], metrics={"val/loss": 0.5},
                            epochs_done=9, best_epoch=4)
    end = messages.end_from_bytes("trial_completed", old.SerializeToString())
    assert end == TrialEnd("trial_completed", "s", 7, "r", values=(0.5,), metrics={"val/loss": 0.5}, epochs_done=9,
                           best_epoch=4)
    assert messages.end_to_pb(end) == old
    assert store.end_state(end) == (TrialState.COMPLETE, [0.5])


def test_an_end_of_no_known_kind_is_refused():
    with pytest.raises(ValueError, match="not a trial's end"):
        messages.end_to_pb(TrialEnd("trial_started", "s", 1))
