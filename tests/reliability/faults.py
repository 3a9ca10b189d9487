"""What the fault tests share: calls that ride out a restarting gateway, a watcher
that reconnects, waiting for a killed part to come back, a part's resident memory, and
the MLflow audit of a finished study (every metric once, every model loadable, no run
left RUNNING)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import mlflow
import psutil

from cli.local_platform import health
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import mlflow_tags, packed_model

TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def retrying(call, *args, timeout: float = 90, **kwargs):
    """A unary call through a gateway (or backend) that may be restarting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(*args, timeout=10, **kwargs)
        except grpc.RpcError as exc:
            if exc.code() not in TRANSIENT or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def rss_mb(proc) -> float:
    """A part's resident memory (VmRSS), its children included (MLflow serves from a child)."""
    try:
        p = psutil.Process(proc.pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def wait_for(study_id: str, gateway, until, timeout: float = 300) -> pb.Study:
    deadline = time.monotonic() + timeout
    while True:
        study = retrying(gateway.GetStudy, pb.GetStudyRequest(study_id=study_id)).study
        if until(study):
            return study
        if time.monotonic() > deadline:
            raise TimeoutError(f"study {study_id}: state {study.state}, {study.counts}")
        time.sleep(0.3)


def wait_back(platform, name: str, old_pid: int, timeout: float = 90) -> float:
    """Seconds until the supervisor's new process for `name` answers health."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        part = platform.part(name)
        proc = part.proc
        if proc is not None and proc.pid != old_pid and proc.poll() is None and health(part.check, part.address) == "SERVING":
            return time.monotonic() - start
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not come back in {timeout}s")


@dataclass
class Watcher:
    """WatchStudy through the gateway, reconnecting on any error, as the UI and CLI do."""

    address: str
    study_id: str
    reconnects: int = 0
    final_state: int = pb.STUDY_STATE_UNSPECIFIED
    updates: int = 0
    errors: Counter = field(default_factory=Counter)
    ended: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Watcher":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.ended.is_set():
            try:
                with grpc.insecure_channel(self.address) as ch:
                    stub = gateway_pb2_grpc.GatewayStub(ch)
                    for update in stub.WatchStudy(pb.WatchStudyRequest(study_id=self.study_id), timeout=600):
                        self.updates += 1
                        if update.HasField("snapshot"):
                            self.final_state = update.snapshot.study.state
                        elif update.event.HasField("study_completed"):
                            self.final_state = pb.STUDY_STATE_COMPLETED
                # The server ends the stream only once the study completed.
                if self.final_state == pb.STUDY_STATE_COMPLETED:
                    self.ended.set()
                    return
            except grpc.RpcError as exc:
                self.errors[exc.code().name] += 1
            self.reconnects += 1
            time.sleep(0.5)


def trial_runs(client: mlflow.MlflowClient, study: pb.Study):
    return client.search_runs(
        [study.mlflow_experiment_id],
        f"tags.`{mlflow_tags.TAG_STUDY}` = '{study.id}' and tags.`{mlflow_tags.TAG_KIND}` = 'trial'", max_results=1000)


def audit_mlflow(mlflow_uri: str, study: pb.Study, trials: list[pb.Trial], drain_s: float = 90) -> dict:
    """Waits (up to drain_s) for tracking to drain, then checks every COMPLETE trial's
    curve is in MLflow exactly once and its model loads, and no run is left RUNNING.
    Returns the problems still there at the deadline (empty when all is well)."""
    client = mlflow.MlflowClient(mlflow_uri)
    complete = [t for t in trials if t.state == pb.TRIAL_STATE_COMPLETE]
    deadline = time.monotonic() + drain_s
    while True:
        problems: dict[str, str] = {}
        for t in complete:
            steps = sorted(m.step for m in client.get_metric_history(t.mlflow_run_id, "val_loss"))
            if steps != list(range(t.epochs_done)):
                problems[f"trial {t.number} val_loss steps"] = f"{steps} != 0..{t.epochs_done - 1}"
        running = [r for r in client.search_runs([study.mlflow_experiment_id], max_results=1000)
                   if r.info.status == "RUNNING"]
        for r in running:
            problems[f"run {r.info.run_id}"] = f"RUNNING ({r.data.tags.get(mlflow_tags.TAG_KIND)} {r.data.tags.get(mlflow_tags.TAG_TRIAL, '')})"
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    mlflow.set_tracking_uri(mlflow_uri)
    for t in complete:
        try:
            assert packed_model.package_run(mlflow_uri, t.mlflow_run_id), "no model logged"
            mlflow.pyfunc.load_model(mlflow_tags.model_uri(t.mlflow_run_id))
        except Exception as exc:  # noqa: BLE001 - reported with the others
            problems[f"trial {t.number} model"] = f"{type(exc).__name__}: {exc}"[:300]
    return problems
