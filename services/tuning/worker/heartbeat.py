"""A trial's heartbeat: Optuna's `record_heartbeat` every few seconds for the whole life
of a trial (asked, training, uploading, told), and the news when someone else finished
the trial meanwhile (the tuning service reclaimed it), so the worker stops it."""

from __future__ import annotations

import logging
import threading

from optuna.trial import TrialState

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, storage, trial_id: int, interval_s: float):
        self.storage = storage
        self.trial_id = trial_id
        self.interval_s = interval_s
        self.taken_over = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.interval_s + 5)

    def beat(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
            # Unfinished trials are read from the database, never from the cache.
            if self.storage.get_trial(self.trial_id).state != TrialState.RUNNING and not self.taken_over.is_set():
                log.warning("trial %d was finished elsewhere (its worker was thought lost): stopping it", self.trial_id)
                self.taken_over.set()
        except Exception:  # noqa: BLE001 - the storage restarting: beat again next time
            log.warning("heartbeat of trial %d failed", self.trial_id, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
