"""`kubetune up` as a user runs it: a subprocess, the thin path through the gateway,
then SIGTERM, and no child process left behind."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import mlflow
import psutil
import pytest

from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common.config import PORTS
from services.common import mlflow_tags
from testing.servers import free_port
from testing.studies import run_study, small_spec

pytestmark = pytest.mark.slow
KUBETUNE = Path(sys.executable).parent / "kubetune"


def start_up(home: Path, ports: dict[str, int], workers: int = 1, env: dict[str, str] | None = None) -> subprocess.Popen:
    args = [str(KUBETUNE), "up", "--home", str(home), "--workers", str(workers)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as page:
            return page.status == 200
    except OSError:
        return False


def status_from_elsewhere(cwd: Path, env: dict[str, str]) -> dict:
    """`kubetune status --json` run in another directory, told only where the gateway is."""
    result = subprocess.run([str(KUBETUNE), "status", "--json"], capture_output=True, text=True, timeout=30,
                            cwd=cwd, env=env)
    assert result.returncode in (0, 1), result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["parts"]}


# 300 s: on a loaded 2-core machine MLflow alone has taken 112 s to answer.
def read_until(proc: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("kubetune up exited early:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {timeout}s:\n" + "".join(lines))


def _free_pair() -> int:
    """A free port whose next one is free too: worker-1 listens on the worker port + 1
    (a taken one there made the taken-port test name worker-1 instead of the gateway)."""
    import socket

    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def ports():
    return {name: free_port() for name in PORTS if name != "worker"} | {"worker": _free_pair()}


def test_up_runs_the_thin_path_and_stops_clean(tmp_path, ports):
    # The per-user index of running platforms goes to the test's own folder.
    env = {k: v for k, v in os.environ.items() if k != "KUBETUNE_HOME"} | {"XDG_STATE_HOME": str(tmp_path / "state")}
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = start_up(home, ports, env=env)
    dashboard = None
    try:
        lines = read_until(proc, "Ctrl-C stops everything")
        text = "".join(lines)
        assert f"http://127.0.0.1:{ports['ui']}" in text and f"127.0.0.1:{ports['gateway']}" in text
        assert f"http://127.0.0.1:{ports['mlflow']}" in text and "registered the sample data" in text
        assert "registered scikit-learn's diabetes table as dataset diabetes@" in text
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 9

        status = subprocess.run([str(KUBETUNE), "status", "--home", str(home), "--json"],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stdout
        # From any directory, knowing only the gateway (as every other command does).
        parts = status_from_elsewhere(elsewhere, {**env, "KUBETUNE_GATEWAY": f"127.0.0.1:{ports['gateway']}"})
        direct = {p.pid for p in psutil.Process(proc.pid).children()}
        assert {p["pid"] for p in parts.values()} == direct
        assert all(p["status"] == "SERVING" and p["restarts"] == 0 for p in parts.values()), parts
        assert {n: parts[n]["port"] for n in ("gateway", "ui", "nats", "mlflow", "data", "tuning", "registry")} == \
            {n: ports[n] for n in ("gateway", "ui", "nats", "mlflow", "data", "tuning", "registry")}
        # A part killed and brought back shows its new pid and one restart.
        os.killpg(parts["registry"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not ((r := status_from_elsewhere(elsewhere, {**env, "KUBETUNE_GATEWAY": f"127.0.0.1:{ports['gateway']}"})["registry"])
                   ["restarts"] == 1 and r["status"] == "SERVING"):
            assert time.monotonic() < deadline, r
            time.sleep(0.5)
        assert r["pid"] != parts["registry"]["pid"] and r["pid"] in {p.pid for p in psutil.Process(proc.pid).children()}

        # The printed optuna-dashboard command runs beside the UI as printed.
        command = next(line for line in lines if "optuna-dashboard" in line).split("Optuna", 1)[1].strip()
        words = shlex.split(command)
        port = int(words[words.index("--port") + 1])
        assert port not in ports.values()
        dashboard = subprocess.Popen([str(KUBETUNE.parent / words[0]), *words[1:]], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=elsewhere)
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/"):
            assert dashboard.poll() is None and time.monotonic() < deadline, "optuna-dashboard did not start"
            time.sleep(0.5)
        assert http_ok(f"http://127.0.0.1:{ports['ui']}/")

        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as ch:
            gw = gateway_pb2_grpc.GatewayStub(ch)
            health = gw.GetPlatformHealth(gateway_pb2.GetPlatformHealthRequest())
            assert health.all_serving, health
            sample = gw.GetDataset(data_pb2.GetDatasetRequest(ref="sample")).version
            assert sample.row_count == 100 and len([c for c in sample.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE]) == 5
            diabetes = gw.GetDataset(data_pb2.GetDatasetRequest(ref="diabetes")).version
            assert diabetes.row_count == 442 and diabetes.target == "progression"
            assert len([c for c in diabetes.columns if c.role == data_pb2.COLUMN_ROLE_FEATURE]) == 10
            assert diabetes.task_kind == data_pb2.TASK_KIND_REGRESSION

            study = run_study(gw, small_spec(trials=3, epochs=3, parallel=1), timeout=120)
            assert study.counts.complete + study.counts.pruned == 3

            client = mlflow.MlflowClient(f"http://127.0.0.1:{ports['mlflow']}")
            runs = client.search_runs([study.mlflow_experiment_id], f"tags.`{mlflow_tags.TAG_STUDY}` = '{study.id}'")
            assert len(runs) == 5  # the study's run, its linear baseline and its 3 trials
            deadline = time.monotonic() + 30
            while len(client.get_metric_history(study.best_trial.mlflow_run_id, "val_loss")) < study.best_trial.epochs_done:
                assert time.monotonic() < deadline, "epoch metrics never reached MLflow"
                time.sleep(0.5)

            version = gw.RegisterModel(registry_pb2.RegisterModelRequest(
                run_id=study.best_trial.mlflow_run_id, name="thin-path", alias="champion")).version
            assert version.version == "1" and version.study_id == study.id
            assert client.get_model_version_by_alias("thin-path", "champion").version == "1"

        with urllib.request.urlopen(f"http://127.0.0.1:{ports['ui']}/", timeout=10) as page:
            assert page.status == 200
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(30)
        before = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not list((tmp_path / "state").rglob("*.json")), "the index still names a stopped platform"
    time.sleep(0.5)
    alive = [p for p in before if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"children left behind: {alive}"


def test_a_taken_port_is_named_with_the_setting_that_changes_it(tmp_path, ports):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", ports["gateway"]))
        s.listen()
        result = subprocess.run([str(KUBETUNE), "up", "--home", str(tmp_path),
                                 *sum(([f"--{n}-port", str(p)] for n, p in ports.items()), [])],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"port {ports['gateway']} (gateway) is already in use" in result.stdout
    assert "--gateway-port" in result.stdout and "KUBETUNE_GATEWAY_PORT" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_status_without_a_platform_says_so(tmp_path):
    result = subprocess.run([str(KUBETUNE), "status", "--home", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "kubetune up" in result.stdout
    env = {k: v for k, v in os.environ.items() if k != "KUBETUNE_HOME"} | {"XDG_STATE_HOME": str(tmp_path / "state")}
    nowhere = subprocess.run([str(KUBETUNE), "status", "--json", "--gateway", "127.0.0.1:1"], capture_output=True,
                             text=True, timeout=30, cwd=tmp_path, env=env)
    assert nowhere.returncode == 1
    row = json.loads(nowhere.stdout)["parts"][0]
    assert row["status"] == "UNAVAILABLE" and "no `kubetune up` serving a gateway at 127.0.0.1:1" in row["detail"]
