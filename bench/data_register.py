"""Registering a large CSV (narrow and wide, from S3 and by upload): the data service's
peak memory (VmHWM) and time, against a plain boto3 download of the same object.

    .venv/bin/python -m bench.data_register [--mb 200] [--repeat 3]

Starts moto's S3 server and nats-server, writes two generated CSVs of about `--mb` MiB —
narrow (5 float features and a float target, ~2 M rows at 200 MiB) and wide (21
features: numbers with missing values, categories, yes/no words, an id, ~0.6 M rows) —
and puts both in S3. Then, `--repeat` times, alternating, for each shape: `boto3
download_file` of the object (the baseline), and `RegisterDataset` of it from S3 and
`UploadDataset` of the file (1 MiB chunks, as the CLI and the UI send it), each in a
fresh data service process (`python -m services.data`) so that the VmHWM read from its
/proc/PID/status after the call is that registration's peak. Prints medians as
markdown tables; exits 1 when a peak reaches --limit-mb (300).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from testing import servers

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "kubetune-bench"
SHAPES = ("narrow", "wide")
SOURCES = ("s3", "upload")
UPLOAD_CHUNK = 1 << 20  # what the CLI sends (cli/commands.py)
BLOCK_ROWS = 50_000
REGIONS = np.array(["north", "south", "east", "west", "central"], dtype=object)
PRODUCTS = np.array([f"p{i:02d}" for i in range(40)], dtype=object)
COLOURS = np.array(["red", "green", "blue", "black", "white", "grey"], dtype=object)
WIDE_FLOATS = 15
MISSING_SHARE = 0.05


def _narrow_block(rng: np.random.Generator, rows: int) -> dict[str, pa.Array]:
    """5 float features and a float target: 6 columns."""
    block = rng.standard_normal((rows, 6))
    return {f"f{j}": pa.array(block[:, j]) for j in range(5)} | {"target": pa.array(block[:, 5])}


def _wide_block(rng: np.random.Generator, rows: int, start: int) -> dict[str, pa.Array]:
    """21 features and a float target: 15 floats (every third to 4 decimals, the rest at full
    precision; 5% missing in every other one),
    a count, 3 categories (one with missing values), yes/no words and an id (excluded by
    the service: a distinct value a row). Missing values are written as empty cells."""
    columns: dict[str, pa.Array] = {"customer_id": pa.array([f"cust-{start + i:08d}" for i in range(rows)])}
    for j in range(WIDE_FLOATS):
        values = rng.standard_normal(rows) * (10 ** (j % 4))
        if j % 3 == 0:
            values = values.round(4)
        holes = rng.random(rows) < MISSING_SHARE if j % 2 else None
        columns[f"x{j:02d}"] = pa.array(values, mask=holes)
    columns["visits"] = pa.array(rng.poisson(3.0, rows).astype(np.float64))
    columns["region"] = pa.array(REGIONS[rng.integers(0, len(REGIONS), rows)], pa.string(),
                                 mask=rng.random(rows) < MISSING_SHARE)
    columns["product"] = pa.array(PRODUCTS[rng.integers(0, len(PRODUCTS), rows)], pa.string())
    columns["colour"] = pa.array(COLOURS[rng.integers(0, len(COLOURS), rows)], pa.string())
    columns["member"] = pa.array(np.where(rng.random(rows) < 0.35, "yes", "no").astype(object), pa.string())
    columns["target"] = pa.array((rng.standard_normal(rows) * 5 + 50).round(3))
    return columns


def make_csv(path: Path, megabytes: float, shape: str = "narrow") -> int:
    """A generated CSV of the given shape, written block by block until the size is reached;
    returns its size in bytes. The same seed gives the same bytes."""
    rng = np.random.default_rng(0)
    target = megabytes * 1024 * 1024
    options = pacsv.WriteOptions(quoting_style="none")
    rows = 0
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        while sink.tell() < target:
            n = min(BLOCK_ROWS, max(1_000, int(target // 400)))
            columns = _narrow_block(rng, n) if shape == "narrow" else _wide_block(rng, n, rows)
            batch = pa.RecordBatch.from_pydict(columns)
            if writer is None:
                writer = pacsv.CSVWriter(sink, batch.schema, write_options=options)
            writer.write_batch(batch)
            rows += n
        writer.close()
    return path.stat().st_size


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the high-water mark of resident memory) from /proc/PID/status, KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def start_data_service(home: Path, nats_url: str, s3_url: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "KUBETUNE_HOME": str(home),
        "KUBETUNE_NATS_URL": nats_url,
        "KUBETUNE_DATA_PORT": str(port),
        "KUBETUNE_DATA_S3_ENDPOINT_URL": s3_url,
        "KUBETUNE_DATA_MAX_BYTES": str(2 * 1024**3),
        "KUBETUNE_LOG_LEVEL": "ERROR",  # not the "nats disconnected" of every stop
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.data"], cwd=ROOT, env=env, start_new_session=True)
    from kubetune_common.channels import sync_health_status

    servers.wait_for(lambda: sync_health_status(f"127.0.0.1:{port}") == "SERVING", 30, "data service", proc)
    return proc


def _options():
    from kubetune.data.v1 import data_pb2

    return data_pb2.IngestOptions(target_column="target")


def register(port: int, uri: str, name: str = "bench"):
    import grpc

    from kubetune.data.v1 import data_pb2, data_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = data_pb2_grpc.DataServiceStub(ch)
        request = data_pb2.RegisterDatasetRequest(name=name, uri=uri, options=_options())
        return stub.RegisterDataset(request, timeout=600)


def upload(port: int, path: Path, name: str = "bench"):
    """UploadDataset: a header, then the file in UPLOAD_CHUNK pieces (a client stream)."""
    import grpc

    from kubetune.data.v1 import data_pb2, data_pb2_grpc

    def parts():
        yield data_pb2.UploadDatasetRequest(
            header=data_pb2.UploadHeader(name=name, filename=path.name, options=_options())
        )
        with open(path, "rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                yield data_pb2.UploadDatasetRequest(chunk=chunk)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return data_pb2_grpc.DataServiceStub(ch).UploadDataset(parts(), timeout=600)


@dataclass
class Measured:
    seconds: float
    hwm_mib: float  # the service's VmHWM after the call
    idle_mib: float  # its VmRSS before the call
    rows: int


def measure(how: str, path: Path, key: str, home: Path, nats_url: str, s3_url: str) -> Measured:
    """One registration in a fresh data service process: its time and VmHWM."""
    port = servers.free_port()
    proc = start_data_service(home, nats_url, s3_url, port)
    try:
        idle = memory_kib(proc.pid)["VmRSS"]
        t = time.perf_counter()
        response = register(port, f"s3://{BUCKET}/{key}") if how == "s3" else upload(port, path)
        seconds = time.perf_counter() - t
        hwm = memory_kib(proc.pid)["VmHWM"]
    finally:
        servers.stop(proc)
    return Measured(seconds, hwm / 1024, idle / 1024, response.version.row_count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="size of each CSV in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds; figures are medians")
    parser.add_argument("--limit-mb", type=float, default=300, help="the VmHWM target, MiB")
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)

    results: dict[tuple[str, str], list[Measured]] = {(s, h): [] for s in SHAPES for h in SOURCES}
    downloads: dict[str, list[float]] = {s: [] for s in SHAPES}
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as tmp:
        tmp = Path(tmp)
        with servers.moto_s3_server() as s3_url, servers.nats_server(tmp / "nats") as nats_url:
            s3 = boto3.client("s3", endpoint_url=s3_url)
            s3.create_bucket(Bucket=BUCKET)
            for shape in SHAPES:
                sizes[shape] = make_csv(tmp / f"{shape}.csv", args.mb, shape)
                s3.upload_file(str(tmp / f"{shape}.csv"), BUCKET, f"bench/{shape}.csv")
            for round_ in range(args.repeat):
                for shape in SHAPES:
                    t = time.perf_counter()
                    s3.download_file(BUCKET, f"bench/{shape}.csv", str(tmp / "download.csv"))
                    downloads[shape].append(time.perf_counter() - t)
                    (tmp / "download.csv").unlink()
                    for how in SOURCES:
                        home = tmp / f"home-{shape}-{how}-{round_}"
                        results[shape, how].append(
                            measure(how, tmp / f"{shape}.csv", f"bench/{shape}.csv", home, nats_url, s3_url)
                        )

    print(f"\n### Registering a CSV: the data service's VmHWM and time ({args.repeat} rounds, medians; "
          f"moto S3 server, {os.cpu_count()} CPUs)\n")
    print("| shape | source | MiB | rows | seconds | MiB/s | boto3 download_file s | throughput vs boto3 "
          "| VmHWM MiB | idle VmRSS MiB | VmHWM − idle |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for shape in SHAPES:
        mb = sizes[shape] / 1024**2
        download_s = statistics.median(downloads[shape])
        for how in SOURCES:
            runs = results[shape, how]
            seconds = statistics.median(r.seconds for r in runs)
            hwm = statistics.median(r.hwm_mib for r in runs)
            idle = statistics.median(r.idle_mib for r in runs)
            worst = max(worst, max(r.hwm_mib for r in runs))
            print(f"| {shape} | {how} | {mb:.0f} | {runs[0].rows:,} | {seconds:.2f} | {mb / seconds:.0f} "
                  f"| {download_s:.2f} | {download_s / seconds:.2f}× | {hwm:.0f} | {idle:.0f} | {hwm - idle:.0f} |")
    print(f"\nhighest VmHWM of any run: {worst:.0f} MiB (target < {args.limit_mb:.0f} MiB)")
    if worst >= args.limit_mb:
        sys.exit(1)


if __name__ == "__main__":
    main()
