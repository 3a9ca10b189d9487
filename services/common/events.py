"""NATS and JetStream: connect, declare the streams idempotently, publish and
subscribe to typed events (kubetune.events.v1.Event)."""

from __future__ import annotations

import logging
import uuid
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
from nats.js.errors import BadRequestError, ServiceUnavailableError

from kubetune.events.v1 import events_pb2
from services.common import subjects
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
    """Creates the streams, or updates them to the config above (a stream made by an
    older release gets today's limits); safe to repeat."""
    for config in stream_configs():
        try:
            await js.add_stream(config)
        except BadRequestError:
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


def make_event(event_id: str = "", **payload: Message) -> events_pb2.Event:
    """`make_event(trial_started=TrialStarted(...))`: an Event with a fresh id (or the
    given one: a fact that may be published again, deduplicated by it) and time."""
    (field, message), = payload.items()
    event = events_pb2.Event(id=event_id or uuid.uuid4().hex)
    event.time.GetCurrentTime()
    getattr(event, field).CopyFrom(message)
    return event


def subject_of(event: events_pb2.Event) -> str:
    field = event.WhichOneof("payload")
    if field is None:
        raise ValueError("event has no payload")
    return subjects.SUBJECT_BY_PAYLOAD[field]


def encode(event: events_pb2.Event) -> bytes:
    return event.SerializeToString()


def decode(subject: str, data: bytes) -> events_pb2.Event:
    event = events_pb2.Event.FromString(data)
    event.subject = subject
    return event


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
        subject = subject_of(event)
        # The event id doubles as the JetStream message id: a retried publish is stored once.
        await retry_async(lambda: self.js.publish(subject, encode(event), headers={"Nats-Msg-Id": event.id}),
                          transient=lambda exc: isinstance(exc, NATS_TRANSIENT) and not self.nc.is_closed,
                          budget_s=PUBLISH_BUDGET_S, what=f"publishing {subject}")
        return event

    async def subscribe(
        self, pattern: str, handler: Callable[[events_pb2.Event], Awaitable[None]]
    ):
        """Live events only (core NATS): for watchers that start from a snapshot."""

        async def on_message(msg):
            try:
                await handler(decode(msg.subject, msg.data))
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
