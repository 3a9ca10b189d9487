"""Fan-out of live NATS events to many in-process watchers (gRPC server streams).

One NATS subscription per process; each watcher gets a bounded queue and a filter.
A watcher too slow to keep up is dropped rather than slowing everyone else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from kubetune.events.v1 import events_pb2
from services.common.errors import ResourceExhausted
from services.common.events import EventBus

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000


class Watch:
    """Opened before a snapshot is taken, so nothing between the two is missed."""

    def __init__(self, hub: "EventHub", accepts: Callable[[events_pb2.Event], bool]):
        self.hub = hub
        self.accepts = accepts
        self.queue: asyncio.Queue[events_pb2.Event] = asyncio.Queue(QUEUE_SIZE)
        self.slow = False

    def offer(self, event: events_pb2.Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("dropping a watcher that fell %d events behind", QUEUE_SIZE)
            self.slow = True
            self.close()

    async def events(self) -> AsyncIterator[events_pb2.Event]:
        try:
            while True:
                if self.slow and self.queue.empty():
                    raise ResourceExhausted("the watch fell too far behind; reconnect to get a new snapshot")
                yield await self.queue.get()
        finally:
            self.close()

    def close(self) -> None:
        self.hub.watches.discard(self)


class EventHub:
    def __init__(self):
        self.watches: set[Watch] = set()

    async def attach(self, bus: EventBus, *patterns: str) -> None:
        for pattern in patterns:
            await bus.subscribe(pattern, self.dispatch)

    async def dispatch(self, event: events_pb2.Event) -> None:
        for watch in list(self.watches):
            if watch.accepts(event):
                watch.offer(event)

    def open(self, accepts: Callable[[events_pb2.Event], bool]) -> Watch:
        watch = Watch(self, accepts)
        self.watches.add(watch)
        return watch
