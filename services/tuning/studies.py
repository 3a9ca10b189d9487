"""Studies: create, watch over, stop, resume. Keeps each running study's trial queue
topped up to its parallelism. No grpc, no nats, no protobuf: plain records in and out
(records.py), and the dataset lookup, the parent MLflow run, events and tickets come
in through the ports below (Protocols; the NATS and gRPC implementations are in
adapters.py and services/common/clients.py). A lifecycle event is stored with the
state it reports (store.set_study_attrs) and sent by the outbox relay."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from typing import Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from kubetune_common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.outbox import OutboxEvent
from services.tuning import space, store
from services.tuning.records import (Baseline, DatasetInfo, Study, StudySnapshot, StudySpec, Trial, TrialCounts,
                                     TrialEnd, TrialTicket)

log = logging.getLogger(__name__)
# Sorts a study with no creation time (none so far) last.
EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class Datasets(Protocol):
    async def get_dataset(self, ref: str) -> DatasetInfo:
        """Raises NotFound for an unknown dataset."""


class StudyRuns(Protocol):
    async def create_study_run(self, study_id: str, dataset_name: str, dataset_version: str,
                               params: dict[str, str]) -> tuple[str, str]:
        """The study's parent MLflow run: (experiment id, run id)."""


class Tickets(Protocol):
    async def send(self, ticket: TrialTicket) -> None: ...

    async def purge(self, study_id: str) -> None: ...


