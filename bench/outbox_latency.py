"""Benchmark: what the transactional outbox costs an event in the happy path. From the
instant a catalog change commits to the event reaching a live subscriber, (a) published
straight after the commit (the code before the outbox) against (b) stored in the commit's
transaction and sent by the woken relay; and the commit itself, without and with its
outbox row. Real nats-server, real SQLite catalog; alternating paired runs, medians."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from kubetune.events.v1 import events_pb2
from services.common.events import EventBus
from services.common.outbox import OutboxEvent, Relay
from services.data.store import SqliteCatalogStore
from testing.datasets import make_version
from testing.servers import nats_server

PAIRS = 300


async def measure(url: str, home: Path) -> dict[str, list[float]]:
    store = SqliteCatalogStore(home / "catalog.db")
    bus = await EventBus.open(url, "bench-outbox")
    relay = await Relay(store.outbox, bus.send, name="bench").start()
    arrived: dict[str, asyncio.Future] = {}

    async def on_event(event):
        future = arrived.get(event.id)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    await bus.subscribe("kubetune.data.dataset.*", on_event)
    base = make_version()
    out: dict[str, list[float]] = {"direct_ms": [], "outbox_ms": [], "commit_ms": [], "commit_outbox_ms": []}
    for i in range(PAIRS):
        for way in (("direct", "outbox") if i % 2 else ("outbox", "direct")):
            version = replace(base, version=f"{2 * i + (way == 'outbox'):012x}")
            event = OutboxEvent.of(dataset_registered=events_pb2.DatasetRegistered(name=version.name, version=version.version))
            arrived[event.id] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            if way == "direct":
                await asyncio.to_thread(store.add_version, version)
                committed = time.perf_counter()
                await bus.send(event)
            else:
                await asyncio.to_thread(store.add_version, version, event)
                committed = time.perf_counter()
                relay.wake()
            got = await asyncio.wait_for(arrived[event.id], 10)
            del arrived[event.id]
            out[f"{way}_ms"].append((got - committed) * 1000)
            out["commit_ms" if way == "direct" else "commit_outbox_ms"].append((committed - started) * 1000)
    await relay.stop()
    await bus.close()
    store.close()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, nats_server(Path(tmp) / "nats") as url:
        results = asyncio.run(measure(url, Path(tmp)))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{PAIRS} alternating pairs, medians (ms):")
    print("| | published straight after the commit | outbox + woken relay | extra |")
    print("| --- | --- | --- | --- |")
    print(f"| commit -> subscriber | {med['direct_ms']:.2f} | {med['outbox_ms']:.2f} | {med['outbox_ms'] - med['direct_ms']:+.2f} |")
    print(f"| the commit itself | {med['commit_ms']:.2f} | {med['commit_outbox_ms']:.2f} | "
          f"{med['commit_outbox_ms'] - med['commit_ms']:+.2f} |")


if __name__ == "__main__":
    main()
