"""Tracking queries at 10,000 runs: `python -m bench.tracking_queries [--runs N]`.

Starts an `mlflow server` (SQLite) and NATS-free tracking service, seeds N runs x 20
epochs of train_loss/val_loss in one experiment, then times over gRPC:
  ListRuns, first page of 100 sorted by val_loss        (target p50 <= 200 ms)
  GetMetricHistories, 50 runs x 2 metrics, max 200 pts  (target p50 <= 300 ms)
against MLflow's own client for the same questions, in the same run.

Seeding writes MLflow's tables through MLflow's own SQLAlchemy models (bulk
inserts into the server's database): logging 10,000 runs over REST takes far longer
than the queries being measured."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from testing import servers


def seed(backend_uri: str, experiment_id: str, n_runs: int, steps: int) -> list[str]:
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    engine = sa.create_engine(backend_uri)
    rnd = random.Random(0)
    t0 = int(time.time() * 1000) - n_runs * 1000
    run_ids = [uuid.uuid4().hex for _ in range(n_runs)]
    runs, params, tags, metrics, latest = [], [], [], [], []
    for i, rid in enumerate(run_ids):
        start = t0 + i * 1000
        runs.append(dict(run_uuid=rid, name=f"bench-trial-{i}", source_type="LOCAL", source_name="", entry_point_name="",
                         user_id="bench", status="FINISHED", start_time=start, end_time=start + 900,
                         source_version="", lifecycle_stage="active", artifact_uri=f"mlflow-artifacts:/{experiment_id}/{rid}/artifacts",
                         experiment_id=int(experiment_id)))
        lr = 10 ** rnd.uniform(-4, -1)
        params += [dict(run_uuid=rid, key="learning_rate", value=repr(lr)),
                   dict(run_uuid=rid, key="units", value=str(rnd.choice([16, 32, 64, 128])))]
        tags += [dict(run_uuid=rid, key="kubetune.kind", value="trial"),
                 dict(run_uuid=rid, key="kubetune.study_id", value="bench"),
                 dict(run_uuid=rid, key="kubetune.trial", value=str(i)),
                 dict(run_uuid=rid, key="kubetune.state", value="COMPLETE"),
                 dict(run_uuid=rid, key="mlflow.runName", value=f"bench-trial-{i}")]
        base = rnd.uniform(0.1, 2.0)
        for key, offset in (("train_loss", 0.0), ("val_loss", 0.05)):
            value = 0.0
            for step in range(steps):
                value = base + offset + 1.0 / (step + 1) + rnd.uniform(0, 0.01)
                metrics.append(dict(run_uuid=rid, key=key, value=value, timestamp=start + step, step=step, is_nan=False))
            latest.append(dict(run_uuid=rid, key=key, value=value, timestamp=start + steps - 1, step=steps - 1,
                               is_nan=False))
        # The saved epoch's summary, as a worker records it: what sorting by val_loss ranks by.
        for key, best in (("train/loss", base + 1.0 / steps), ("val/loss", base + 0.05 + 1.0 / steps)):
            for row in (metrics, latest):
                row.append(dict(run_uuid=rid, key=key, value=best, timestamp=start + steps, step=steps - 1,
                                is_nan=False))
    with engine.begin() as conn:
        for model, rows in ((SqlRun, runs), (SqlParam, params), (SqlTag, tags), (SqlMetric, metrics),
                            (SqlLatestMetric, latest)):
            conn.execute(sa.insert(model.__table__), rows)
    engine.dispose()
    return run_ids


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def measure(args) -> dict:
    from mlflow import MlflowClient

    from kubetune.tracking.v1 import tracking_pb2 as pb
    from kubetune.tracking.v1 import tracking_pb2_grpc
    from kubetune_common.channels import channel
    from services.tracking.app import start
    from services.tracking.config import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    backend = f"sqlite:///{root / 'mlflow.db'}"
    results = {}
    with servers.mlflow_server(root, backend) as url:
        client = MlflowClient(url)
        exp = client.create_experiment("kubetune/bench")
        t = time.perf_counter()
        run_ids = await asyncio.to_thread(seed, backend, exp, args.runs, args.steps)
        results["seed_s"] = time.perf_counter() - t
        server = await start(Settings(port=0, mlflow_uri=url, backend_store_uri=backend, consume_events=False,
                                      tuning_address="127.0.0.1:1"))
        ch = channel(f"127.0.0.1:{server.port}")
        stub = tracking_pb2_grpc.TrackingServiceStub(ch)
        try:
            list_req = pb.ListRunsRequest(experiment_ids=[exp], sort_kind=pb.FIELD_KIND_METRIC, sort_key="val_loss",
                                          page_size=100)
            first = await stub.ListRuns(list_req)
            assert first.total == args.runs and len(first.runs) == min(100, args.runs)
            samples = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                await stub.ListRuns(list_req)
                samples.append(time.perf_counter() - t)
            results["list_runs_p50_ms"] = p50(samples)

            # MLflow's own search for the same first page.
            mlflow_samples = []
            for _ in range(args.mlflow_repeat):
                t = time.perf_counter()
                page = await asyncio.to_thread(client.search_runs, [exp], "", max_results=100,
                                               order_by=["metrics.`val/loss` ASC"])
                mlflow_samples.append(time.perf_counter() - t)
            assert [r.info.run_id for r in page] == [r.run_id for r in first.runs]
            results["mlflow_search_runs_p50_ms"] = p50(mlflow_samples)

            chosen = random.Random(1).sample(run_ids, min(50, len(run_ids)))
            hist_req = pb.GetMetricHistoriesRequest(run_ids=chosen, keys=["val_loss", "train_loss"], max_points=200)
            got = await stub.GetMetricHistories(hist_req)
            assert len(got.histories) == 2 * len(chosen) and all(len(h.points) == args.steps for h in got.histories)
            samples = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                await stub.GetMetricHistories(hist_req)
                samples.append(time.perf_counter() - t)
            results["metric_histories_p50_ms"] = p50(samples)

            def mlflow_histories():
                return [client.get_metric_history(r, k) for r in chosen for k in ("val_loss", "train_loss")]

            mlflow_samples = []
            for _ in range(args.mlflow_repeat):
                t = time.perf_counter()
                await asyncio.to_thread(mlflow_histories)
                mlflow_samples.append(time.perf_counter() - t)
            results["mlflow_get_metric_history_x100_p50_ms"] = p50(mlflow_samples)
        finally:
            await ch.close()
            await server.stop(0)
    results["list_runs_speedup"] = results["mlflow_search_runs_p50_ms"] / results["list_runs_p50_ms"]
    results["histories_speedup"] = results["mlflow_get_metric_history_x100_p50_ms"] / results["metric_histories_p50_ms"]
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--mlflow-repeat", type=int, default=5)
    args = parser.parse_args(argv)
    r = asyncio.run(measure(args))
    print(f"runs={args.runs} steps={args.steps} (seeded in {r['seed_s']:.1f} s)")
    print(f"ListRuns first 100 by val_loss   p50 {r['list_runs_p50_ms']:8.1f} ms   (target <= 200)")
    print(f"  MLflow search_runs, same page   p50 {r['mlflow_search_runs_p50_ms']:8.1f} ms   "
          f"-> {r['list_runs_speedup']:.1f}x faster")
    print(f"GetMetricHistories 50x2, 200 pts  p50 {r['metric_histories_p50_ms']:8.1f} ms   (target <= 300)")
    print(f"  MLflow get_metric_history x100  p50 {r['mlflow_get_metric_history_x100_p50_ms']:8.1f} ms   "
          f"-> {r['histories_speedup']:.1f}x faster")
    ok = r["list_runs_p50_ms"] <= 200 and r["metric_histories_p50_ms"] <= 300
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
