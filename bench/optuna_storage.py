"""Benchmark: how workers should reach the Optuna storage. Two worker-like processes
ask and tell trials on one study, (a) straight to the RDB storage (what kubetune
does) and (b) through Optuna's gRPC storage proxy in front of the same database."""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import optuna

from testing.servers import free_port, port_open, wait_for

TRIALS_PER_CLIENT = 150


def client(storage_kind: str, target: str, study_name: str, n: int, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage_kind == "proxy":
        host, port = target.rsplit(":", 1)
        storage = optuna.storages.GrpcStorageProxy(host=host, port=int(port))
    else:
        from services.tuning.store import make_storage

        storage = make_storage(target)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler())
    start = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", -10, 10)
        for step in range(3):  # epochs reported, as the pruning callback does
            trial.report(x * x / (step + 1), step)
        study.tell(trial, x * x)
    out.put(time.perf_counter() - start)


def serve_proxy(url: str, port: int) -> None:
    from services.tuning.store import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.storages.run_grpc_proxy_server(make_storage(url), host="127.0.0.1", port=port)


def run(kind: str, url: str, clients: int = 2) -> float:
    from services.tuning.store import make_storage

    name = f"bench-{kind}"
    optuna.create_study(study_name=name, storage=make_storage(url))
    target, server = url, None
    if kind == "proxy":
        port = free_port()
        server = mp.Process(target=serve_proxy, args=(url, port), daemon=True)
        server.start()
        wait_for(lambda: port_open(port), 30, "optuna grpc proxy")
        target = f"127.0.0.1:{port}"
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=client, args=(kind, target, name, TRIALS_PER_CLIENT, out)) for _ in range(clients)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    if server is not None:
        server.terminate()
    return clients * TRIALS_PER_CLIENT / wall


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        direct = run("direct", url)
        proxy = run("proxy", url)
    print("| Optuna storage, 2 worker processes, ask + 3 reports + tell | trials/s |")
    print("|---|---|")
    print(f"| direct to the RDB storage (SQLite) — kubetune's choice | {direct:.1f} |")
    print(f"| through Optuna's gRPC storage proxy, same database | {proxy:.1f} |")
    print(f"| direct / proxy | **{direct / proxy:.1f}x** |")


if __name__ == "__main__":
    main()
