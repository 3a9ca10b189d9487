"""Bounded JetStream streams: the limits as a real nats-server reports them, an older
release's unbounded streams brought up to them on start, and what each limit does."""

from __future__ import annotations

import asyncio
import re

import nats
import pytest
import yaml
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError

from kubetune.events.v1 import events_pb2 as ev
from kubetune_common import subjects
from services.common import events
from testing import servers
from tests.k8s.parts import K8S

GiB = 1024**3


@pytest.fixture
def fresh_nats(tmp_path):
    with servers.nats_server(tmp_path / "nats") as url:
        yield url


def assert_bounded(info_by_name):
    events_cfg = info_by_name[subjects.EVENTS_STREAM].config
    assert events_cfg.retention == RetentionPolicy.LIMITS
    assert events_cfg.max_age == 7 * 24 * 3600
    assert events_cfg.max_bytes == 4 * GiB
    assert events_cfg.max_msg_size == 1024 * 1024
    assert events_cfg.discard == DiscardPolicy.OLD
    work_cfg = info_by_name[subjects.WORK_STREAM].config
    assert work_cfg.retention == RetentionPolicy.WORK_QUEUE
    assert (work_cfg.max_msgs, work_cfg.max_bytes, work_cfg.max_msg_size) == (100_000, 256 * 1024**2, 1024 * 1024)
    assert work_cfg.discard == DiscardPolicy.NEW
    # No age limit on tickets: one waits for a worker as long as its study runs.
    assert not work_cfg.max_age


async def stream_infos(url):
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        return {name: await js.stream_info(name) for name in (subjects.EVENTS_STREAM, subjects.WORK_STREAM)}
    finally:
        await nc.close()


async def test_streams_are_created_with_their_limits(fresh_nats):
    bus = await events.EventBus.open(fresh_nats, "test")
    await bus.close()
    assert_bounded(await stream_infos(fresh_nats))


def manifest_file_store() -> str:
    """The JetStream file store the manifests give NATS (k8s/base/infra/nats)."""
    conf = yaml.safe_load((K8S / "base/infra/nats/configmap.yaml").read_text())["data"]["nats.conf"]
    return re.search(r"max_file_store:\s*(\S+)", conf)[1]


async def test_parts_starting_together_and_again_fit_the_manifests_file_store(tmp_path):
    """Each part declares both streams as it starts: several at once, then one again after
    a restart, against a server with only the file store the manifests give it (8G holds
    the streams' 4.25 GiB once, not twice): none is refused."""
    conf = tmp_path / "nats.conf"
    conf.write_text(f"jetstream {{\n  max_file_store: {manifest_file_store()}\n}}\n")
    with servers.nats_server(tmp_path / "nats", config=conf) as url:
        async def start(part):
            bus = await events.EventBus.open(url, part)
            await bus.close()

        await asyncio.gather(*(start(p) for p in ("data", "tuning", "tracking", "registry")))
        await start("data")
        assert_bounded(await stream_infos(url))


async def test_streams_made_by_the_old_code_get_the_limits_on_start(fresh_nats):
    """The streams as the release before declared them (no byte, message or size
    limit), with messages in them: the next part to start bounds them, keeping the
    messages."""
    nc = await nats.connect(fresh_nats)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=subjects.EVENTS_STREAM, subjects=list(subjects.EVENT_PATTERNS),
                                     retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
                                     max_age=7 * 24 * 3600, discard=DiscardPolicy.OLD, duplicate_window=120))
    await js.add_stream(StreamConfig(name=subjects.WORK_STREAM, subjects=["kubetune.work.>"],
                                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                                     duplicate_window=120))
    await js.publish(subjects.TRIAL_FAILED, events.encode(events.make_event(trial_failed=ev.TrialFailed(study_id="s"))))
    await js.publish(subjects.ticket_subject("s"), b"ticket")
    old = await stream_infos(fresh_nats)
    assert old[subjects.EVENTS_STREAM].config.max_bytes in (None, -1)
    await nc.close()

    bus = await events.EventBus.open(fresh_nats, "upgraded")
    await bus.close()
    infos = await stream_infos(fresh_nats)
    assert_bounded(infos)
    assert infos[subjects.EVENTS_STREAM].state.messages == 1 and infos[subjects.WORK_STREAM].state.messages == 1


async def test_a_full_work_queue_refuses_a_ticket_and_keeps_those_queued(fresh_nats, monkeypatch):
    """Discard NEW on the queue: the ticket over the limit is refused (its study sends
    it again later), never one already waiting for a worker. The limit is lowered to 3
    to see it; the events stream, discard OLD, drops its oldest instead."""
    monkeypatch.setattr(events, "WORK_MAX_MSGS", 3)
    monkeypatch.setattr(events, "EVENT_MAX_BYTES", 4096)
    bus = await events.EventBus.open(fresh_nats, "test")
    try:
        for i in range(3):
            await bus.js.publish(subjects.ticket_subject("s"), f"ticket {i}".encode())
        with pytest.raises(APIError):
            await asyncio.wait_for(bus.js.publish(subjects.ticket_subject("s"), b"ticket 3"), 10)
        work = await bus.js.stream_info(subjects.WORK_STREAM)
        assert (work.state.messages, work.state.first_seq) == (3, 1)
        for trial in range(100):
            await bus.publish(trial_failed=ev.TrialFailed(study_id="s", trial=trial, reason="x" * 20))
        stream = await bus.js.stream_info(subjects.EVENTS_STREAM)
        assert stream.state.bytes <= 4096 and stream.state.first_seq > 1 and stream.state.last_seq == 100
    finally:
        await bus.close()
