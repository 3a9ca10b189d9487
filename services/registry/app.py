"""Wires the registry service: store -> domain -> outbox relay to NATS -> gRPC server.
Neither mlflow nor torch is imported here: the first Predict loads them, with the model."""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass

from kubetune.registry.v1 import registry_pb2, registry_pb2_grpc
from services.common.events import EventBus
from services.common.outbox import Relay
from services.common.server import Service, cleanup_on_failure, make_server
from services.registry.adapters import Announcer
from services.registry.config import Settings
from services.registry.outbox import RegistryOutbox
from services.registry.predictor import Predictor
from services.registry.registry import Registry


@dataclass
class RegistryApp(Service):
    registry: Registry
    predictor: Predictor  # tests and operators read its cache


async def start(settings: Settings) -> RegistryApp:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from services.registry.mlflow_store import MlflowRegistryStore
    from services.registry.predictor import load_pyfunc
    from services.registry.servicer import RegistryServicer

    async with cleanup_on_failure() as opened:
        store = MlflowRegistryStore(settings.mlflow_uri)
        opened.add(functools.partial(asyncio.to_thread, store.close))
        registry = Registry(store)
        if settings.publish_events:
            bus = await EventBus.open(settings.nats_url, "registry")
            opened.add(bus.close)
            outbox = RegistryOutbox(store)
            relay = await Relay(outbox, bus.send, name="registry").start()
            opened.add(relay.stop)
            registry.on_change.append(Announcer(outbox, relay))
        predictor = Predictor(registry, cache_size=settings.model_cache_size, max_rows=settings.max_predict_rows,
                              resolve_ttl_s=settings.resolve_ttl_s,
                              loader=functools.partial(load_pyfunc, mlflow_uri=settings.mlflow_uri))

        def register(server) -> list[str]:
            registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry, predictor), server)
            return [registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name]

        server = await make_server(settings.address, register)
        return RegistryApp(opened.serve(server), registry, predictor)
