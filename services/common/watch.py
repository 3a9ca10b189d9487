"""Fan-out of live NATS events to many in-process watchers (gRPC server streams).

One NATS subscription per process; each watcher gets a bounded queue and a filter.
A watcher too slow to keep up is dropped rather than slowing everyone else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from kubetune.events.v1 import events_pb2
from kubetune_common.errors import ResourceExhausted
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
        if self in self.hub.watches:
            self.hub.closed(self)


class EventHub:
    """Subscribed to NATS only while someone watches: with no watcher, a busy study's
    epoch events would still be decoded here, and queue up when the loop is busy."""

    def __init__(self, bus: EventBus, *patterns: str):
        self.bus = bus
        self.patterns = patterns
        self.watches: set[Watch] = set()
        self._subscriptions: list = []
        self._lock = asyncio.Lock()

    async def dispatch(self, event: events_pb2.Event) -> None:
        for watch in list(self.watches):
            if watch.accepts(event):
                watch.offer(event)

    async def open(self, accepts: Callable[[events_pb2.Event], bool]) -> Watch:
        """Returns once NATS knows of the subscription: nothing published after is missed."""
        watch = Watch(self, accepts)
        self.watches.add(watch)
        async with self._lock:
            if not self._subscriptions:
                self._subscriptions = [await self.bus.subscribe(p, self.dispatch) for p in self.patterns]
        return watch

    def closed(self, watch: Watch) -> None:
        self.watches.discard(watch)
        if not self.watches:
            asyncio.get_running_loop().create_task(self._unsubscribe_if_idle())

    async def _unsubscribe_if_idle(self) -> None:
        async with self._lock:
            if self.watches or not self._subscriptions:
                return
            subscriptions, self._subscriptions = self._subscriptions, []
            for sub in subscriptions:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001 - a connection going away unsubscribes too
                    log.debug("unsubscribe failed", exc_info=True)
