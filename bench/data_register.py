"""Registering a large CSV from S3 vs a plain boto3 download of the same object.

    .venv/bin/python -m bench.data_register [--mb 200]

Starts moto's S3 server, nats-server and the data service (`python -m services.data`, its
own process so its memory can be watched), uploads a generated CSV, then in the same run
times `boto3 download_file` of the object and `RegisterDataset` of it through the
service, sampling the service's RSS with psutil. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv

from testing import servers

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "kubetune-bench"
KEY = "bench/table.csv"


def make_csv(path: Path, megabytes: int, features: int = 20) -> int:
    """Float features and a float target, written block by block until the size is reached."""
    rng = np.random.default_rng(0)
    target = megabytes * 1024 * 1024
    names = [f"f{i}" for i in range(features)] + ["target"]
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        while sink.tell() < target:
            block = rng.standard_normal((50_000, features + 1))
            batch = pa.RecordBatch.from_arrays([pa.array(block[:, j]) for j in range(features + 1)], names)
            if writer is None:
                writer = pacsv.CSVWriter(sink, batch.schema)
            writer.write_batch(batch)
        writer.close()
    return path.stat().st_size


class RssSampler(threading.Thread):
    """Peak resident memory of a process (and its children), sampled every `every` seconds."""

    def __init__(self, pid: int, every: float = 0.01):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.running = True

    def rss(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self):
        while self.running:
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.NoSuchProcess:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def start_data_service(home: Path, nats_url: str, s3_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "KUBETUNE_HOME": str(home),
        "KUBETUNE_NATS_URL": nats_url,
        "KUBETUNE_DATA_PORT": str(port),
        "KUBETUNE_DATA_S3_ENDPOINT_URL": s3_url,
        "KUBETUNE_DATA_MAX_BYTES": str(2 * 1024**3),
        "KUBETUNE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.data"], cwd=ROOT, env=env, start_new_session=True)
    from services.common.clients import sync_health_status

    servers.wait_for(lambda: sync_health_status(f"127.0.0.1:{port}") == "SERVING", 30, "data service", proc)
    return proc


def register(port: int, uri: str):
    import grpc

    from kubetune.data.v1 import data_pb2, data_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = data_pb2_grpc.DataServiceStub(ch)
        request = data_pb2.RegisterDatasetRequest(
            name="bench", uri=uri, options=data_pb2.IngestOptions(target_column="target")
        )
        return stub.RegisterDataset(request, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="CSV size in MiB")
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)

    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        tmp = Path(tmp)
        size = make_csv(tmp / "table.csv", args.mb)
        with servers.moto_s3_server() as s3_url, servers.nats_server(tmp / "nats") as nats_url:
            s3 = boto3.client("s3", endpoint_url=s3_url)
            s3.create_bucket(Bucket=BUCKET)
            s3.upload_file(str(tmp / "table.csv"), BUCKET, KEY)
            port = servers.free_port()
            proc = start_data_service(tmp / "home", nats_url, s3_url, port)
            try:
                sampler = RssSampler(proc.pid)
                idle_rss = sampler.rss()

                t = time.perf_counter()
                s3.download_file(BUCKET, KEY, str(tmp / "download.csv"))
                download_s = time.perf_counter() - t
                (tmp / "download.csv").unlink()

                sampler.start()
                t = time.perf_counter()
                response = register(port, f"s3://{BUCKET}/{KEY}")
                register_s = time.perf_counter() - t
                peak_rss = sampler.stop()

                t = time.perf_counter()
                again = register(port, f"s3://{BUCKET}/{KEY}")
                again_s = time.perf_counter() - t
                assert not again.created and again.version.version == response.version.version
            finally:
                servers.stop(proc)

    mb = size / 1024**2
    ratio = download_s / register_s
    print(f"\n### RegisterDataset vs boto3 download_file ({mb:.0f} MiB CSV, "
          f"{response.version.row_count} rows, moto S3 server, {os.cpu_count()} CPUs)\n")
    print("| step | seconds | MiB/s |")
    print("| --- | ---: | ---: |")
    print(f"| boto3 `download_file` | {download_s:.2f} | {mb / download_s:.0f} |")
    print(f"| `RegisterDataset` (download, validate, hash, write Parquet) | {register_s:.2f} | {mb / register_s:.0f} |")
    print(f"| `RegisterDataset` again (same bytes: download + hash only) | {again_s:.2f} | {mb / again_s:.0f} |")
    print()
    print("| figure | value | target |")
    print("| --- | ---: | ---: |")
    print(f"| throughput ratio (register / download_file) | {ratio:.2f}x | >= 0.8x |")
    print(f"| data service peak RSS while registering | {peak_rss / 1024**2:.0f} MiB | < 300 MiB |")
    print(f"| data service RSS at rest | {idle_rss / 1024**2:.0f} MiB | |")


if __name__ == "__main__":
    main()
