"""Wires the tracking service: store -> domain -> events consumer -> gRPC server."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from kubetune.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from services.common.events import EventBus
from services.common.server import Service, cleanup_on_failure, make_server
from services.tracking.config import Settings
from services.tracking.adapters import EventConsumer
from services.tracking.store import TrackingStore
from services.tracking.tracking import Tracking

log = logging.getLogger(__name__)


def make_store(settings: Settings) -> TrackingStore:
    if settings.backend_store_uri:
        from services.tracking.sql_store import MlflowSqlStore

        return MlflowSqlStore(settings.mlflow_uri, settings.backend_store_uri)
    from services.tracking.mlflow_store import MlflowStore

    return MlflowStore(settings.mlflow_uri)


@dataclass
class TrackingApp(Service):
    tracking: Tracking
    consumer: EventConsumer | None  # None when consume_events is off
    consumer_name: str


async def start(settings: Settings) -> TrackingApp:
    from services.tracking.recorder import EventRecorder
    from services.tracking.servicer import TrackingServicer

    async with cleanup_on_failure() as opened:
        # No MLflow import (the store speaks REST itself); SQLAlchemy's, for the direct
        # read path, still takes a moment: off the event loop.
        store = await asyncio.to_thread(make_store, settings)
        opened.add(functools.partial(asyncio.to_thread, store.close))
        tracking = Tracking(store)
        consumer = None
        if settings.consume_events:
            bus = await EventBus.open(settings.nats_url, "tracking")
            opened.add(bus.close)
            recorder = EventRecorder(store)
            tracking.on_run_created.append(recorder.run_created)
            consumer = EventConsumer(
                bus, recorder, name=settings.consumer_name,
                batch_size=settings.batch_size, batch_wait_s=settings.batch_wait_s,
            )
            await consumer.start()
            opened.add(functools.partial(consumer.stop, settings.grace_s))

        def register(server) -> list[str]:
            tracking_pb2_grpc.add_TrackingServiceServicer_to_server(TrackingServicer(tracking), server)
            return [tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name]

        server = await make_server(settings.address, register)
        return TrackingApp(opened.serve(server), tracking, consumer, settings.consumer_name)
