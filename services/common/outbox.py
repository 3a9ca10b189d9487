"""The transactional outbox: an event is stored with the change it reports, in the same
transaction, and a relay publishes it (its JetStream message id is the event id) and then
marks it sent. A NATS outage, or a crash, between the commit and the publish delays the
event; it never loses it. RELIABILITY.md, "No lost events", says which part keeps its
outbox where.

No nats here: domains and stores build and store events; only the relay sends them,
through the `send` it is given (EventBus.send)."""

from __future__ import annotations

import abc
import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from google.protobuf.message import Message

from kubetune.events.v1 import events_pb2
from kubetune_common import subjects
from services.common.retry import FIRST_WAIT_S, LONGEST_WAIT_S

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class OutboxEvent:
    """An event as stored and as sent: its id (the JetStream message id), subject and bytes."""

    id: str
    subject: str
    data: bytes

    @classmethod
    def of(cls, event_id: str = "", **payload: Message) -> "OutboxEvent":
        event = make_event(event_id, **payload)
        return cls(event.id, subject_of(event), event.SerializeToString())


class OutboxStore(abc.ABC):
    """Where a part keeps the events it has not sent yet. Blocking; the relay calls it in a thread."""

    @abc.abstractmethod
    def pending(self, limit: int) -> list[OutboxEvent]:
        """Up to `limit` unsent events, oldest first."""

    @abc.abstractmethod
    def mark_sent(self, events: list[OutboxEvent]) -> None:
        """Forgets events that JetStream has acknowledged."""


# -- the SQL outbox: one table beside the part's own ---------------------------------------

SCHEMA = """CREATE TABLE IF NOT EXISTS event_outbox (
    seq BIGINT NOT NULL PRIMARY KEY,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL)"""

Transaction = Callable[..., AbstractContextManager]


class SqlOutbox(OutboxStore):
    """The `event_outbox` table in a store's own database (SQLite or PostgreSQL). The store
    calls `write` inside the transaction that makes the change; `transaction(write=...)`
    and `sql` (placeholders) are the store's own, and its writing transactions run one
    at a time, so `MAX(seq) + 1` cannot race. Data is hex: one column type for both."""

    def __init__(self, transaction: Transaction, sql: Callable[[str], str]):
        self._transaction = transaction
        self._sql = sql

    def write(self, cur, events: list[OutboxEvent | None]) -> None:
        for event in events:
            if event is None:
                continue
            cur.execute(self._sql("SELECT COALESCE(MAX(seq), 0) + 1 FROM event_outbox"))
            seq = cur.fetchone()[0]
            cur.execute(self._sql("INSERT INTO event_outbox (seq, event_id, subject, data) VALUES (?, ?, ?, ?)"),
                        (seq, event.id, event.subject, event.data.hex()))

    def pending(self, limit):
        with self._transaction(write=False) as cur:
            cur.execute(self._sql("SELECT event_id, subject, data FROM event_outbox ORDER BY seq LIMIT ?"), (limit,))
            return [OutboxEvent(i, s, bytes.fromhex(d)) for i, s, d in cur.fetchall()]

    def mark_sent(self, events):
        # Sent rows are deleted: the table holds only what is still owed, so `pending` is
        # one short index scan however long the part has run.
        with self._transaction() as cur:
            for event in events:
                cur.execute(self._sql("DELETE FROM event_outbox WHERE event_id = ?"), (event.id,))


# -- the relay ------------------------------------------------------------------------------

BATCH = 100
# A sweep catches what no wake announced: rows a crashed replica left behind.
SWEEP_S = 30.0


class Relay:
    """Sends what an OutboxStore holds, oldest first, and marks it sent.

    `wake()` after a commit sends at once (no polling delay). While NATS is down, sending
    is retried with backoff, forever: an event is late, never dropped. Started, it sends
    what an earlier process left unsent."""

    def __init__(self, store: OutboxStore, send: Callable[[OutboxEvent], Awaitable[None]], *, name: str,
                 sweep_s: float = SWEEP_S):
        self.store = store
        self.send = send
        self.name = name
        self.sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.sent = 0  # read by tests and logs

    def wake(self) -> None:
        """Safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> "Relay":
        self._loop = asyncio.get_running_loop()
        self._wake.set()  # what the last process left
        self._task = asyncio.create_task(self._run(), name=f"{self.name} outbox relay")
        return self

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stops, first sending what is pending if NATS takes it within grace_s; what is
        left stays stored for the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        # Cancelled until it is done: a cancel that lands as a wait inside it ends can be
        # swallowed on Python 3.11 (seen here: the relay stuck, its task "cancelling").
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        try:
            await asyncio.wait_for(self.drain(), grace_s)
        except Exception:  # noqa: BLE001 - stopping anyway; nothing is lost
            log.info("%s outbox: unsent events left for the next start", self.name)

    async def _run(self) -> None:
        wait = FIRST_WAIT_S
        while not self._stopping:
            # Not asyncio.wait_for: on 3.11 a cancel landing as the wake fires can leave the
            # task waiting for ever (seen here stopping the relay right after a wake).
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=self.sweep_s)
            finally:
                waiter.cancel()
            self._wake.clear()
            try:
                await self.drain()
                wait = FIRST_WAIT_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS or the store is down: try again later
                log.warning("%s outbox: sending failed (%s: %s); trying again in %.1fs",
                            self.name, type(exc).__name__, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, LONGEST_WAIT_S)
                self._wake.set()

    async def drain(self) -> int:
        """Sends until nothing is pending; returns how many were sent."""
        total = 0
        while True:
            batch = await asyncio.to_thread(self.store.pending, BATCH)
            if not batch:
                return total
            sent: list[OutboxEvent] = []
            try:
                for event in batch:
                    await self.send(event)
                    sent.append(event)
            finally:
                # What JetStream acknowledged is marked even when a later one failed: a
                # mark that fails is harmless too (sent again, the message id dedupes it).
                if sent:
                    await asyncio.to_thread(self.store.mark_sent, sent)
                    total += len(sent)
                    self.sent += len(sent)
            if len(batch) < BATCH:
                return total

