"""Builds the tracking service: store -> domain -> events consumer -> gRPC server."""

from __future__ import annotations

import asyncio
import logging

from kubetune.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from services.common.events import EventBus
from services.common.server import Server, make_server
from services.tracking.config import Settings
from services.tracking.store import TrackingStore

log = logging.getLogger(__name__)


def make_store(settings: Settings) -> TrackingStore:
    if settings.backend_store_uri:
        from services.tracking.sql_store import MlflowSqlStore

        return MlflowSqlStore(settings.mlflow_uri, settings.backend_store_uri)
    from services.tracking.mlflow_store import MlflowStore

    return MlflowStore(settings.mlflow_uri)


async def start(settings: Settings) -> Server:
    # No MLflow import (the store speaks REST itself); SQLAlchemy's, for the direct
    # read path, still takes a moment: off the event loop.
    store = await asyncio.to_thread(make_store, settings)
    from services.tracking.recorder import EventRecorder
    from services.tracking.servicer import TrackingServicer
    from services.tracking.tracking import Tracking

    tracking = Tracking(store)

    def register(server) -> list[str]:
        tracking_pb2_grpc.add_TrackingServiceServicer_to_server(TrackingServicer(tracking), server)
        return [tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name]

    bus = consumer = None
    if settings.consume_events:
        from services.tracking.consumer import EventConsumer

        bus = await EventBus.open(settings.nats_url, "tracking")
        consumer = EventConsumer(
            bus, EventRecorder(store), name=settings.consumer_name,
            batch_size=settings.batch_size, batch_wait_s=settings.batch_wait_s,
        )
        await consumer.start()
    server = await make_server(settings.address, register)
    # What tests and operators look at on a running service.
    server.tracking = tracking
    server.consumer = consumer
    server.consumer_name = settings.consumer_name

    async def cleanup() -> None:
        if consumer is not None:
            await consumer.stop(settings.grace_s)
        if bus is not None:
            await bus.close()
        await asyncio.to_thread(store.close)

    server.on_stop.append(cleanup)
    return server
