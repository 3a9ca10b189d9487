"""Trial and study events -> MLflow writes, in batches, idempotently.

A batch of events is grouped by run; each run gets one log_batch (and one status
change when the trial ended). A metric point whose (run, key, step) is already in
MLflow is never written again, so a redelivered event, or a trial re-reported after a
worker crash, cannot double a step. The caller acks an event only once its outcome is
DONE or DROP. Events come in as plain records (records.Event; messages.py translates)."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from kubetune_common.errors import InvalidArgument, NotFound
from services.common import mlflow_tags
from services.tracking.records import TRIAL_ENDS, EpochCompleted, Event, MetricValue, StudyCompleted, TrialEnd
from services.tracking.store import TrackingStore

log = logging.getLogger(__name__)

STATE_COMPLETE, STATE_PRUNED, STATE_FAIL = "COMPLETE", "PRUNED", "FAIL"


class Outcome(enum.Enum):
    DONE = "done"  # written (or nothing to write): ack
    RETRY = "retry"  # MLflow unreachable or failing: redeliver later
    DROP = "drop"  # can never be written (no such run): ack and log


@dataclass
class RunWrite:
    """Everything one batch writes to one run."""

    metrics: list[MetricValue] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    end: tuple[str, int] | None = None  # (status, end time ms)
    events: list[int] = field(default_factory=list)  # indices into the batch


class _Lru(OrderedDict):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


class _NewRun(dict):
    """The steps of a run this process created: a key it has not written has none, so
    none is looked up. (Events of the run another replica wrote and acked never come
    here; as for any cached run, its unacked writes are what could repeat a step.)"""


class EventRecorder:
    HANDLED = frozenset({"epoch_completed", *TRIAL_ENDS, "study_completed"})

    def __init__(self, store: TrackingStore, *, parallel_runs: int = 4, cache_runs: int = 10_000):
        self.store = store
        self._parallel = asyncio.Semaphore(parallel_runs)
        self._written_events = _Lru(100_000)  # event ids already written: skip without a look-up
        self._steps: _Lru = _Lru(cache_runs)  # run id -> {key: steps in MLflow}
        self._runs: _Lru = _Lru(cache_runs)  # (study id, trial or None) -> run id

    def run_created(self, run_id: str) -> None:
        """A run this process just created: it has no metric steps yet."""
        self._steps.put(run_id, _NewRun())

    async def record(self, events: list[Event]) -> list[Outcome]:
        outcomes = [Outcome.DONE] * len(events)
        writes: dict[str, RunWrite] = {}
        for i, event in enumerate(events):
            kind = event.kind
            if kind not in self.HANDLED or event.id in self._written_events:
                continue
            payload = event.payload
            try:
                run_id = await self._run_for(kind, payload)
            except NotFound as exc:
                log.warning("dropping %s event %s: %s", kind, event.id, exc.message)
                outcomes[i] = Outcome.DROP
                continue
            except Exception as exc:  # noqa: BLE001 - retried later
                log.warning("cannot resolve the run of %s event %s: %s", kind, event.id, exc)
                outcomes[i] = Outcome.RETRY
                continue
            write = writes.setdefault(run_id, RunWrite())
            write.events.append(i)
            self._plan(kind, payload, event.time_ms, write)

        async def one(run_id: str, write: RunWrite) -> None:
            async with self._parallel:
                outcome = await self._write(run_id, write)
            for i in write.events:
                outcomes[i] = outcome
                if outcome is Outcome.DONE:
                    self._written_events.put(events[i].id, True)

        await asyncio.gather(*(one(r, w) for r, w in writes.items()))
        return outcomes

    @staticmethod
    def _plan(kind: str, p: EpochCompleted | TrialEnd | StudyCompleted, ms: int, write: RunWrite) -> None:
        if kind == "epoch_completed":
            for key in mlflow_tags.EPOCH_METRICS:
                value = getattr(p, key)
                if not (key == "val_accuracy" and math.isnan(value)):
                    write.metrics.append(MetricValue(key, value, ms, p.epoch))
            return
        if kind in TRIAL_ENDS:
            # The saved epoch's summary (`val/loss`, test metrics...); a pruned or failed
            # trial's is its best epoch so far, so what a run table shows under val_loss
            # is what it sorts and filters by.
            write.metrics.extend(MetricValue(k, v, ms, p.best_epoch) for k, v in sorted(p.metrics.items()))
        if kind == "trial_completed":
            write.tags[mlflow_tags.TAG_STATE] = STATE_COMPLETE
            write.end = ("FINISHED", ms)
        elif kind == "trial_pruned":
            write.tags.update({mlflow_tags.TAG_STATE: STATE_PRUNED, mlflow_tags.TAG_REASON: p.reason or "pruned"})
            write.end = ("FINISHED", ms)
        elif kind == "trial_failed":
            write.tags.update({mlflow_tags.TAG_STATE: STATE_FAIL, mlflow_tags.TAG_REASON: p.reason or "failed"})
            write.end = ("FAILED", ms)
        elif kind == "study_completed":
            write.params.update({f"best_{k}": v for k, v in p.best_params.items()})
            for i, value in enumerate(p.best_values):
                write.metrics.append(MetricValue("best_value" if i == 0 else f"best_value_{i}", value, ms, 0))
            write.tags.update({
                mlflow_tags.TAG_STATE: STATE_COMPLETE,
                "kubetune.best_trial": str(p.best_trial),
                "kubetune.trials_complete": str(p.complete),
                "kubetune.trials_pruned": str(p.pruned),
                "kubetune.trials_failed": str(p.fail),
            })
            write.end = ("FINISHED", ms)

    async def _run_for(self, kind: str, p: EpochCompleted | TrialEnd | StudyCompleted) -> str:
        if p.mlflow_run_id:
            return p.mlflow_run_id
        # An event from before the run id was known: find the run by its tags.
        key = (p.study_id, None if kind == "study_completed" else p.trial)
        if key in self._runs:
            return self._runs[key]
        wanted = {mlflow_tags.TAG_STUDY: p.study_id}
        if key[1] is None:
            wanted[mlflow_tags.TAG_KIND] = mlflow_tags.KIND_STUDY
        else:
            wanted.update({mlflow_tags.TAG_KIND: mlflow_tags.KIND_TRIAL, mlflow_tags.TAG_TRIAL: str(p.trial)})
        found = await asyncio.to_thread(self.store.find_runs, None, wanted)
        if not found:
            raise NotFound(f"no MLflow run for study {p.study_id} trial {key[1]}")
        self._runs.put(key, found[0])
        return found[0]

    async def _write(self, run_id: str, write: RunWrite) -> Outcome:
        try:
            metrics = await self._new_points(run_id, write.metrics)
            if metrics or write.params or write.tags:
                try:
                    await asyncio.to_thread(self.store.log_batch, run_id, metrics, write.params, write.tags)
                except InvalidArgument as exc:
                    if not write.params:
                        raise
                    # MLflow params are immutable: a study completed again (after a
                    # resume) with other best params keeps the first ones.
                    log.warning("run %s: params not rewritten: %s", run_id, exc.message)
                    await asyncio.to_thread(self.store.log_batch, run_id, metrics, None, write.tags)
            if write.end is not None:
                await asyncio.to_thread(self.store.end_run, run_id, *write.end)
        except (NotFound, InvalidArgument) as exc:
            log.error("dropping %d events for run %s: %s", len(write.events), run_id, exc.message)
            self._steps.pop(run_id, None)
            return Outcome.DROP
        except Exception as exc:  # noqa: BLE001 - MLflow down: retried later
            log.warning("writing %d events to run %s failed, will retry: %s", len(write.events), run_id, exc)
            self._steps.pop(run_id, None)
            return Outcome.RETRY
        known = self._steps.get(run_id)
        if known is not None:
            for m in metrics:
                known.setdefault(m.key, set()).add(m.step)
        return Outcome.DONE

    async def _new_points(self, run_id: str, metrics: list[MetricValue]) -> list[MetricValue]:
        """The points whose (key, step) MLflow does not have yet, first one per step."""
        if not metrics:
            return []
        known = self._steps.get(run_id)
        if known is None:
            known = {}
            self._steps.put(run_id, known)
        missing = sorted({m.key for m in metrics} - known.keys())
        if missing and isinstance(known, _NewRun):
            known.update({key: set() for key in missing})
        elif missing:
            known.update(await asyncio.to_thread(self.store.metric_steps, run_id, missing))
        out, batch_seen = [], set()
        for m in metrics:
            if m.step in known[m.key] or (m.key, m.step) in batch_seen:
                continue
            batch_seen.add((m.key, m.step))
            out.append(m)
        return out
