"""The worker's NATS and gRPC side: the Worker pulls trial tickets from the JetStream
work queue and runs them one at a time, keeping each ticket alive while it trains;
and the trial thread's ports (trials.Ports) over it: the typed data and tracking
clients, called on the worker's event loop (grpc.aio calls must be made there) while
the trial thread waits, the trial's events on the bus, and whether a study was
stopped, from study events checked against the storage. Protobuf stops here
(messages.py translates)."""

from __future__ import annotations

import asyncio
import logging
import threading

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig

from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common import subjects
from services.common.clients import DataClient, TrackingClient
from services.common.events import EventBus
from services.tuning import messages as tuning_messages
from services.tuning import store
from services.tuning.records import TrialEnd, TrialTicket
from services.tuning.worker import messages
from services.tuning.worker.records import DatasetVersion, TrialRun
from services.tuning.worker.training import EpochResult
from services.tuning.worker.trials import Outcome, TrialRunner

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 30


class TrialPorts:
    """trials.Ports over the worker. The data and tracking calls are safe to repeat (a
    read, and a run keyed by (study, trial)), so each rides out a restart within its
    backend's retry budget. Each message is built once, in the trial thread, as the
    event it goes out as."""

    def __init__(self, worker: Worker, data: DataClient, tracking: TrackingClient, storage, crash_point):
        self.worker, self.data, self.tracking = worker, data, tracking
        self._stopped = StoppedStudies(worker, storage)
        self._crash_point = crash_point

    def _wait(self, client) -> float:
        # What one call may take at most, its retries included.
        return client.backend.retry_budget_s + 2 * client.backend.deadline_s

    def get_dataset(self, ref: str) -> DatasetVersion:
        version = self.worker.call(lambda: self.data.get_dataset(ref), timeout=self._wait(self.data))
        return messages.version_from_pb(version)

    def create_run(self, run: TrialRun) -> str:
        request = messages.run_to_pb(run)
        return self.worker.call(lambda: self.tracking.create_trial_run(request), timeout=self._wait(self.tracking))

    def trial_started(self, study_id: str, trial: int, params: dict[str, str], mlflow_run_id: str,
                      worker: str) -> None:
        self.worker.publish_soon(trial_started=messages.started_to_pb(study_id, trial, params, mlflow_run_id, worker))

    def epoch_completed(self, study_id: str, trial: int, mlflow_run_id: str, epoch: EpochResult) -> None:
        self.worker.publish_soon(epoch_completed=messages.epoch_to_pb(study_id, trial, mlflow_run_id, epoch))

    def trial_ended(self, end: TrialEnd) -> None:
        self.worker.publish(event_id=store.end_event_id(end.study_id, end.trial),
                            **{end.kind: tuning_messages.end_to_pb(end)})

    def study_stopped(self, study_id: str) -> bool:
        return self._stopped(study_id)

    def shutting_down(self) -> bool:
        return self.worker.shutting_down.is_set()

    def crash_point(self, step: str) -> None:
        self._crash_point(step)


class StoppedStudies:
    """The set fed by study events is a hint (a core NATS subscription can miss
    study_resumed): the storage has the last word, and a stale entry is dropped."""

    def __init__(self, worker, storage):
        self.worker, self.storage = worker, storage

    def __call__(self, study_id: str) -> bool:
        if study_id not in self.worker.stopped_studies:
            return False
        try:
            state = self.storage.get_study_user_attrs(self.storage.get_study_id_from_name(study_id)).get(store.STATE)
        except Exception:  # noqa: BLE001 - the storage unreachable: trust the hint
            return True
        if state == store.RUNNING:
            self.worker.stopped_studies.discard(study_id)
            return False
        return True


