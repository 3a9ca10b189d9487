"""The tuning service: settings -> Optuna storage -> NATS -> gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from kubetune.tuning.v1 import tuning_pb2, tuning_pb2_grpc
from services.common import subjects
from services.common.clients import Backend, DataClient, TrackingClient
from services.common.events import EventBus
from services.common.server import Server, make_server
from services.common.watch import EventHub
from services.tuning import store
from services.tuning.adapters import TicketQueue
from services.tuning.config import Settings
from services.tuning.servicer import TuningServicer, study_id_of
from services.tuning.studies import StudyManager, StudyPorts
from services.tuning.summary import ManagedStudies, SummaryCache

log = logging.getLogger(__name__)
RECONCILE_EVERY_S = 3.0
FINISHING = {"trial_completed", "trial_pruned", "trial_failed"}
# No retries: a failed CreateStudy deletes what it made, and the caller tries again.
CALL_DEADLINE_S = 30.0


async def start(settings: Settings) -> Server:
    storage_url = settings.storage_url or store.default_storage_url(Path(settings.home))
    # Created here, once, before any worker touches it (two creators of one SQLite file race).
    storage = await asyncio.to_thread(store.make_storage, storage_url)
    bus = await EventBus.open(settings.nats_url, "tuning")
    data = DataClient(Backend("data", settings.data_address, CALL_DEADLINE_S))
    tracking = TrackingClient(Backend("tracking", settings.tracking_address, CALL_DEADLINE_S))
    tickets = TicketQueue(bus)

    studies = StudyManager(
        storage,
        StudyPorts(data.get_dataset, tracking.create_study_run, bus.publish, tickets.send, tickets.purge),
        max_trials=settings.max_trials,
        max_parallel=settings.max_parallel,
        trial_grace_s=settings.trial_grace_s,
    )
    hub = EventHub(bus, "kubetune.tuning.*.*")
    summaries = SummaryCache(ManagedStudies(studies), settings.summary_cache_size)

    async def on_trial_event(event):
        if event.WhichOneof("payload") in FINISHING:
            await studies.top_up(study_id_of(event))

    await bus.subscribe(subjects.TRIAL_EVENTS, on_trial_event)

    async def reconcile_forever():
        # Catches what events alone miss: a restart, a lost ticket, a time budget running out.
        await studies.reconcile(resend=True)
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            await studies.reconcile()

    reconciler = asyncio.create_task(reconcile_forever())

    def register(server):
        tuning_pb2_grpc.add_TuningServiceServicer_to_server(TuningServicer(studies, hub, summaries), server)
        return [tuning_pb2.DESCRIPTOR.services_by_name["TuningService"].full_name]

    server = await make_server(settings.address, register)

    async def stop_reconciler():
        reconciler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reconciler

    server.on_stop += [bus.close, data.close, tracking.close, stop_reconciler]
    log.info("optuna storage %s", storage_url.split("@")[-1])
    return server
