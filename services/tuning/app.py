"""The tuning service: settings -> Optuna storage -> NATS -> gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from kubetune.tuning.v1 import tuning_pb2, tuning_pb2_grpc
from services.common import subjects
from services.common.clients import channel
from services.common.errors import NotFound, Unavailable
from services.common.events import EventBus
from services.common.server import Server, make_server
from services.common.watch import EventHub
from services.tuning import records
from services.tuning.config import Settings
from services.tuning.servicer import TuningServicer, study_id_of
from services.tuning.studies import StudyManager, StudyPorts
from services.tuning.summary import ManagedStudies, SummaryCache

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 30
RECONCILE_EVERY_S = 3.0
FINISHING = {"trial_completed", "trial_pruned", "trial_failed"}


def _backend_error(backend: str, exc: grpc.aio.AioRpcError) -> Exception:
    if exc.code() == grpc.StatusCode.NOT_FOUND:
        return NotFound(exc.details())
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"the {backend} service is unavailable: {exc.details()}")
    return exc


async def start(settings: Settings) -> Server:
    storage_url = settings.storage_url or records.default_storage_url(Path(settings.home))
    # Created here, once, before any worker touches it (two creators of one SQLite file race).
    storage = await asyncio.to_thread(records.make_storage, storage_url)
    bus = await EventBus.open(settings.nats_url, "tuning")
    data_channel = channel(settings.data_address)
    tracking_channel = channel(settings.tracking_address)
    data = data_pb2_grpc.DataServiceStub(data_channel)
    tracking = tracking_pb2_grpc.TrackingServiceStub(tracking_channel)

    async def get_dataset(ref: str):
        try:
            return (await data.GetDataset(data_pb2.GetDatasetRequest(ref=ref), timeout=CALL_TIMEOUT_S)).version
        except grpc.aio.AioRpcError as exc:
            raise _backend_error("data", exc) from None

    async def create_study_run(study_id, dataset_name, dataset_version, params):
        try:
            r = await tracking.CreateStudyRun(tracking_pb2.CreateStudyRunRequest(
                study_id=study_id, dataset_name=dataset_name, dataset_version=dataset_version, params=params,
            ), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise _backend_error("tracking", exc) from None
        return r.experiment_id, r.run_id

    async def send_ticket(ticket: tuning_pb2.TrialTicket):
        await bus.js.publish(subjects.ticket_subject(ticket.study_id), ticket.SerializeToString(),
                             headers={"Nats-Msg-Id": ticket.ticket_id})

    async def purge_tickets(study_id: str):
        await bus.js.purge_stream(subjects.WORK_STREAM, subject=subjects.ticket_subject(study_id))

    async def publish(event_id: str = "", **payload):
        await bus.publish(event_id, **payload)

    studies = StudyManager(
        storage,
        StudyPorts(get_dataset, create_study_run, publish, send_ticket, purge_tickets),
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

    server.on_stop += [bus.close, data_channel.close, tracking_channel.close, stop_reconciler]
    log.info("optuna storage %s", storage_url.split("@")[-1])
    return server
