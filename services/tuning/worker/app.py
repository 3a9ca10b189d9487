"""A warm worker: pulls trial tickets from the JetStream work queue and runs them
one at a time, keeping the ticket alive while it trains."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import nats.errors
import torch
from nats.js.api import AckPolicy, ConsumerConfig

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import subjects
from services.common.clients import Backend, DataClient, TrackingClient
from services.common.events import EventBus
from services.common.server import Server, make_server
from services.tuning import store
from services.tuning.worker.adapters import Backends, StoppedStudies
from services.tuning.worker.config import Settings
from services.tuning.worker.crash_points import CrashPoints
from services.tuning.worker.datasets import DatasetCache
from services.tuning.worker.trials import Outcome, Ports, TrialRunner

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 30
# How long a trial waits out the data or tracking service restarting before it fails.
OUTAGE_BUDGET_S = 180


class Worker:
    def __init__(self, settings: Settings, bus: EventBus, runner_factory):
        self.settings = settings
        self.bus = bus
        self.loop = asyncio.get_running_loop()
        self.shutting_down = threading.Event()
        self.stopped_studies: set[str] = set()
        self.runner: TrialRunner = runner_factory(self)
        self.task: asyncio.Task | None = None
        self.current: pb.TrialTicket | None = None
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
        ticket = pb.TrialTicket.FromString(msg.data)
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


async def start(settings: Settings) -> Server:
    torch.set_num_threads(settings.torch_threads)
    home = Path(settings.home)
    bus = await EventBus.open(settings.nats_url, f"worker-{settings.name}")
    data = DataClient(Backend("data", settings.data_address, CALL_TIMEOUT_S, OUTAGE_BUDGET_S))
    tracking = TrackingClient(Backend("tracking", settings.tracking_address, CALL_TIMEOUT_S, OUTAGE_BUDGET_S))
    storage = store.make_storage(settings.storage_url or store.default_storage_url(home))

    def s3_client():
        import boto3

        return boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)

    cache = DatasetCache(Path(settings.cache_dir) if settings.cache_dir else home / "worker-cache", s3_client)

    def runner_factory(worker: Worker) -> TrialRunner:
        backends = Backends(worker, data, tracking)
        ports = Ports(
            get_dataset=backends.get_dataset,
            create_run=backends.create_run,
            publish=worker.publish,
            publish_soon=worker.publish_soon,
            study_stopped=StoppedStudies(worker, storage),
            shutting_down=worker.shutting_down.is_set,
            crash_point=CrashPoints(settings.crash_at, settings.crash_flags),
        )
        return TrialRunner(storage, ports, cache, settings.name, settings.mlflow_uri,
                           heartbeat_s=settings.heartbeat_s, grace_s=settings.trial_grace_s,
                           curve_every_s=settings.curve_every_s)

    worker = Worker(settings, bus, runner_factory)
    await worker.watch_studies()
    server = await make_server(settings.address, lambda s: [])
    worker.task = asyncio.create_task(worker.consume())
    server.on_stop += [bus.close, data.close, tracking.close, worker.stop]
    log.info("worker %s ready (torch threads %d)", settings.name, settings.torch_threads)
    return server
