"""Builds the registry service: store -> domain -> NATS publisher -> gRPC server.
Neither mlflow nor torch is imported here: the first Predict loads them, with the model."""

from __future__ import annotations

import asyncio
import functools
import os

from kubetune.registry.v1 import registry_pb2, registry_pb2_grpc
from services.common.events import EventBus
from services.common.outbox import Relay
from services.common.server import Server, make_server
from services.registry.config import Settings


async def start(settings: Settings) -> Server:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from services.registry.mlflow_store import MlflowRegistryStore
    from services.registry.outbox import RegistryOutbox
    from services.registry.predictor import Predictor, load_pyfunc
    from services.registry.registry import Registry
    from services.registry.servicer import RegistryServicer

    store = MlflowRegistryStore(settings.mlflow_uri)
    bus = await EventBus.open(settings.nats_url, "registry") if settings.publish_events else None
    registry = Registry(store)
    relay = None
    if bus is not None:
        outbox = RegistryOutbox(store)
        relay = await Relay(outbox, bus.send, name="registry").start()

        def announce(name: str) -> None:
            outbox.touch(name)
            relay.wake()

        registry.on_change.append(announce)
    predictor = Predictor(registry, cache_size=settings.model_cache_size, max_rows=settings.max_predict_rows,
                          resolve_ttl_s=settings.resolve_ttl_s,
                          loader=functools.partial(load_pyfunc, mlflow_uri=settings.mlflow_uri))

    def register(server) -> list[str]:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry, predictor), server)
        return [registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name]

    server = await make_server(settings.address, register)
    server.predictor = predictor  # tests and operators read its cache

    async def cleanup() -> None:
        if relay is not None:
            await relay.stop()
        if bus is not None:
            await bus.close()
        await asyncio.to_thread(store.close)

    server.on_stop.append(cleanup)
    return server
