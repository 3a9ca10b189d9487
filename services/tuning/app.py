"""Wires the tuning service: settings -> Optuna storage -> NATS -> clients -> domain -> gRPC."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from kubetune.tuning.v1 import tuning_pb2, tuning_pb2_grpc
from kubetune_common import subjects
from services.common.clients import Backend, DataClient, TrackingClient
from services.common.events import EventBus
from services.common.outbox import Relay
from services.common.server import Service, cleanup_on_failure, make_server
from services.common.watch import EventHub
from services.tuning import store
from services.tuning.adapters import (BusNotifier, DataCatalog, TicketQueue, reconcile_forever, stop_task,
                                      top_up_on_trial_end)
from services.tuning.config import Settings
from services.tuning.servicer import TuningServicer
from services.tuning.studies import StudyManager
from services.tuning.summary import ManagedStudies, SummaryCache

log = logging.getLogger(__name__)
# No retries: a failed CreateStudy deletes what it made, and the caller tries again.
CALL_DEADLINE_S = 30.0


@dataclass
class TuningApp(Service):
    studies: StudyManager
    summaries: SummaryCache


async def start(settings: Settings) -> TuningApp:
    storage_url = settings.storage_url or store.default_storage_url(Path(settings.home))
    async with cleanup_on_failure() as opened:
        # Created here, once, before any worker touches it (two creators of one SQLite file race).
        storage = await asyncio.to_thread(store.make_storage, storage_url)
        bus = await EventBus.open(settings.nats_url, "tuning")
        opened.add(bus.close)
        relay = await Relay(store.StudyOutbox(storage), bus.send, name="tuning").start()
        opened.add(relay.stop)
        data = DataClient(Backend("data", settings.data_address, CALL_DEADLINE_S))
        opened.add(data.close)
        tracking = TrackingClient(Backend("tracking", settings.tracking_address, CALL_DEADLINE_S))
        opened.add(tracking.close)
        studies = StudyManager(
            storage, datasets=DataCatalog(data), runs=tracking, tickets=TicketQueue(bus),
            notifier=BusNotifier(bus, relay),
            max_trials=settings.max_trials, max_parallel=settings.max_parallel, trial_grace_s=settings.trial_grace_s,
        )
        hub = EventHub(bus, "kubetune.tuning.*.*")
        summaries = SummaryCache(ManagedStudies(studies), settings.summary_cache_size)
        # A trial's end only: per-epoch events (most of them) need not reach this process.
        for subject in (subjects.TRIAL_COMPLETED, subjects.TRIAL_PRUNED, subjects.TRIAL_FAILED):
            await bus.subscribe(subject, functools.partial(top_up_on_trial_end, studies))
        reconciler = asyncio.create_task(reconcile_forever(studies))
        opened.add(functools.partial(stop_task, reconciler))

        def register(server):
            tuning_pb2_grpc.add_TuningServiceServicer_to_server(TuningServicer(studies, hub, summaries), server)
            return [tuning_pb2.DESCRIPTOR.services_by_name["TuningService"].full_name]

        server = await make_server(settings.address, register)
        log.info("optuna storage %s", storage_url.split("@")[-1])
        return TuningApp(opened.serve(server), studies, summaries)
