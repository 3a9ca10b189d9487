"""The worker's side of the JetStream trial queue, on a real nats-server: the shared
durable consumer is what the running workers assume, whoever created it first."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common import subjects
from services.common.events import EventBus
from services.tuning.worker.app import Worker
from services.tuning.worker.config import Settings
from services.tuning.worker.trials import Outcome


class SlowRunner:
    """Stands in for the trial (not the queue, which is what is tested): takes a while."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = threading.Event()

    def run(self, ticket: pb.TrialTicket) -> str:
        self.started.set()
        time.sleep(self.seconds)
        return Outcome.DONE


async def test_a_ticket_held_by_a_worker_is_not_redelivered_after_a_redeploy(nats_url):
    """An earlier deployment made the consumer with a 1 s ack wait; this worker is set to 3 s
    (in-progress acks every 1 s). Before the fix it kept the old consumer, so its ticket went
    to a second worker after 1 s while it still trained."""
    bus = await EventBus.open(nats_url, "test-worker-queue")
    js = bus.js
    try:
        await js.purge_stream(subjects.WORK_STREAM)
        try:
            await js.delete_consumer(subjects.WORK_STREAM, subjects.WORKERS_CONSUMER)
        except Exception:  # noqa: BLE001 - none yet
            pass
        await js.add_consumer(subjects.WORK_STREAM, ConsumerConfig(
            durable_name=subjects.WORKERS_CONSUMER, filter_subject=subjects.ALL_TRIAL_TICKETS,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0, max_deliver=5))

        runner = SlowRunner(4.5)
        settings = Settings(ack_wait_s=3.0, max_deliveries=3, name="w-new")
        worker = Worker(settings, bus, lambda w: runner)
        worker.task = asyncio.create_task(worker.consume())
        ticket = pb.TrialTicket(study_id="s1", ticket_id="s1-0", sequence=0)
        await js.publish(subjects.ticket_subject("s1"), ticket.SerializeToString())
        assert await asyncio.to_thread(runner.started.wait, 10)

        info = await js.consumer_info(subjects.WORK_STREAM, subjects.WORKERS_CONSUMER)
        assert (info.config.ack_wait, info.config.max_deliver) == (3.0, 3)
        assert worker.ack_wait_s == 3.0
        # A second worker on the same consumer while the first trains: nothing for it.
        other = await js.pull_subscribe_bind(subjects.WORKERS_CONSUMER, stream=subjects.WORK_STREAM)
        redelivered = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            try:
                redelivered += await other.fetch(1, timeout=0.5)
            except Exception:  # noqa: BLE001 - nothing to fetch
                pass
        assert not redelivered, "the ticket went to a second worker while the first still held it"
        await other.unsubscribe()
        worker.shutting_down.set()
        await asyncio.wait_for(worker.task, 15)
        for _ in range(50):  # the ack is a publish of its own: let it land
            info = await js.consumer_info(subjects.WORK_STREAM, subjects.WORKERS_CONSUMER)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    finally:
        await bus.close()


@pytest.mark.parametrize("changed", [{"ack_wait_s": 7.0}, {"max_deliveries": 9}])
async def test_a_worker_with_new_settings_updates_the_consumer(nats_url, changed):
    bus = await EventBus.open(nats_url, "test-worker-queue")
    try:
        first = Worker(Settings(ack_wait_s=5.0, max_deliveries=4, name="w-old"), bus, lambda w: None)
        await first.declare_consumer()
        second = Worker(Settings(**{"ack_wait_s": 5.0, "max_deliveries": 4, **changed}, name="w-new"), bus, lambda w: None)
        await second.declare_consumer()
        info = await bus.js.consumer_info(subjects.WORK_STREAM, subjects.WORKERS_CONSUMER)
        assert info.config.ack_wait == second.settings.ack_wait_s
        assert info.config.max_deliver == second.settings.max_deliveries
        # The first worker's keep-alives follow the consumer as it is now.
        await first._refresh_ack_wait()
        assert first.ack_wait_s == second.settings.ack_wait_s
    finally:
        await bus.close()
