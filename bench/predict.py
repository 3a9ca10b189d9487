"""Predict latency: `python -m bench.predict [--rows 1000]`.

Starts an `mlflow server` and NATS, logs a small torch pyfunc model (the registry's
contract: feature columns in, `prediction` out), registers it as `bench@champion`
through the registry service, warms it, then times Predict with 1,000 rows over gRPC
(target p50 <= 20 ms) against calling the same pyfunc in-process on a DataFrame."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from testing import servers


async def measure(args) -> dict:
    import mlflow
    import pandas as pd

    from kubetune.registry.v1 import registry_pb2 as pb
    from kubetune.registry.v1 import registry_pb2_grpc
    from kubetune_common.channels import channel
    from services.registry.app import start
    from services.registry.config import Settings
    from testing.models import log_trial_run, seed_data

    root = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    out = {}
    with servers.mlflow_server(root / "mlflow") as url, servers.nats_server(root / "nats") as nats_url:
        run_id, _ = await asyncio.to_thread(log_trial_run, url, "kubetune/bench-predict")
        server = await start(Settings(port=0, mlflow_uri=url, nats_url=nats_url))
        ch = channel(f"127.0.0.1:{server.port}")
        stub = registry_pb2_grpc.RegistryServiceStub(ch)
        try:
            await stub.RegisterModel(pb.RegisterModelRequest(run_id=run_id, name="bench", alias="champion"))
            x, _ = seed_data()
            rng = np.random.default_rng(0)
            data = x.to_numpy()[rng.integers(0, len(x), args.rows)]
            # By column name, as text: the bench model has a categorical input besides numbers.
            request = pb.PredictRequest(model="bench@champion", columns=list(x.columns),
                                        rows=[pb.FeatureRow(text_values=[str(v) for v in r]) for r in data.tolist()])
            t = time.perf_counter()
            await stub.Predict(request)
            out["first_predict_ms"] = (time.perf_counter() - t) * 1000  # loads torch and the model
            for _ in range(20):
                await stub.Predict(request)
            samples = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                response = await stub.Predict(request)
                samples.append(time.perf_counter() - t)
            assert len(response.predictions) == args.rows
            out["grpc_p50_ms"] = statistics.median(samples) * 1000

            mlflow.set_tracking_uri(url)
            model = mlflow.pyfunc.load_model("models:/bench@champion")
            frame = pd.DataFrame(data, columns=list(x.columns))
            for _ in range(20):
                model.predict(frame)
            samples = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                local = model.predict(frame)
                samples.append(time.perf_counter() - t)
            out["inprocess_p50_ms"] = statistics.median(samples) * 1000
            np.testing.assert_allclose([p.value for p in response.predictions], local["prediction"], rtol=1e-5)
        finally:
            await ch.close()
            await server.stop(0)
    out["overhead_ratio"] = out["grpc_p50_ms"] / out["inprocess_p50_ms"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args(argv)
    r = asyncio.run(measure(args))
    print(f"Predict {args.rows} rows over gRPC, warm  p50 {r['grpc_p50_ms']:7.2f} ms   (target <= 20)")
    print(f"  same pyfunc in-process           p50 {r['inprocess_p50_ms']:7.2f} ms   "
          f"-> gRPC path is {r['overhead_ratio']:.2f}x in-process")
    print(f"  first Predict (imports torch, loads the model): {r['first_predict_ms']:.0f} ms")
    return 0 if r["grpc_p50_ms"] <= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
