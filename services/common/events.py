"""NATS and JetStream: connect, declare the streams idempotently, publish and
subscribe to typed events (kubetune.events.v1.Event)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import nats
import nats.errors
from google.protobuf.message import Message
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError, ServerError, ServiceUnavailableError

from kubetune.events.v1 import events_pb2
from kubetune_common import subjects
from services.common.outbox import OutboxEvent, make_event, subject_of  # noqa: F401 - re-exported
from services.common.retry import retry_async

log = logging.getLogger(__name__)

# Stream limits (RELIABILITY.md, "Bounded streams"). Events are kept for the durable
# consumers that write them elsewhere (tracking -> MLflow, data -> references): they
# need an event only until they have written it, seconds in normal running, so the
# limits are sized for an outage: a week, or 4 GiB (half the server's 8G file store,
# ~16 million epoch events of 264 B as stored), whichever comes first; the oldest go first.
EVENT_RETENTION_S = 7 * 24 * 3600
EVENT_MAX_BYTES = 4 * 1024**3
# Tickets are issued up to each running study's parallelism, so the queue holds a few
# per study; a full queue refuses a new ticket (issued but unsent: the tuning service's
# reconcile at its next start sends it) rather than dropping one queued. No age limit:
# a ticket waits as long as its study.
WORK_MAX_MSGS = 100_000
WORK_MAX_BYTES = 256 * 1024**2
# A message larger than this is refused by the server; epochs and tickets are tiny.
MAX_PAYLOAD = 1024 * 1024
# How long a publish waits out NATS restarting (the client reconnects, JetStream
# restores its streams) before it fails. Under the 30 s a worker gives a call.
PUBLISH_BUDGET_S = 20.0
# Event ids a live subscriber remembers, to drop a repeat (~100 B each).
RECENT_IDS = 50_000
# What a restarting NATS answers: worth publishing again (the message id dedupes).
NATS_TRANSIENT = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionReconnectingError,
                  nats.errors.OutboundBufferLimitError, nats.errors.ConnectionClosedError, ServiceUnavailableError)


def stream_configs() -> list[StreamConfig]:
    # Both on disk, both refusing oversized messages, both deduplicating by message id.
    shared = {"storage": StorageType.FILE, "max_msg_size": MAX_PAYLOAD, "duplicate_window": 120}
    return [
        # Facts: kept for a while, the oldest dropped when full.
        StreamConfig(name=subjects.EVENTS_STREAM, subjects=list(subjects.EVENT_PATTERNS),
                     retention=RetentionPolicy.LIMITS, max_age=EVENT_RETENTION_S, max_bytes=EVENT_MAX_BYTES,
                     discard=DiscardPolicy.OLD, **shared),
        # Work: each ticket taken once; a full queue refuses new tickets rather than drop one.
        StreamConfig(name=subjects.WORK_STREAM, subjects=["kubetune.work.>"], retention=RetentionPolicy.WORK_QUEUE,
                     max_msgs=WORK_MAX_MSGS, max_bytes=WORK_MAX_BYTES, discard=DiscardPolicy.NEW, **shared),
    ]


async def declare_streams(js) -> None:
    """Updates the streams to the config above, or creates them (a stream made by an older
    release gets today's limits); safe to repeat, and from several parts at once. Update
    first: the server reserves an added stream's max_bytes against its max_file_store
    before it finds the stream exists, so with the manifests' 8G store an add by the
    second part to start fails (insufficient storage resources)."""
    for config in stream_configs():
        try:
            await js.update_stream(config)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except (BadRequestError, ServerError):  # another part made it meanwhile
                await js.update_stream(config)


async def connect(url: str, name: str, **kwargs) -> nats.NATS:
    async def on_error(exc):
        log.warning("nats error: %s", exc)

    async def on_disconnect():
        log.warning("nats disconnected")

    async def on_reconnect():
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        drain_timeout=5,
        **kwargs,
    )


def encode(event: events_pb2.Event) -> bytes:
    return event.SerializeToString()


def decode(subject: str, data: bytes) -> events_pb2.Event:
    event = events_pb2.Event.FromString(data)
    event.subject = subject
    return event


class RecentIds:
    """The last RECENT_IDS event ids one subscriber saw: a repeat is dropped. Sized for an
    outage's backlog of repeats, which comes within seconds of the first sending."""

    def __init__(self, capacity: int = 0):
        self.capacity = capacity or RECENT_IDS
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """True the first time an id is seen."""
        if not event_id:
            return True
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


class EventBus:
    """Publishes events to JetStream (so consumers that were down catch up) and
    subscribes to them. One per process."""

    def __init__(self, nc: nats.NATS):
        self.nc = nc
        self.js = nc.jetstream()

    @classmethod
    async def open(cls, url: str, name: str, *, declare: bool = True) -> "EventBus":
        nc = await connect(url, name)
        bus = cls(nc)
        if declare:
            await declare_streams(bus.js)
        return bus

    async def publish(self, event_id: str = "", **payload: Message) -> events_pb2.Event:
        event = make_event(event_id, **payload)
        await self.send(OutboxEvent(event.id, subject_of(event), encode(event)))
        return event

    async def send(self, event: OutboxEvent) -> None:
        """Publishes an encoded event, riding out a NATS restart for PUBLISH_BUDGET_S."""
        # The event id doubles as the JetStream message id: a retried publish is stored once.
        await retry_async(lambda: self.js.publish(event.subject, event.data, headers={"Nats-Msg-Id": event.id}),
                          transient=lambda exc: isinstance(exc, NATS_TRANSIENT) and not self.nc.is_closed,
                          budget_s=PUBLISH_BUDGET_S, what=f"publishing {event.subject}")

    async def subscribe(
        self, pattern: str, handler: Callable[[events_pb2.Event], Awaitable[None]]
    ):
        """Live events only (core NATS): for watchers that start from a snapshot. Each
        event reaches `handler` once: a core subscriber gets every publish, and an event
        is published again when its first ack was lost (or its outbox row not yet marked
        sent), so the ids seen last are remembered (RELIABILITY.md, "No lost events")."""
        seen = RecentIds()

        async def on_message(msg):
            try:
                event = decode(msg.subject, msg.data)
                if seen.add(event.id):
                    await handler(event)
            except Exception:  # noqa: BLE001 - one bad event must not kill the subscription
                log.exception("event handler failed for %s", msg.subject)

        sub = await self.nc.subscribe(pattern, cb=on_message)
        # The server knows of the subscription once flush returns: nothing published after is missed.
        await self.nc.flush()
        return sub

    async def close(self) -> None:
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await self.nc.close()
