"""Benchmarks of the gateway.

1. Unary throughput through the gateway against calling the backend directly, the
   same RPC and concurrency in the same run (the gateway's cost). Target >= 0.8x. A
   forwarding proxy that does nothing else (grpc.aio, one channel, bytes in and out: no
   auth, validation, deadline, log or metrics) is measured in the same rounds: the floor
   that grpc.aio itself sets, and what of the gateway's cost is its own work.
2. 100 concurrent WatchEvents streams while a study runs: delay from publish to
   client, p99 <= 250 ms, and no stream misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

import psutil

from kubetune.data.v1 import data_pb2, data_pb2_grpc
from kubetune.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune.tuning.v1 import tuning_pb2_grpc
from testing.platform import running_platform
from testing.servers import free_port, port_open, stop, wait_for
from testing.studies import completed, run_study, small_spec, wait_for_study


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


BARE_PROXY = """
import asyncio, sys, grpc
async def main(port, backend, service, method):
    call = grpc.aio.insecure_channel(backend).unary_unary(f"/{service}/{method}")
    async def forward(request, context):
        return await call(request, timeout=30)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "kubetune.gateway.v1.Gateway", {method: grpc.unary_unary_rpc_method_handler(forward)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1]), *sys.argv[2:]))
"""


@contextlib.contextmanager
def bare_proxy(backend_address: str, service: str, method: str):
    """The floor: a grpc.aio proxy of one method that only forwards bytes."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_PROXY, str(port), backend_address, service, method],
                            start_new_session=True)  # a group of its own: stop() signals the group
    try:
        wait_for(lambda: port_open(port), 30, "bare proxy", proc)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        stop(proc)


def compare(platform, backend: str, stub_class, method: str, request, seconds: float = 8, rounds: int = 3) -> dict:
    """Direct, through the gateway and through the bare proxy, alternated; CPU per call of
    the gateway and of the bare proxy too."""
    address = f"127.0.0.1:{platform.ports[backend]}"
    service = stub_class.__name__.removesuffix("Stub")
    full_name = next(s.full_name for pb2 in (data_pb2, pb) for s in pb2.DESCRIPTOR.services_by_name.values()
                     if s.name == service)
    gateway_pid = platform.part("gateway").proc.pid
    rates: dict[str, list[float]] = {"direct": [], "through": [], "bare": []}
    cpu: dict[str, list[float]] = {"through": [], "bare": []}
    with bare_proxy(address, full_name, method) as (bare_address, bare_pid):
        for _ in range(rounds):
            for name, target, stub, pid in (("direct", address, stub_class, None),
                                            ("through", platform.gateway, gateway_pb2_grpc.GatewayStub, gateway_pid),
                                            ("bare", bare_address, gateway_pb2_grpc.GatewayStub, bare_pid)):
                before = cpu_seconds(pid) if pid else 0.0
                rate = asyncio.run(throughput(target, stub, seconds, method=method, request=request))
                rates[name].append(rate)
                if pid:
                    cpu[name].append((cpu_seconds(pid) - before) / (rate * seconds))
    paired = lambda name: statistics.median(r / d for r, d in zip(rates[name], rates["direct"]))  # noqa: E731
    return {"direct": statistics.median(rates["direct"]), "through": statistics.median(rates["through"]),
            "bare": statistics.median(rates["bare"]), "ratio": paired("through"), "bare_ratio": paired("bare"),
            "gateway_us": statistics.median(cpu["through"]) * 1e6, "bare_us": statistics.median(cpu["bare"]) * 1e6}


async def throughput(address: str, stub_class, seconds: float, concurrency: int = 16,
                     method: str = "GetDataset", request=None) -> float:
    request = request if request is not None else data_pb2.GetDatasetRequest(ref="sample")
    async with grpc.aio.insecure_channel(address) as ch:
        call = getattr(stub_class(ch), method)
        await call(request)
        done = 0
        deadline = time.perf_counter() + seconds

        async def client():
            nonlocal done
            while time.perf_counter() < deadline:
                await call(request)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done / (time.perf_counter() - start)


async def watch_streams(platform, gateway, streams: int) -> dict:
    delays: list[float] = []
    seen: list[set[str]] = [set() for _ in range(streams)]
    async with grpc.aio.insecure_channel(platform.gateway) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        calls = [stub.WatchEvents(gateway_pb2.WatchEventsRequest(kinds=["kubetune.tuning.*.*"])) for _ in range(streams)]

        async def read(i, call):
            async for event in call:
                received = time.time()
                seen[i].add(event.id)
                delays.append(received - event.time.ToMicroseconds() / 1e6)

        readers = [asyncio.create_task(read(i, c)) for i, c in enumerate(calls)]
        await asyncio.sleep(2.0)  # every stream is subscribed
        study = await asyncio.to_thread(lambda: gateway.CreateStudy(pb.CreateStudyRequest(
            spec=small_spec(trials=4, epochs=40, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=40))).study)
        await asyncio.to_thread(wait_for_study, gateway, study.id, completed, 300)
        await asyncio.sleep(2.0)  # the last events arrive
        for c in calls:
            c.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    union = set().union(*seen)
    delays.sort()
    return {
        "events": len(union),
        "streams_complete": sum(1 for s in seen if s == union),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1000,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_platform(Path(tmp), workers=2) as platform:
        ch, gateway = platform.stub()
        study = run_study(gateway, small_spec(trials=4, epochs=3))
        cheap = compare(platform, "data", data_pb2_grpc.DataServiceStub, "GetDataset", data_pb2.GetDatasetRequest(ref="sample"))
        typical = compare(platform, "tuning", tuning_pb2_grpc.TuningServiceStub, "GetStudy",
                          pb.GetStudyRequest(study_id=study.id))
        watch = asyncio.run(watch_streams(platform, gateway, 100))
        ch.close()
    print("| gateway benchmark (2 cores: client, gateway and backends on one machine) | measured | result | target |")
    print("|---|---|---|---|")
    for name, r in (("GetDataset (the cheapest backend call)", cheap), ("GetStudy (a typical read)", typical)):
        print(f"| unary {name}, 16 in flight: through gateway / direct (median of paired rounds) | "
              f"{r['through']:.0f} / {r['direct']:.0f} calls/s, gateway CPU {r['gateway_us']:.0f} us/call | "
              f"{r['ratio']:.2f}x | >= 0.8x |")
        print(f"| ... a bare grpc.aio forwarding proxy / direct, same rounds (the floor) | {r['bare']:.0f} calls/s, "
              f"its CPU {r['bare_us']:.0f} us/call | {r['bare_ratio']:.2f}x | |")
    print(f"| load average at the end (1 min) | {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores | | |")
    print(f"| 100 WatchEvents streams during a study: publish -> client | p50 {watch['p50_ms']:.0f} ms | "
          f"p99 {watch['p99_ms']:.0f} ms | <= 250 ms |")
    print(f"| streams that got every one of the {watch['events']} events | | {watch['streams_complete']}/100 | 100/100 |")


if __name__ == "__main__":
    main()
