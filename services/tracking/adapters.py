"""The tracking service's NATS side, its durable JetStream pull consumer: fetches trial and study
events in batches, hands them to the EventRecorder, acks what was written and asks
for a later redelivery of what was not. Being durable, it resumes where it stopped:
events published while tracking was down are written when it returns."""

from __future__ import annotations

import asyncio
import logging

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from kubetune_common import subjects
from services.common.events import EventBus, decode
from services.tracking.messages import event_from_pb
from services.tracking.recorder import EventRecorder, Outcome

log = logging.getLogger(__name__)

ACK_WAIT_S = 60.0
RETRY_DELAY_S = 2.0
# Events that end a batch's wait.
ENDINGS = frozenset({subjects.TRIAL_COMPLETED, subjects.TRIAL_PRUNED, subjects.TRIAL_FAILED, subjects.STUDY_COMPLETED})


def consumer_config(name: str, batch_size: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        filter_subjects=[subjects.TRIAL_EVENTS, subjects.STUDY_EVENTS],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=max(1000, batch_size * 4),
    )


class EventConsumer:
    def __init__(self, bus: EventBus, recorder: EventRecorder, *, name: str, batch_size: int, batch_wait_s: float):
        self.bus = bus
        self.recorder = recorder
        self.name = name
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self._task: asyncio.Task | None = None
        self._sub = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        js = self.bus.js
        await js.add_consumer(subjects.EVENTS_STREAM, consumer_config(self.name, self.batch_size))
        self._sub = await js.pull_subscribe_bind(self.name, stream=subjects.EVENTS_STREAM)
        self._task = asyncio.create_task(self._loop(), name=f"{self.name}-consumer")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self.batch_size, timeout=max(self.batch_wait_s, 0.05))
            except (NatsTimeout, asyncio.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a NATS hiccup: try again
                log.exception("fetching events failed")
                await asyncio.sleep(1.0)
                continue
            await self.handle(await self._fill(msgs))

    async def _fill(self, msgs: list) -> list:
        """Lets a batch of epoch events fill for up to batch_wait_s after its first event.
        A fetch returns as soon as anything is there, and events trickle in one per epoch:
        without this, each epoch of each trial would be its own MLflow write. A trial's or
        a study's end is written at once: someone is waiting to see that."""
        deadline = asyncio.get_running_loop().time() + self.batch_wait_s
        while (len(msgs) < self.batch_size and not self._stopping.is_set()
               and not any(m.subject in ENDINGS for m in msgs)):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0.005:
                break
            try:
                msgs += await self._sub.fetch(self.batch_size - len(msgs), timeout=left)
            except (NatsTimeout, asyncio.TimeoutError):
                break
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - write what we have; the loop retries fetching
                log.warning("fetching more events for a batch failed", exc_info=True)
                break
        return msgs

    async def handle(self, msgs) -> None:
        events, decoded = [], []
        for msg in msgs:
            try:
                events.append(event_from_pb(decode(msg.subject, msg.data)))
                decoded.append(msg)
            except Exception:  # noqa: BLE001 - a message that is no Event can never be written
                log.error("undecodable message on %s dropped", msg.subject)
                await msg.term()
        outcomes = await self.recorder.record(events)
        retry = False
        for msg, outcome in zip(decoded, outcomes, strict=True):
            if outcome is Outcome.RETRY:
                retry = True
                await msg.nak(delay=RETRY_DELAY_S)
            else:
                await msg.ack()
        if retry:
            await asyncio.sleep(RETRY_DELAY_S)  # MLflow is struggling; don't spin

    async def stop(self, grace_s: float = 5.0) -> None:
        """Lets the batch in hand be written and acked (so it is not left waiting
        ack_wait for a redelivery), then stops fetching."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace_s)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                self._task.cancel()
                try:
                    await self._task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection may be gone
                pass
