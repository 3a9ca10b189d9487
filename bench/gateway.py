"""Benchmarks of the gateway.

1. Unary throughput through the gateway against calling the backend directly, the
   same RPC and concurrency in the same run (the gateway's cost). Target >= 0.7x.
2. 100 concurrent WatchEvents streams while a study runs: delay from publish to
   client, p99 <= 250 ms, and no stream misses an event.
"""

from __future__ import annotations

import asyncio
import statistics
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
from testing.studies import completed, run_study, small_spec, wait_for_study


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def compare(platform, backend: str, stub_class, method: str, request, seconds: float = 8, rounds: int = 3) -> dict:
    """Direct and through the gateway, alternated; the gateway's CPU per call too."""
    address = f"127.0.0.1:{platform.ports[backend]}"
    gateway_pid = platform.part("gateway").proc.pid
    direct, through, cpu = [], [], []
    for _ in range(rounds):
        direct.append(asyncio.run(throughput(address, stub_class, seconds, method=method, request=request)))
        before = cpu_seconds(gateway_pid)
        rate = asyncio.run(throughput(platform.gateway, gateway_pb2_grpc.GatewayStub, seconds, method=method, request=request))
        cpu.append((cpu_seconds(gateway_pid) - before) / (rate * seconds))
        through.append(rate)
    direct_rate, through_rate = statistics.median(direct), statistics.median(through)
    return {"direct": direct_rate, "through": through_rate, "ratio": through_rate / direct_rate,
            "gateway_us": statistics.median(cpu) * 1e6}


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
        print(f"| unary {name}, 16 in flight: through gateway / direct | {r['through']:.0f} / {r['direct']:.0f} calls/s, "
              f"gateway CPU {r['gateway_us']:.0f} us/call | {r['ratio']:.2f}x | >= 0.7x |")
    print(f"| 100 WatchEvents streams during a study: publish -> client | p50 {watch['p50_ms']:.0f} ms | "
          f"p99 {watch['p99_ms']:.0f} ms | <= 250 ms |")
    print(f"| streams that got every one of the {watch['events']} events | | {watch['streams_complete']}/100 | 100/100 |")


if __name__ == "__main__":
    main()