class Worker:
    def __init__(self, settings, bus: EventBus, runner_factory):
        self.settings = settings
        self.bus = bus
        self.loop = asyncio.get_running_loop()
        self.shutting_down = threading.Event()
        self.stopped_studies: set[str] = set()
        self.runner: TrialRunner = runner_factory(self)
        self.task: asyncio.Task | None = None
        self.current: TrialTicket | None = None
        self._pending: list = []
        # The durable consumer's ack wait, as read back from NATS: a consumer made by an
        # earlier deployment may differ from this worker's settings.
        self.ack_wait_s = settings.ack_wait_s

    # Bridges for the trial thread: `make()` builds the coroutine on the worker's loop
    # (grpc.aio calls must be created there), and the thread waits for its result.
    def call(self, make, timeout: float = CALL_TIMEOUT_S):
        async def on_loop():
            return await make()

        return asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result(timeout)

    def publish(self, event_id: str = "", **payload) -> None:
        """Publishes and waits for JetStream's ack, after every event sent before it."""
        self.settle()
        self.call(lambda: self.bus.publish(event_id, **payload))

    def publish_soon(self, **payload) -> None:
        """Per-epoch events: sent in order without the trial waiting for each ack;
        `publish` (the trial's end) waits for all of them first, so none is lost."""
        self._pending.append(asyncio.run_coroutine_threadsafe(self.bus.publish(**payload), self.loop))

    def settle(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result(CALL_TIMEOUT_S)

    async def watch_studies(self) -> None:
        async def on_event(event):
            kind = event.WhichOneof("payload")
            if kind == "study_stopped":
                self.stopped_studies.add(event.study_stopped.study_id)
            elif kind == "study_resumed":
                self.stopped_studies.discard(event.study_resumed.study_id)

        await self.bus.subscribe(subjects.STUDY_EVENTS, on_event)

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=subjects.WORKERS_CONSUMER,
            filter_subject=subjects.ALL_TRIAL_TICKETS,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            max_deliver=self.settings.max_deliveries,
        )

    async def declare_consumer(self) -> None:
        """Creates the shared durable consumer, or updates it to this worker's settings (a
        bare pull_subscribe would keep whatever the first worker ever made), and keeps
        what NATS says it is now."""
        info = await self.bus.js.add_consumer(subjects.WORK_STREAM, self.consumer_config())
        self.ack_wait_s = info.config.ack_wait or self.settings.ack_wait_s
        if info.config.ack_wait != self.settings.ack_wait_s or info.config.max_deliver != self.settings.max_deliveries:
            log.warning("the workers' consumer kept ack_wait %ss, max_deliver %s (this worker asked %ss, %s)",
                        info.config.ack_wait, info.config.max_deliver, self.settings.ack_wait_s, self.settings.max_deliveries)

    async def _refresh_ack_wait(self) -> None:
        # Another deployment may have changed the consumer since: its keep-alives follow.
        try:
            info = await self.bus.js.consumer_info(subjects.WORK_STREAM, subjects.WORKERS_CONSUMER, timeout=2)
            self.ack_wait_s = info.config.ack_wait or self.ack_wait_s
        except Exception:  # noqa: BLE001 - keep the last value known
            log.warning("reading the workers' consumer failed", exc_info=True)

    async def consume(self) -> None:
        await self.declare_consumer()
        sub = await self.bus.js.pull_subscribe_bind(subjects.WORKERS_CONSUMER, stream=subjects.WORK_STREAM)
        try:
            await self._take_tickets(sub)
        finally:
            # A pull subscription left open makes the NATS drain wait out its timeout.
            await sub.unsubscribe()

    async def _take_tickets(self, sub) -> None:
        while not self.shutting_down.is_set():
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception:  # noqa: BLE001 - NATS restarting: wait and fetch again
                log.warning("fetching a ticket failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self.handle(msg)

    async def handle(self, msg) -> None:
        ticket = tuning_messages.ticket_from_pb(pb.TrialTicket.FromString(msg.data))
        self.current = ticket
        await self._refresh_ack_wait()
        keepalive = asyncio.create_task(self._keep_alive(msg))
        try:
            outcome = await asyncio.to_thread(self.runner.run, ticket)
        except Exception:  # noqa: BLE001 - a broken ticket must not stop the worker
            log.exception("ticket %s failed before its trial ran", ticket.ticket_id)
            outcome = Outcome.ABANDONED
        finally:
            keepalive.cancel()
            self.current = None
        try:
            if outcome == Outcome.ABANDONED:
                await msg.nak(delay=1.0)
            else:
                await msg.ack()
        except Exception:  # noqa: BLE001 - redelivery sorts it out
            log.warning("could not settle ticket %s", ticket.ticket_id, exc_info=True)
        log.info("ticket %s: %s", ticket.ticket_id, outcome, extra={"study_id": ticket.study_id})

    async def _keep_alive(self, msg) -> None:
        """In-progress acks: a long trial keeps its ticket; a dead worker's ticket is redelivered."""
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            try:
                await msg.in_progress()
            except Exception:  # noqa: BLE001
                log.warning("in-progress ack failed", exc_info=True)

    async def stop(self) -> None:
        self.shutting_down.set()
        if self.current is not None:
            log.info("stopping: the running trial ends at its next epoch and its ticket goes back")
        if self.task:
            try:
                await asyncio.wait_for(self.task, timeout=self.settings.grace_s + 30)
            except asyncio.TimeoutError:
                self.task.cancel()
