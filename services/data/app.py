"""Wires the data service: store, blobs, sources, catalog, event bus, outbox relay,
reference consumer and gRPC server."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from services.common.events import EventBus
from services.common.outbox import Relay
from services.common.server import Service, cleanup_on_failure, make_server
from services.data.adapters import BusNotifier, ReferenceConsumer
from services.data.blobs import BlobStore, LocalBlobs, S3Blobs
from services.data.catalog import Catalog
from services.data.config import Settings
from services.data.servicer import DataServicer
from services.data.sources import Sources, s3_client
from services.data.store import open_store

SERVICE_NAME = data_pb2.DESCRIPTOR.services_by_name["DataService"].full_name


def make_blobs(settings: Settings) -> BlobStore:
    data = settings.home / "data"
    if settings.cache_uri.startswith("s3://"):
        client = s3_client(settings.s3_endpoint_url, settings.s3_region)
        return S3Blobs(client, settings.cache_uri, data / "cache")
    if settings.cache_uri:
        raise ValueError(f"cache_uri must be empty or s3://bucket/prefix, not {settings.cache_uri!r}")
    return LocalBlobs(data / "blobs")


def release_memory_promptly() -> None:
    """Arrow's jemalloc pool, returning freed pages at once: after a large registration
    the service shrinks back instead of keeping its peak (mimalloc, the default, keeps it)."""
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, AttributeError):  # a pyarrow built without jemalloc
        pass


@dataclass
class DataApp(Service):
    catalog: Catalog
    consumer: ReferenceConsumer


async def start(settings: Settings) -> DataApp:
    release_memory_promptly()
    async with cleanup_on_failure() as opened:
        store = await asyncio.to_thread(open_store, settings.catalog_url, settings.home)
        opened.add(functools.partial(asyncio.to_thread, store.close))
        blobs = await asyncio.to_thread(make_blobs, settings)
        sources = Sources(
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            max_bytes=settings.max_bytes,
            allow_local=settings.allow_local_paths,
        )
        bus = await EventBus.open(settings.nats_url, "data")
        opened.add(bus.close)
        relay = await Relay(store.outbox, bus.send, name="data").start()
        opened.add(relay.stop)
        catalog = Catalog(
            store, blobs, sources,
            work_dir=settings.home / "data" / "tmp",
            min_rows=settings.min_rows,
            max_bytes=settings.max_bytes,
            notifier=BusNotifier(bus, relay),
        )
        consumer = await ReferenceConsumer(bus, catalog).start()
        # Closed in reverse: the consumer and the relay stop, then NATS drains, then the store closes.
        opened.add(consumer.stop)

        def register(server):
            data_pb2_grpc.add_DataServiceServicer_to_server(DataServicer(catalog), server)
            return [SERVICE_NAME]

        server = await make_server(settings.address, register)
        return DataApp(opened.serve(server), catalog, consumer)
