"""The whole platform for tests and benchmarks: the same plan and supervisor as `kubetune up`,
on free ports, with its own NATS, MLflow and data home."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from cli.local_platform import Part, Supervisor, own_admin_token, plan, register_demos
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune_common.config import PORTS
from testing.servers import free_port


@dataclass
class Platform:
    home: Path
    supervisor: Supervisor
    ports: dict[str, int]

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ui']}"

    @property
    def optuna_storage(self) -> str:
        return f"sqlite:///{self.home / 'tuning' / 'optuna.db'}"

    def part(self, name: str) -> Part:
        return next(p for p in self.supervisor.parts if p.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kills a part the hard way; the supervisor restarts it."""
        pid = self.part(name).proc.pid
        os.kill(pid, sig)
        return pid

    def stub(self) -> tuple[grpc.Channel, gateway_pb2_grpc.GatewayStub]:
        ch = grpc.insecure_channel(self.gateway)
        return ch, gateway_pb2_grpc.GatewayStub(ch)


@contextlib.contextmanager
def running_platform(home: Path, *, workers: int = 2, ui: bool = False, env: dict[str, str] | None = None,
                     sample: bool = True, mlflow_backend: str = ""):
    ports = {name: free_port() for name in PORTS}
    admin_token = own_admin_token(env)
    parts = plan(home, workers, ports, worker_ports=[free_port() for _ in range(workers)], ui=ui,
                 env={"KUBETUNE_WORKER_ACK_WAIT_S": "6", "KUBETUNE_WORKER_HEARTBEAT_S": "1",
                      "KUBETUNE_TRIAL_GRACE_S": "6", **(env or {})}, mlflow_backend=mlflow_backend,
                 admin_token=admin_token)
    supervisor = Supervisor(home, parts)
    watcher = threading.Thread(target=supervisor.supervise, daemon=True)
    try:
        supervisor.start_all()
        if sample:
            register_demos(f"127.0.0.1:{ports['gateway']}", home, admin_token)
        watcher.start()
        yield Platform(home, supervisor, ports)
    finally:
        supervisor.stop_all()
        if watcher.is_alive():
            watcher.join(5)
