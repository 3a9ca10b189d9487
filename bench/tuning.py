"""Benchmarks of the tuning path, each against a baseline in the same run.

1. overhead: 20 trials x 20 epochs through the whole platform (1 worker) against a
   plain in-process script that runs the same Optuna trials with the same Lightning
   training and seeds and logs the same runs, metrics and models to the same MLflow.
2. scale-out: the same study on 2 workers against 1 (trials per second). Every part
   shares the machine's cores, so the CPU all parts spend per trial (measured in the
   1-worker run) bounds it: at most cores / CPU-per-trial trials a second.
3. dispatch: CreateStudy returning -> first epoch event of its first trial, workers warm.
4. central CPU per trial: what the parts every worker shares (MLflow, tracking, tuning,
   NATS) spend per finished trial in the 1-worker studies, each part's whole process
   tree, its idle rate (measured on the warm, quiet platform) subtracted. It bounds how
   many trials a second one core of them serves, however many workers there are.
5. short trials: 300 trials x 2 epochs on 2 workers against the in-process script doing
   the same trials and logging on one process (paired, alternating): time per trial,
   where every per-trial cost of the platform shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc
import mlflow
import optuna
import psutil
import torch
from mlflow.entities import Metric, Param

from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import mlflow_tags
from services.tuning import messages, space
from services.tuning.worker.datasets import DatasetCache
from services.tuning.worker.messages import version_from_pb
from services.tuning.worker.training import train
from services.tuning.worker.trials import log_model
from testing.platform import running_platform
from testing.studies import param_choice, param_float, param_int, run_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
CORES = len(os.sched_getaffinity(0))
# The parts every worker shares: their CPU per trial is what limits a cluster's trials/s.
CENTRAL = ("mlflow", "tracking", "tuning", "nats")


def study_spec(trials: int, epochs: int, parallel: int, name: str = "") -> pb.StudySpec:
    return pb.StudySpec(
        name=name, dataset="sample", n_trials=trials, max_parallel=parallel, max_epochs=epochs, seed=7,
        pruner=pb.PRUNER_NONE, early_stopping_patience=epochs,
        search_space=[param_float("learning_rate", 1e-4, 1e-1, log=True), param_float("dropout", 0.0, 0.3),
                      param_int("n_layers", 1, 3), param_int("units", 8, 64, log=True),
                      param_choice("batch_size", "16", "32")],
    )


def baseline_script(gateway, mlflow_uri: str, spec: pb.StudySpec, cache_dir: Path) -> float:
    """What a user would write without kubetune: the same work in one process."""
    torch.set_num_threads(1)
    version = gateway.GetDataset(data_pb2.GetDatasetRequest(ref=spec.dataset)).version
    start = time.perf_counter()
    data = DatasetCache(cache_dir).prepared(version_from_pb(version))
    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("bench-baseline") or client.get_experiment(client.create_experiment("bench-baseline"))
    parent = client.create_run(experiment.experiment_id, run_name="baseline")
    study = optuna.create_study(direction="minimize")
    plain = messages.spec_from_pb(spec)  # the rules take the domain's record
    dists = space.distributions(plain)
    for sequence in range(spec.n_trials):
        study.sampler = space.make_sampler(plain, seed_offset=sequence)
        trial = study.ask()
        params = space.suggest(trial, plain, dists)
        run = client.create_run(experiment.experiment_id, tags={mlflow_tags.MLFLOW_PARENT: parent.info.run_id})
        client.log_batch(run.info.run_id, params=[Param(k, space.format_value(v)) for k, v in params.items() if k != "layer_units"])
        result = train(data, params, seed=(spec.seed or 42) + trial.number, patience=spec.early_stopping_patience)
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, e.epoch) for e in result.history
                                                   for k, v in (("train_loss", e.train_loss), ("val_loss", e.val_loss))])
        log_model(client, run.info.run_id, result, data)
        client.set_terminated(run.info.run_id)
        study.tell(trial, result.best_val_loss)
    client.set_terminated(parent.info.run_id)
    return time.perf_counter() - start


def platform_wall(gateway, spec: pb.StudySpec) -> float:
    """CreateStudy to study_completed, as a watcher sees it (no polling lag)."""
    start = time.perf_counter()
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    for message in gateway.WatchStudy(pb.WatchStudyRequest(study_id=study.id), timeout=1800):
        if message.HasField("snapshot") and message.snapshot.study.state == pb.STUDY_STATE_COMPLETED:
            break
        if message.HasField("event") and message.event.WhichOneof("payload") == "study_completed":
            break
    wall = time.perf_counter() - start
    assert gateway.GetStudy(pb.GetStudyRequest(study_id=study.id)).study.state == pb.STUDY_STATE_COMPLETED
    return wall


def cpu_seconds(platform) -> dict[str, float]:
    """CPU time so far of each part, its children included (MLflow serves from one)."""
    out = {}
    for part in platform.supervisor.parts:
        try:
            proc = psutil.Process(part.proc.pid)
            out[part.name] = sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])
        except psutil.NoSuchProcess:
            out[part.name] = 0.0
    return out


def idle_rates(platform, seconds: float) -> dict[str, float]:
    """CPU seconds per second each part spends with nothing to do (heartbeats, polls)."""
    before, start = cpu_seconds(platform), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = cpu_seconds(platform), time.perf_counter() - start
    return {name: max(0.0, after[name] - before.get(name, 0.0)) / elapsed for name in after}


def central_per_trial(walls: list[float], cpus: list[dict[str, float]], idle: dict[str, float],
                      trials: int) -> dict[str, float]:
    """Each central part's CPU ms per finished trial, idle rate subtracted, median over studies."""
    return {name: statistics.median((cpu[name] - idle.get(name, 0.0) * wall) / trials * 1000
                                    for wall, cpu in zip(walls, cpus)) for name in CENTRAL}


