"""Guarantee 4: load. 20 concurrent clients through the gateway for
KUBETUNE_LOAD_SECONDS (60 by default) — listing runs, watching studies, predicting
from a registered model — while a study trains: zero errors, p99 latency printed,
and the resident memory of every process flat after warm-up (at most 10% growth)."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter, defaultdict

import grpc
import pytest

from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from tests.reliability.conftest import Authed
from testing.studies import small_spec
from tests.reliability.faults import rss_mb, wait_for

pytestmark = pytest.mark.slow
DURATION_S = float(os.environ.get("KUBETUNE_LOAD_SECONDS", "60"))
CLIENTS = 20
WARM_UP = 0.3  # of the duration
MAX_GROWTH = 0.10
# A small process's heap grows in steps (NATS, 22 MB, fills JetStream's block cache as
# the event stream grows): below this many MB of growth, 10% is noise, not a leak.
GROWTH_FLOOR_MB = 8
ROWS = [registry_pb2.FeatureRow(values=[0.1 * i, 0.2, -0.3, 0.4 * i, 1.0]) for i in range(8)]


def test_mixed_traffic_has_no_errors_and_flat_memory(secured):
    ch, stub = secured.stub()
    gw = Authed(stub, "editor")
    first = wait_for(gw.CreateStudy(pb.CreateStudyRequest(spec=small_spec(trials=2, epochs=5))).study.id, gw,
                     lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=180)
    gw.RegisterModel(registry_pb2.RegisterModelRequest(run_id=first.best_trial.mlflow_run_id, name="load-model",
                                                       alias="champion"))
    gw.Predict(registry_pb2.PredictRequest(model="load-model@champion", rows=ROWS), timeout=120)  # loads it once
    # A study that trains through the whole run, however fast the machine (4 trials of
    # 2,400 epochs ended within 60 s in a quiet CI run): stopped when the load ends.
    epochs = max(100, int(DURATION_S * 40))
    busy = gw.CreateStudy(pb.CreateStudyRequest(spec=small_spec(
        trials=1000, epochs=epochs, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=epochs))).study

    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    stop = threading.Event()

    def client(i: int) -> None:
        with grpc.insecure_channel(secured.gateway) as c:
            me = Authed(gateway_pb2_grpc.GatewayStub(c), "editor")
            ops = ["list_runs", "watch", "predict"]
            n = i
            while not stop.is_set():
                op = ops[n % 3]
                n += 1
                start = time.perf_counter()
                try:
                    if op == "list_runs":
                        me.ListRuns(tracking_pb2.ListRunsRequest(study_id=busy.id, page_size=50), timeout=10)
                    elif op == "predict":
                        me.Predict(registry_pb2.PredictRequest(model="load-model@champion", rows=ROWS), timeout=10)
                    else:
                        stream = me.WatchStudy(pb.WatchStudyRequest(study_id=busy.id), timeout=10)
                        next(iter(stream))  # the snapshot: what a watcher waits for
                        stream.cancel()
                except grpc.RpcError as exc:
                    errors[(op, exc.code().name, (exc.details() or "")[:120])] += 1
                    continue
                latencies[op].append(time.perf_counter() - start)

    procs = {p.name: p.proc for p in secured.supervisor.parts}
    samples: list[tuple[float, dict[str, float]]] = []
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while time.monotonic() - t0 < DURATION_S:
        samples.append((time.monotonic() - t0, {n: rss_mb(p) for n, p in procs.items()}))
        time.sleep(2)
    stop.set()
    for t in threads:
        t.join(15)
    samples.append((time.monotonic() - t0, {n: rss_mb(p) for n, p in procs.items()}))
    still_running = gw.GetStudy(pb.GetStudyRequest(study_id=busy.id)).study.state == pb.STUDY_STATE_RUNNING
    if still_running:
        gw.StopStudy(pb.StopStudyRequest(study_id=busy.id))
    ch.close()

    everything = sorted(x for v in latencies.values() for x in v)
    total = len(everything)

    def p(q, xs):
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")

    print(f"\nload: {CLIENTS} clients, {DURATION_S:.0f}s, {total} calls ({total / DURATION_S:.0f}/s), "
          f"{sum(errors.values())} errors; p50 {p(0.5, everything):.1f} ms, p99 {p(0.99, everything):.1f} ms")
    for op, xs in sorted(latencies.items()):
        xs.sort()
        print(f"  {op:10} {len(xs):6} calls  p50 {p(0.5, xs):7.1f} ms  p99 {p(0.99, xs):7.1f} ms")
    warm = [s for t, s in samples if t >= WARM_UP * DURATION_S]
    growth = {}
    for name in procs:
        base = statistics.median(s[name] for s in warm[:3])
        end = statistics.median(s[name] for s in warm[-3:])
        growth[name] = (base, end, end / base - 1)
        series = " ".join(f"{s[name]:.0f}" for s in warm[::max(1, len(warm) // 8)])
        print(f"  rss {name:10} {base:7.1f} -> {end:7.1f} MB ({(end / base - 1) * 100:+.1f}%)  [{series}]")
    assert still_running, "the study ended before the load did: make it longer"
    assert not errors, dict(errors)
    assert all(latencies[op] for op in ("list_runs", "watch", "predict"))
    grew = {n: f"{g * 100:+.1f}%" for n, (base, end, g) in growth.items() if g > MAX_GROWTH and end - base > GROWTH_FLOOR_MB}
    assert not grew, f"memory grew after warm-up: {grew}"
