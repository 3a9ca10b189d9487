"""Benchmark: how fast each query part reaches SERVING and what it holds at rest.
Targets (issue 2): SERVING within 3 s of start, idle RSS below 200 MB, no torch.

`--mlflow-import PYTHON` measures instead, once, what the choice of our own MLflow REST
client (services/common/mlflow_rest) saves: the cost of importing mlflow-skinny (MLflow's
client without pandas, flask or the server), against `requests` (what our client adds),
in an interpreter that has mlflow-skinny alone: `python -m venv V && V/bin/pip install
mlflow-skinny==<the lock's mlflow>`, then `python -m bench.footprint --mlflow-import V/bin/python`."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from testing.platform import running_platform

QUERY_PARTS = ("data", "tracking", "registry", "gateway")
# What each candidate costs a process that starts it: the client as a store would build it.
IMPORTS = {
    "nothing (the interpreter)": "pass",
    "requests (our client)": "import json, requests; requests.Session()",
    "mlflow-skinny (MlflowClient)": "import mlflow; mlflow.MlflowClient('http://127.0.0.1:9')",
}
PROBE = ("import time; _t = time.perf_counter(); {statement}; _dt = time.perf_counter() - _t; "
         "print(_dt, next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")


def footprint(platform) -> dict[str, dict]:
    out = {}
    for name in QUERY_PARTS:
        part = platform.part(name)
        proc = psutil.Process(part.proc.pid)
        maps = [m.path for m in proc.memory_maps()]
        out[name] = {
            "serving_s": part.ready_s,
            "rss_mb": proc.memory_info().rss / 2**20,
            "torch_loaded": any("libtorch" in p or "/lightning/" in p for p in maps),
        }
    return out


def import_cost(python: str, rounds: int = 7) -> dict[str, tuple[float, float]]:
    """Per candidate: the median import time (s) and peak memory (VmHWM, MB) of a fresh
    process, the candidates taken in a rotating order each round."""
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in IMPORTS}
    names = list(IMPORTS)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([python, "-c", PROBE.format(statement=IMPORTS[name])],
                                 capture_output=True, text=True, check=True).stdout.split()
            seen[name].append((float(out[0]), int(out[1]) / 1024))
    return {name: (statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs))
            for name, runs in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlflow-import", metavar="PYTHON", help="an interpreter with mlflow-skinny installed")
    args = parser.parse_args()
    if args.mlflow_import:
        version = subprocess.run([args.mlflow_import, "-c", "import mlflow; print(mlflow.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        print(f"mlflow-skinny {version}; medians of 7 fresh processes each, in rotating order")
        print("| import | time | peak memory (VmHWM) |")
        print("|---|---|---|")
        for name, (seconds, mb) in import_cost(args.mlflow_import).items():
            print(f"| {name} | {seconds:.2f} s | {mb:.0f} MB |")
        return
    with tempfile.TemporaryDirectory() as tmp, running_platform(Path(tmp), workers=1) as platform:
        time.sleep(5)  # at rest
        rows = footprint(platform)
    print("| part | SERVING after start | idle RSS | torch loaded |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['serving_s']:.2f} s | {r['rss_mb']:.0f} MB | {'yes' if r['torch_loaded'] else 'no'} |")


if __name__ == "__main__":
    main()
