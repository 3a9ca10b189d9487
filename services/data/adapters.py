"""The data service's NATS side: the catalog's facts as events (BusNotifier, the
catalog's Notifier port), and who uses which dataset version (ReferenceConsumer).

References: studies and registered models, learned from their events through JetStream
durable pull consumers, so nothing is missed while the data service is down and
replicas share the work. Recorded references make DeleteDataset refuse to delete a
version still in use."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kubetune.events.v1 import events_pb2
from kubetune_common import subjects
from services.common.events import EventBus, decode
from services.common.outbox import OutboxEvent, Relay
from services.data.catalog import Catalog
from services.data.records import DatasetVersion, Reference

log = logging.getLogger(__name__)

# subject -> durable consumer name
CONSUMERS = {
    subjects.STUDY_CREATED: "data-study-references",
    subjects.MODEL_REGISTERED: "data-model-references",
}


class BusNotifier:
    """The catalog's facts as kubetune.data.* events: a change's, stored with it and sent
    by the outbox relay; progress, published live."""

    def __init__(self, bus: EventBus, relay: Relay):
        self.bus = bus
        self.relay = relay

    def registered(self, version: DatasetVersion) -> OutboxEvent:
        return OutboxEvent.of(dataset_registered=events_pb2.DatasetRegistered(
            name=version.name, version=version.version,
            content_sha256=version.content_sha256, row_count=version.row_count,
        ))

    def deleted(self, name: str, version: str) -> OutboxEvent:
        return OutboxEvent.of(dataset_deleted=events_pb2.DatasetDeleted(name=name, version=version))

    def stored(self) -> None:
        self.relay.wake()

    async def progressed(self, name: str, uri: str, done: int, total: int) -> None:
        await self.bus.publish(
            download_progressed=events_pb2.DownloadProgressed(name=name, uri=uri, bytes_done=done, bytes_total=total)
        )


def reference_of(event: events_pb2.Event) -> tuple[str, Reference] | None:
    """The dataset version an event says is in use, and by whom."""
    kind = event.WhichOneof("payload")
    if kind == "study_created":
        return event.study_created.dataset_version, Reference("study", event.study_created.study_id)
    if kind == "model_registered":
        m = event.model_registered
        return m.dataset_version, Reference("model", f"{m.name} version {m.version}")
    return None


class ReferenceConsumer:
    def __init__(self, bus: EventBus, catalog: Catalog, *, batch: int = 64):
        self.bus = bus
        self.catalog = catalog
        self.batch = batch
        self._tasks: list[asyncio.Task] = []
        self._subscriptions = []

    async def start(self) -> "ReferenceConsumer":
        for subject, durable in CONSUMERS.items():
            config = ConsumerConfig(
                durable_name=durable,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=subject,
                ack_wait=30,
            )
            sub = await self.bus.js.pull_subscribe(
                subject, durable=durable, stream=subjects.EVENTS_STREAM, config=config
            )
            self._subscriptions.append(sub)
            self._tasks.append(asyncio.create_task(self._consume(sub), name=f"consume {durable}"))
        return self

    async def _consume(self, sub) -> None:
        while True:
            try:
                messages = await sub.fetch(self.batch, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep consuming through reconnects
                log.warning("fetching reference events failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            for msg in messages:
                await self._handle(msg)

    async def _handle(self, msg) -> None:
        try:
            found = reference_of(decode(msg.subject, msg.data))
            if found is not None and found[0]:
                await self.catalog.add_reference(*found)
        except Exception:  # noqa: BLE001 - redeliver later
            log.exception("recording a reference from %s failed", msg.subject)
            await msg.nak(delay=2)
            return
        await msg.ack()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