class Notifier(Protocol):
    """The studies' facts as events (adapters.BusNotifier). A lifecycle event is built by
    the notifier, stored by the domain with the change it reports, and sent by the relay
    once the notifier is told `stored`."""

    def created(self, study_id: str, dataset_version: str, n_trials: int) -> OutboxEvent: ...

    def stopped(self, study_id: str) -> OutboxEvent: ...

    def resumed(self, study_id: str) -> OutboxEvent: ...

    def completed(self, study_id: str, mlflow_run_id: str, counts: dict[str, int],
                  best: FrozenTrial | None) -> OutboxEvent: ...

    def stored(self) -> None:
        """Told after events were stored with a change: sends them at once."""

    async def trial_ended(self, end: TrialEnd) -> None:
        """Publishes a trial's end under its one event id (store.end_event_id)."""


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    # Optuna stamps trials with naive datetimes.
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _parsed(iso: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(iso) if iso else None


def trial_record(study_id: str, t: FrozenTrial, curves: bool = False) -> Trial:
    train_curve, val_curve = store.curves_of(t)
    return Trial(
        study_id=study_id,
        number=t.number,
        state=store.TRIAL_STATES.get(t.state, ""),
        params={k: space.format_value(v) for k, v in t.params.items()},
        values=list(t.values or []),
        epochs_done=max(len(val_curve), int(t.user_attrs.get(store.T_EPOCHS, 0)), len(t.intermediate_values)),
        started_at=_utc(t.datetime_start),
        finished_at=_utc(t.datetime_complete),
        mlflow_run_id=t.user_attrs.get(store.T_RUN, ""),
        worker=t.user_attrs.get(store.T_WORKER, ""),
        reason=t.user_attrs.get(store.T_REASON, ""),
        val_loss_curve=list(val_curve) if curves else [],
        train_loss_curve=list(train_curve) if curves else [],
        metrics=dict(t.user_attrs.get(store.T_METRICS, {})),
    )


def best_trial(trials: list[FrozenTrial], directions: list[str]) -> FrozenTrial | None:
    """Single objective: the best value. Several: the Pareto trial best on the first."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not done:
        return None
    sign = [1 if d == "minimize" else -1 for d in directions]
    keyed = [(tuple(s * v for s, v in zip(sign, t.values)), t) for t in done]
    if len(directions) > 1:
        keyed = [(k, t) for k, t in keyed
                 if not any(all(a <= b for a, b in zip(o, k)) and o != k for o, _ in keyed)]
    return min(keyed, key=lambda kt: (kt[0], kt[1].number))[1]


class StudyManager:
    def __init__(self, storage: optuna.storages.BaseStorage, *, datasets: Datasets, runs: StudyRuns, tickets: Tickets,
                 notifier: Notifier, max_trials: int, max_parallel: int, trial_grace_s: float = 30.0):
        self.storage = storage
        self.trial_grace_s = trial_grace_s
        self.datasets, self.runs, self.tickets, self.notifier = datasets, runs, tickets, notifier
        self.max_trials = max_trials
        self.max_parallel = max_parallel
        self._locks: dict[str, asyncio.Lock] = {}
        # Studies whose tickets could not all be sent (NATS down): the reconcile resends.
        self._unsent: set[str] = set()

    def _lock(self, study_id: str) -> asyncio.Lock:
        return self._locks.setdefault(study_id, asyncio.Lock())

    async def _io(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _key(self, study_id: str) -> int:
        try:
            return await self._io(self.storage.get_study_id_from_name, study_id)
        except KeyError:
            raise NotFound(f"study {study_id!r} not found") from None

    # -- create ----------------------------------------------------------------------

    async def create(self, spec: StudySpec, validate_only: bool = False) -> Study:
        """Makes the study; `validate_only`: every check, nothing made, and the study as
        it would be (AIP-163)."""
        spec = space.with_defaults(spec)
        space.validate(spec, max_trials=self.max_trials, max_parallel=self.max_parallel)
        directions = [d for _, d in space.objectives(spec)]
        try:
            version = await self.datasets.get_dataset(spec.dataset)
        except NotFound:
            raise InvalidArgument(f"dataset: no dataset {spec.dataset!r}; register it first", field="dataset") from None
        if version.task_kind != "classification" and any(m == "val_accuracy" for m, _ in space.objectives(spec)):
            raise InvalidArgument("objectives: val_accuracy needs a classification dataset", field="objectives")
        dataset_ref = f"{version.name}@{version.version}"
        study_id = spec.name or self._new_id(version.name)
        task = version.task_kind
        if validate_only:
            if spec.name and await self._io(self._exists, study_id):
                raise AlreadyExists(f"name: a study named {study_id!r} already exists", field="name")
            return Study(id=study_id, spec=spec, dataset_version=dataset_ref, task_kind=task)
        try:
            key = await self._io(self.storage.create_new_study, [optuna.study.StudyDirection[d.upper()] for d in directions], study_id)
        except optuna.exceptions.DuplicatedStudyError:
            raise AlreadyExists(f"name: a study named {study_id!r} already exists", field="name") from None
        try:
            experiment_id, run_id = await self.runs.create_study_run(
                study_id, version.name, dataset_ref,
                {"n_trials": str(spec.n_trials), "sampler": space.sampler_of(spec),
                 "pruner": space.pruner_of(spec), "max_parallel": str(spec.max_parallel or 1)},
            )
        except BaseException:
            # Nothing half-made: no study without its MLflow run.
            await self._io(self.storage.delete_study, key)
            raise
        created = self.notifier.created(study_id, dataset_ref, spec.n_trials)
        await self._io(store.set_study_attrs, self.storage, key, {
            store.SPEC: store.spec_to_json(spec),
            store.DATASET: dataset_ref,
            store.TASK: task,
            store.CREATED: store.now_iso(),
            store.EXPERIMENT: experiment_id,
            store.RUN: run_id,
            store.ISSUED: 0,
            store.STATE: store.RUNNING,
        }, [created])
        self.notifier.stored()
        log.info("study %s created on %s: %d trials", study_id, dataset_ref, spec.n_trials, extra={"study_id": study_id})
        await self.top_up(study_id)
        return await self.get(study_id)

    def _exists(self, study_id: str) -> bool:
        try:
            self.storage.get_study_id_from_name(study_id)
        except KeyError:
            return False
        return True

    @staticmethod
    def _new_id(dataset: str) -> str:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        base = "".join(c if c.isalnum() or c in "-_" else "-" for c in dataset.lower())[:30].strip("-_") or "study"
        return f"{base}-{stamp}-{secrets.token_hex(2)}"

    # -- read ------------------------------------------------------------------------

    def _study(self, study_id: str, attrs: dict, directions, trials: list[FrozenTrial]) -> Study:
        c = store.counts(trials)
        state = attrs.get(store.STATE)
        best = best_trial(trials, [d.name.lower() for d in directions])
        baseline = attrs.get(store.BASELINE)
        return Study(
            id=study_id,
            spec=store.spec_from_attrs(attrs),
            state=state if state in (store.RUNNING, store.STOPPED, store.COMPLETED) else "",
            dataset_version=attrs.get(store.DATASET, ""),
            # Only a running study has live tickets: a stopped one's were purged, and a
            # completed one's surplus tickets are dropped by whichever worker takes them.
            counts=TrialCounts(queued=store.queued(attrs, trials) if state == store.RUNNING else 0,
                               running=c["running"], complete=c["complete"], pruned=c["pruned"], fail=c["fail"]),
            best_trial=trial_record(study_id, best) if best is not None else None,
            best_values=list(best.values) if best is not None else [],
            created_at=_parsed(attrs.get(store.CREATED)),
            finished_at=_parsed(attrs.get(store.FINISHED)),
            mlflow_experiment_id=attrs.get(store.EXPERIMENT, ""),
            mlflow_run_id=attrs.get(store.RUN, ""),
            task_kind=attrs.get(store.TASK, ""),
            baseline=Baseline(model=baseline.get("model", ""), mlflow_run_id=baseline.get("run_id", ""),
                              metrics=dict(baseline.get("metrics", {})), error=baseline.get("error", ""))
            if baseline else None,
        )

    def _load(self, study_id: str):
        key = self.storage.get_study_id_from_name(study_id)
        attrs = self.storage.get_study_user_attrs(key)
        if store.SPEC not in attrs:
            raise NotFound(f"study {study_id!r} was not made by kubetune")
        return key, attrs, self.storage.get_study_directions(key), self.storage.get_all_trials(key, deepcopy=False)

    async def get(self, study_id: str) -> Study:
        await self._key(study_id)
        key, attrs, directions, trials = await self._io(self._load, study_id)
        return self._study(study_id, attrs, directions, trials)

    async def list(self, states=(), dataset: str = "") -> list[Study]:
        """`states`: names (RUNNING, STOPPED, COMPLETED); none, every state."""
        def load_all():
            out = []
            for s in self.storage.get_all_studies():
                if store.SPEC not in s.user_attrs:
                    continue
                trials = self.storage.get_all_trials(s._study_id, deepcopy=False)
                out.append(self._study(s.study_name, s.user_attrs, s.directions, trials))
            return out

        studies = await self._io(load_all)
        if states:
            studies = [s for s in studies if s.state in states]
        if dataset:
            studies = [s for s in studies if s.dataset_version == dataset or s.dataset_version.split("@")[0] == dataset]
        return sorted(studies, key=lambda s: s.created_at or EPOCH, reverse=True)

    async def trials(self, study_id: str, states=(), curves: bool = False) -> list[Trial]:
        """`states`: names (QUEUED, RUNNING, COMPLETE, PRUNED, FAIL); none, every state."""
        key = await self._key(study_id)
        trials = await self._io(self.storage.get_all_trials, key, False)
        out = [trial_record(study_id, t, curves) for t in trials]
        return [t for t in out if not states or t.state in states]

    async def snapshot(self, study_id: str) -> StudySnapshot:
        study = await self.get(study_id)
        return StudySnapshot(study=study, trials=await self.trials(study_id, curves=True))

    # -- lifecycle ---------------------------------------------------------------------

    async def stop(self, study_id: str) -> Study:
        key = await self._key(study_id)
        async with self._lock(study_id):
            attrs = await self._io(self.storage.get_study_user_attrs, key)
            if attrs.get(store.STATE) != store.RUNNING:
                raise FailedPrecondition(f"study {study_id} is {attrs.get(store.STATE, 'unknown').lower()}, not running")
            # Void from here: tickets already issued never run (the purge removes them).
            await self._io(store.set_study_attrs, self.storage, key,
                           {store.STATE: store.STOPPED, store.VOID_BELOW: int(attrs.get(store.ISSUED, 0))},
                           [self.notifier.stopped(study_id)])
            self.notifier.stored()
            try:
                await self.tickets.purge(study_id)
            except Exception:  # noqa: BLE001 - NATS down: a worker drops a stopped study's tickets
                log.warning("study %s: its queued tickets could not be purged", study_id, exc_info=True)
        log.info("study %s stopped", study_id, extra={"study_id": study_id})
        return await self.get(study_id)

    async def resume(self, study_id: str) -> Study:
        key = await self._key(study_id)
        async with self._lock(study_id):
            _, attrs, _, trials = await self._io(self._load, study_id)
            spec = store.spec_from_attrs(attrs)
            if attrs.get(store.STATE) == store.RUNNING:
                raise FailedPrecondition(f"study {study_id} is already running")
            if store.counts(trials)["finished"] >= spec.n_trials:
                raise FailedPrecondition(f"study {study_id} already finished its {spec.n_trials} trials")
            # A time budget counts from the resume: else a study that ran out of time
            # would complete again at once, with no new trial.
            await self._io(store.set_study_attrs, self.storage, key, {
                store.RESUMED: store.now_iso(),
                store.STATE: store.RUNNING,
                store.VOID_BELOW: int(attrs.get(store.ISSUED, 0)),
            }, [self.notifier.resumed(study_id)])
            self.notifier.stored()
        log.info("study %s resumed", study_id, extra={"study_id": study_id})
        await self.top_up(study_id)
        return await self.get(study_id)

    async def top_up(self, study_id: str, resend: bool = False) -> None:
        """Issues tickets up to the parallelism; completes the study when it is done.
        `resend` republishes live tickets no trial took (after a restart)."""
        async with self._lock(study_id):
            key, attrs, directions, trials = await self._io(self._load, study_id)
            if attrs.get(store.STATE) != store.RUNNING:
                return
            if await self._reclaim(study_id, key, trials):
                key, attrs, directions, trials = await self._io(self._load, study_id)
            spec = store.spec_from_attrs(attrs)
            c = store.counts(trials)
            remaining = spec.n_trials - c["finished"]
            timed_out = store.timed_out(spec, attrs)
            if (remaining <= 0 or timed_out) and c["running"] == 0:
                await self._complete(study_id, key, attrs, directions, trials, c)
                return
            if resend or study_id in self._unsent:
                self._unsent.discard(study_id)
                await self._send_tickets(study_id, store.untaken_sequences(attrs, trials))
            if timed_out:
                return
            want = min(spec.max_parallel or 1, remaining) - c["running"] - store.queued(attrs, trials)
            if want <= 0:
                return
            first = int(attrs.get(store.ISSUED, 0))
            # Counted before sent: a ticket that could not be sent is sent again by a resend.
            await self._io(self.storage.set_study_user_attr, key, store.ISSUED, first + want)
            await self._send_tickets(study_id, range(first, first + want))

    async def _send_tickets(self, study_id: str, sequences) -> None:
        try:
            for seq in sequences:
                await self.tickets.send(TrialTicket(study_id=study_id, ticket_id=store.ticket_id(study_id, seq), sequence=seq))
        except Exception:  # noqa: BLE001 - NATS down: the reconcile resends the untaken ones (ids dedupe)
            log.warning("study %s: tickets not sent; the next reconcile sends them", study_id, exc_info=True)
            self._unsent.add(study_id)

    async def _reclaim(self, study_id: str, key: int, trials: list[FrozenTrial]) -> bool:
        """RUNNING trials whose worker stopped beating (died at any instant, even on its
        ticket's last delivery): each is finished from the end it saved, else failed as
        abandoned, which frees its slot for a new ticket. True when any was."""
        if not any(t.state == TrialState.RUNNING for t in trials):
            return False
        stale = set(await self._io(store.stale_trial_ids, self.storage, key, self.trial_grace_s))
        for t in trials:
            if t._trial_id not in stale:
                continue
            try:
                saved = store.saved_end(t)
                if saved is None:
                    reason = (f"worker {t.user_attrs.get(store.T_WORKER, '?')} was lost (no heartbeat for "
                              f"{self.trial_grace_s:g}s); the trial runs again")
                    for attr, value in ((store.T_ABANDONED, True), (store.T_RECLAIMED, True), (store.T_REASON, reason)):
                        await self._io(self.storage.set_trial_user_attr, t._trial_id, attr, value)
                    saved = TrialEnd("trial_failed", study_id, t.number, t.user_attrs.get(store.T_RUN, ""), reason=reason)
                    await self._io(store.save_end, self.storage, t._trial_id, saved)
                await self.notifier.trial_ended(saved)
                await self._io(self.storage.set_trial_state_values, t._trial_id, *store.end_state(saved))
                log.warning("trial %s/%d reclaimed as %s", study_id, t.number, saved.kind, extra={"study_id": study_id})
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # finished meanwhile by its worker, or by a redelivered ticket
        return bool(stale)

    async def _complete(self, study_id, key, attrs, directions, trials, c) -> None:
        best = best_trial(trials, [d.name.lower() for d in directions])
        event = self.notifier.completed(study_id, attrs.get(store.RUN, ""), c, best)
        await self._io(store.set_study_attrs, self.storage, key,
                       {store.STATE: store.COMPLETED, store.FINISHED: store.now_iso()}, [event])
        self.notifier.stored()
        log.info("study %s completed: %d complete, %d pruned, %d failed", study_id,
                 c["complete"], c["pruned"], c["fail"], extra={"study_id": study_id})

    async def running_ids(self) -> list[str]:
        studies = await self._io(self.storage.get_all_studies)
        return [s.study_name for s in studies if s.user_attrs.get(store.STATE) == store.RUNNING]

    async def reconcile(self, resend: bool = False) -> None:
        for study_id in await self.running_ids():
            try:
                await self.top_up(study_id, resend=resend)
            except Exception:  # noqa: BLE001 - one broken study must not block the others
                log.exception("reconciling study %s failed", study_id)