def measured_study(platform, gateway, spec: pb.StudySpec) -> tuple[float, dict[str, float]]:
    """Wall time of a study, and the CPU seconds each part spent on it."""
    before = cpu_seconds(platform)
    wall = platform_wall(gateway, spec)
    after = cpu_seconds(platform)
    return wall, {name: after[name] - before.get(name, 0.0) for name in after}


def dispatch_latencies(platform, gateway, studies: int) -> list[float]:
    """CreateStudy returned -> the gateway's WatchEvents delivers the first epoch event."""
    ch = grpc.insecure_channel(platform.gateway)
    from kubetune.gateway.v1 import gateway_pb2_grpc

    stub = gateway_pb2_grpc.GatewayStub(ch)
    out = []
    for i in range(studies):
        first: dict[str, float] = {}
        ready = threading.Event()
        stream = stub.WatchEvents(gateway_pb2.WatchEventsRequest(kinds=["kubetune.tuning.trial.epoch_completed"]))

        def read():
            ready.set()
            try:
                for event in stream:
                    first.setdefault(event.epoch_completed.study_id, time.perf_counter())
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        ready.wait()
        time.sleep(0.3)  # the gateway has subscribed
        created = gateway.CreateStudy(pb.CreateStudyRequest(spec=study_spec(1, 2, 1))).study
        returned = time.perf_counter()
        deadline = time.monotonic() + 30
        while created.id not in first and time.monotonic() < deadline:
            time.sleep(0.005)
        stream.cancel()
        out.append(first[created.id] - returned)
        run_study(gateway, study_spec(1, 1, 1), timeout=60)  # let the study end before the next
    ch.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7,
                        help="runs of each; the script and the platform alternate, medians are compared")
    parser.add_argument("--dispatch-studies", type=int, default=10)
    parser.add_argument("--idle-s", type=float, default=5.0, help="how long each part's idle CPU rate is measured")
    parser.add_argument("--short-trials", type=int, default=300)
    parser.add_argument("--short-epochs", type=int, default=2)
    parser.add_argument("--short-repeats", type=int, default=2, help="alternating pairs of the short-trials study")
    args = parser.parse_args()
    spec = lambda parallel: study_spec(args.trials, args.epochs, parallel)  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with running_platform(Path(tmp) / "one", workers=1) as platform:
            ch, gateway = platform.stub()
            platform_wall(gateway, study_spec(2, 2, 1))  # warm the worker
            time.sleep(1.0)  # the warm-up study's last writes
            idle = idle_rates(platform, args.idle_s)
            scripts, ones, cpus = [], [], []
            for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits both
                scripts.append(baseline_script(gateway, platform.mlflow_uri, spec(1), Path(tmp) / "cache"))
                wall, cpu = measured_study(platform, gateway, spec(1))
                ones.append(wall)
                cpus.append(cpu)
            script, one = statistics.median(scripts), statistics.median(ones)
            # Each run's ratio to the script run just before it: this machine's speed drifts.
            ratios = [o / s for o, s in zip(ones, scripts)]
            rows.append(("overhead: platform wall / in-process script (median of paired runs)",
                         f"median {one:.1f} s / {script:.1f} s; pairs "
                         f"{', '.join(f'{o:.1f}/{s:.1f}' for o, s in zip(ones, scripts))}",
                         f"{statistics.median(ratios):.2f}x", "<= 1.05x"))
            cpu = {name: statistics.median(c[name] for c in cpus) for name in cpus[0]}
            per_trial = sum(cpu.values()) / args.trials
            busiest = ", ".join(f"{n} {c / args.trials * 1000:.0f}" for n, c in sorted(cpu.items(), key=lambda x: -x[1])[:4])
            # With 2 workers the parts can at best keep every core busy: that bounds the ratio.
            ceiling = (CORES / per_trial) / (args.trials / one)
            rows.append(("1 worker: CPU per trial, all parts (ms)", f"{busiest}, ...",
                         f"{per_trial * 1000:.0f} ms on {per_trial * args.trials / one:.2f} cores", ""))
            central = central_per_trial(ones, cpus, idle, args.trials)
            rows.append(("central parts: CPU per finished trial, idle subtracted (ms; median of the 1-worker studies)",
                         ", ".join(f"{n} {central[n]:.1f} (idle {idle.get(n, 0) * 1000:.1f} ms/s)" for n in CENTRAL),
                         f"{sum(central.values()):.1f} ms", "<= 50 ms"))
            ch.close()
        with running_platform(Path(tmp) / "two", workers=2) as platform:
            ch, gateway = platform.stub()
            platform_wall(gateway, study_spec(2, 2, 2))
            twos = [platform_wall(gateway, spec(2)) for _ in range(args.repeats)]
            two = statistics.median(twos)
            rows.append(("scale-out: trials/s on 2 workers / 1 worker (medians)", f"{args.trials / two:.2f} / {args.trials / one:.2f}",
                         f"{one / two:.2f}x (at most {ceiling:.2f}x on {CORES} cores)", ">= 1.8x"))
            lat = dispatch_latencies(platform, gateway, args.dispatch_studies)
            rows.append(("dispatch: CreateStudy -> first epoch event, p50", f"max {max(lat) * 1000:.0f} ms",
                         f"{statistics.median(lat) * 1000:.0f} ms", "<= 1000 ms"))
            n = args.short_trials
            short_scripts, shorts = [], []
            for _ in range(args.short_repeats):  # alternating pairs, as above
                short_scripts.append(baseline_script(gateway, platform.mlflow_uri,
                                                     study_spec(n, args.short_epochs, 1), Path(tmp) / "cache"))
                shorts.append(platform_wall(gateway, study_spec(n, args.short_epochs, 2)))
            rows.append((f"short trials: {n} x {args.short_epochs} epochs, time per trial, 2 workers / in-process "
                         "script on 1 process (median of paired runs)",
                         f"{statistics.median(shorts) / n * 1000:.0f} ms / {statistics.median(short_scripts) / n * 1000:.0f} ms; "
                         f"pairs {', '.join(f'{p:.1f}/{s:.1f} s' for p, s in zip(shorts, short_scripts))}",
                         f"{statistics.median(p / s for p, s in zip(shorts, short_scripts)):.2f}x", "<= 1.3x"))
            ch.close()
    load = os.getloadavg()
    print(f"load average during the run (1/5/15 min, at its end): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {CORES} cores")
    print(f"| tuning benchmark ({args.trials} trials x {args.epochs} epochs, seed data) | measured | result | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
