"""What the no-lost-events tests share: a live subscriber that counts what it is handed,
and a read of everything the events stream holds, both by event id."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kubetune.events.v1 import events_pb2
from kubetune_common import subjects
from services.common.events import EventBus

# How long a test waits after the last expected event for any repeat of one.
SETTLE_S = 1.5


class Seen:
    """A durable JetStream consumer made before the outage, as tracking's and data's are
    (a live core subscriber misses what is published while it reconnects): every message
    it is delivered, counted by event id, before any deduplication."""

    def __init__(self):
        self.count: Counter[str] = Counter()
        self.events: dict[str, events_pb2.Event] = {}
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    @classmethod
    async def on(cls, url: str, pattern: str) -> tuple["Seen", "Seen"]:
        seen = cls()
        seen.nc = await EventBus.open(url, "outage-test")  # declares the streams
        seen.sub = await seen.nc.js.pull_subscribe(
            pattern, durable="outage-" + uuid.uuid4().hex[:8], stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT, ack_wait=5))
        seen._task = asyncio.create_task(seen._take())
        return seen, seen

    async def _take(self) -> None:
        while True:
            try:
                msgs = await self.sub.fetch(100, timeout=0.5)
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - NATS is down: the durable consumer waits for us
                await asyncio.sleep(0.2)
                continue
            for msg in msgs:
                event = events_pb2.Event.FromString(msg.data)
                self.count[event.id] += 1
                self.events[event.id] = event
                self.arrived.setdefault(event.id, time.monotonic())
                try:
                    await msg.ack()
                except Exception:  # noqa: BLE001 - redelivered: counted twice, and the test says so
                    pass

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self.nc.close()

    def kinds(self, kind: str) -> list[events_pb2.Event]:
        return [e for e in self.events.values() if e.WhichOneof("payload") == kind]

    async def wait(self, until, timeout: float = 60, what: str = "events") -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not arrive in {timeout}s; seen {dict(self.count)}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(SETTLE_S)


async def stored(url: str, pattern: str) -> Counter[str]:
    """Every message the events stream holds on `pattern`, counted by event id."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        durable = "outage-" + uuid.uuid4().hex[:8]
        sub = await js.pull_subscribe(pattern, durable=durable, stream=subjects.EVENTS_STREAM,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE))
        out: Counter[str] = Counter()
        while True:
            try:
                msgs = await sub.fetch(100, timeout=1.0)
            except (NatsTimeout, asyncio.TimeoutError):
                break
            for msg in msgs:
                out[events_pb2.Event.FromString(msg.data).id] += 1
        await js.delete_consumer(subjects.EVENTS_STREAM, durable)
        return out
    finally:
        await nc.close()


def once_each(count: Counter[str], ids) -> bool:
    return set(count) == set(ids) and all(n == 1 for n in count.values())
