"""A trial's per-epoch curves kept in the Optuna storage while it trains and when it
ends, whatever its end (complete, pruned, failed, stopped), so a study's snapshot
(WatchStudy, ListTrials) shows every trial's whole history and true epoch count."""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Executor, Future

import optuna

from services.tuning import store
from services.tuning.worker.training import EpochResult

log = logging.getLogger(__name__)


class CurveLog:
    """Written at most every `every_s` seconds while the trial trains, in the background
    (a storage write costs a few ms of CPU, more than a short epoch), and in full by
    `flush()` before the trial is told its state: Optuna refuses writes after that."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, background: Executor, every_s: float):
        self.storage = storage
        self.trial_id = trial_id
        self.background = background
        self.every_s = every_s
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_accuracy: list[float] = []
        self._written_at = time.monotonic()
        self._pending: Future | None = None

    def add(self, e: EpochResult) -> None:
        self.train_loss.append(e.train_loss)
        self.val_loss.append(e.val_loss)
        self.val_accuracy.append(e.val_accuracy)
        now = time.monotonic()
        if now - self._written_at >= self.every_s and (self._pending is None or self._pending.done()):
            self._written_at = now
            self._pending = self.background.submit(self._write, len(self.val_loss))

    def best_so_far(self) -> tuple[int, dict[str, float]]:
        """The epoch with the lowest validation loss so far (as training keeps the best
        epoch's weights) and its losses under the summary names (`val/loss`, ...), for a
        trial that ends before it completes; (0, {}) before any finite epoch."""
        finite = [e for e, v in enumerate(self.val_loss) if math.isfinite(v)]
        if not finite:
            return 0, {}
        best = min(finite, key=self.val_loss.__getitem__)
        out = {"val/loss": self.val_loss[best], "train/loss": self.train_loss[best]}
        if math.isfinite(self.val_accuracy[best]):
            out["val/accuracy"] = self.val_accuracy[best]
        return best, out

    def flush(self) -> None:
        """Writes every epoch so far; a failure is logged, never raised: the trial's
        state matters more than its curve."""
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:  # noqa: BLE001 - logged by _write's caller below
                pass
        try:
            self._write(len(self.val_loss))
        except Exception:  # noqa: BLE001 - e.g. the trial was already finished elsewhere
            log.warning("the curves of trial %d could not be stored", self.trial_id, exc_info=True)

    def _write(self, n: int) -> None:
        self.storage.set_trial_user_attr(self.trial_id, store.T_CURVES,
                                         store.curves_value(self.train_loss[:n], self.val_loss[:n]))
