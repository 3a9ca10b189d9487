"""`kubetune up`: every part of kubetune as a local process, supervised.

Start order: NATS and MLflow; data, tracking, registry; tuning (which creates the
Optuna storage, before any worker can race to); workers, gateway, UI. A child that
dies is restarted with backoff; Ctrl-C or SIGTERM stops them all, newest first.

While it runs, `<home>/platform.json` says what runs where (pids, ports, restarts), and
a per-user index names the home of the platform serving each gateway port, so
`kubetune status` finds it from any directory."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kubetune_common.channels import sync_health_status
from kubetune_common.sqlite import use_wal

SAMPLE = Path(__file__).resolve().parents[1] / "services" / "data" / "sample"
STATE_FILE = "platform.json"
DEFAULT_HOME = ".kubetune"
# The optuna-dashboard command `kubetune up` prints takes the first free port from here
# (optuna-dashboard's own default, 8080, is the UI's).
DASHBOARD_PORTS = range(8081, 8100)
# kubetune uses none of MLflow's server-side jobs (GenAI evaluation); without them the
# server starts three fewer processes and answers sooner.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
# MLflow's Flask app under gunicorn's threaded worker, not its default FastAPI app under
# uvicorn (which wraps the same Flask handlers in an ASGI->WSGI bridge): ~22% less of
# MLflow's CPU per REST call here (47 against 62 ms for one trial's calls, two runs of
# each, loaded machine), and MLflow's CPU per call is most of what a trial costs the
# parts every worker shares. kubetune calls only the REST, artifact and UI routes the
# Flask app serves.
MLFLOW_SERVER_OPTS = ["--gunicorn-opts", "--threads 8 --log-level warning"]
STOP_GRACE_S = 15
# How long a part may take to answer health checks; a busy laptop may need more.
READY_TIMEOUT_S = float(os.environ.get("KUBETUNE_READY_TIMEOUT_S", "120"))


@dataclass
class Part:
    name: str
    command: list[str]
    port: int
    check: str  # grpc, http or tcp
    setting: str  # what changes the port
    env: dict[str, str] = field(default_factory=dict)
    stage: int = 0
    proc: subprocess.Popen | None = None
    restarts: int = 0  # in a row, for the backoff; reset once a start has lasted
    restarted: int = 0  # times restarted since the platform started, for `kubetune status`
    next_start: float = 0.0
    started_at: float = 0.0
    ready_s: float = 0.0  # seconds from spawn to SERVING, at the last start

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"


def say(message: str) -> None:
    print(f"kubetune: {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves bind: a port whose last connections linger in
        # TIME_WAIT (kubetune up just stopped) is free; one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def health(kind: str, address: str, timeout: float = 1.0) -> str:
    if kind == "grpc":
        return sync_health_status(address, timeout)
    if kind == "http":
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=timeout) as r:
                return "SERVING" if r.status < 500 else "NOT_SERVING"
        except Exception:  # noqa: BLE001
            return "UNAVAILABLE"
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(timeout)
        return "SERVING" if s.connect_ex((host, int(port))) == 0 else "UNAVAILABLE"


def own_admin_token(env: dict[str, str] | None = None) -> str:
    """A fresh admin token for `kubetune up`'s own calls (the sample data), when the
    gateway has tokens configured; '' when auth is off. Lives only in the gateway's
    environment and this process: never printed, logged or written down."""
    merged = {**os.environ, **(env or {})}
    if merged.get("KUBETUNE_GATEWAY_TOKENS", "").strip() or merged.get("KUBETUNE_GATEWAY_TOKENS_FILE", "").strip():
        return "kubetune-up-" + secrets.token_urlsafe(32)
    return ""


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),) if token else ()


def plan(home: Path, workers: int, ports: dict[str, int], *, worker_ports: list[int] | None = None,
         ui: bool = True, env: dict[str, str] | None = None, mlflow_backend: str = "",
         admin_token: str = "") -> list[Part]:
    """The parts and how to start them. Tests pass free ports, their own env, and may leave out the UI.
    `admin_token` (see own_admin_token) is added to the gateway's tokens as an admin."""
    py = sys.executable
    bindir = Path(py).parent
    nats_bin = shutil.which("nats-server", path=str(bindir)) or shutil.which("nats-server") or "nats-server"
    mlflow_bin = shutil.which("mlflow", path=str(bindir)) or "mlflow"
    mlflow_dir = home / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow_backend = mlflow_backend or f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    use_wal(mlflow_backend)  # before MLflow's first connection: every write commits in ~0.1 ms
    env = {
        "KUBETUNE_HOME": str(home),
        "KUBETUNE_NATS_URL": f"nats://127.0.0.1:{ports['nats']}",
        "KUBETUNE_MLFLOW_URI": f"http://127.0.0.1:{ports['mlflow']}",
        **{f"KUBETUNE_{p.upper()}_ADDRESS": f"127.0.0.1:{ports[p]}" for p in ("data", "tuning", "tracking", "registry", "gateway")},
        "KUBETUNE_TRACKING_BACKEND_STORE_URI": mlflow_backend,
        "KUBETUNE_UI_MLFLOW_UI_URL": f"http://127.0.0.1:{ports['mlflow']}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }

    def service(name: str, module: str, stage: int, **extra) -> Part:
        prefix = f"KUBETUNE_{name.upper()}_"
        return Part(name, [py, "-m", module], ports[name], "grpc", f"--{name}-port or {prefix}PORT",
                    {**env, f"{prefix}PORT": str(ports[name]), **extra}, stage)

    parts = [
        Part("nats", [nats_bin, "-a", "127.0.0.1", "-p", str(ports["nats"]), "-js", "-sd", str(home / "nats")],
             ports["nats"], "tcp", "--nats-port", env, 0),
        Part("mlflow", [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(ports["mlflow"]),
                        "--backend-store-uri", mlflow_backend,
                        "--artifacts-destination", str(mlflow_dir / "artifacts"), "--workers", "1",
                        *MLFLOW_SERVER_OPTS],
             ports["mlflow"], "http", "--mlflow-port", {**env, **MLFLOW_SERVER_ENV}, 0),
        service("data", "services.data", 1),
        service("tracking", "services.tracking", 1),
        service("registry", "services.registry", 1),
        service("tuning", "services.tuning", 2),
    ]
    for i in range(workers):
        port = worker_ports[i] if worker_ports else ports["worker"] + i
        parts.append(Part(f"worker-{i}", [py, "-m", "services.tuning.worker"], port, "grpc",
                          "--worker-port or KUBETUNE_WORKER_PORT",
                          {**env, "KUBETUNE_WORKER_PORT": str(port), "KUBETUNE_WORKER_NAME": f"worker-{i}"}, 3))
    gateway_env = {"KUBETUNE_GATEWAY_METRICS_PORT": str(ports["metrics"])}
    if admin_token:
        configured = env.get("KUBETUNE_GATEWAY_TOKENS", os.environ.get("KUBETUNE_GATEWAY_TOKENS", "")).strip(", ")
        gateway_env["KUBETUNE_GATEWAY_TOKENS"] = ",".join(filter(None, [configured, f"{admin_token}:admin"]))
    parts.append(service("gateway", "gateway", 3, **gateway_env))
    if ui:
        # Signs the UI's session cookies. Fresh each start unless set: a restarted
        # `kubetune up` signs everyone out, which is what a laptop wants.
        secret = {} if "KUBETUNE_UI_SESSION_SECRET" in {**os.environ, **env} else {
            "KUBETUNE_UI_SESSION_SECRET": secrets.token_urlsafe(32)}
        parts.append(Part("ui", [py, "-m", "ui"], ports["ui"], "http", "--ui-port or KUBETUNE_UI_PORT",
                          {**env, "KUBETUNE_UI_PORT": str(ports["ui"]), **secret}, 3))
    return parts


class Supervisor:
    def __init__(self, home: Path, parts: list[Part]):
        self.home = home
        self.parts = parts
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stopping = False

    def spawn(self, part: Part) -> None:
        log = open(self.logs / f"{part.name}.log", "ab")
        part.proc = subprocess.Popen(
            part.command, env={**os.environ, **part.env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home,
        )
        log.close()
        part.started_at = time.monotonic()

    def wait_ready(self, parts: list[Part], timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        pending = list(parts)
        while pending:
            if self.stopping:
                raise KeyboardInterrupt
            for part in list(pending):
                if part.proc.poll() is not None:
                    tail = (self.logs / f"{part.name}.log").read_text(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(f"{part.name} exited with code {part.proc.returncode} while starting:\n  "
                                       + "\n  ".join(tail))
                if health(part.check, part.address) == "SERVING":
                    part.ready_s = time.monotonic() - part.started_at
                    say(f"{part.name} serving on {part.address} ({part.ready_s:.1f}s)")
                    pending.remove(part)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(p.name for p in pending)} "
                                   f"(see {self.logs})")
            time.sleep(0.1)

    def start_all(self) -> None:
        for stage in sorted({p.stage for p in self.parts}):
            group = [p for p in self.parts if p.stage == stage]
            for part in group:
                self.spawn(part)
            self.wait_ready(group)
        self.write_state()

    def write_state(self) -> None:
        """What runs where, for `kubetune status`; replaced whole, so a reader never sees half."""
        state = {"pid": os.getpid(), "home": str(self.home), "parts": [
            {"name": p.name, "check": p.check, "address": p.address, "port": p.port,
             "pid": p.proc.pid if p.proc is not None and p.proc.poll() is None else None,
             "restarts": p.restarted} for p in self.parts]}
        tmp = self.home / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.home / STATE_FILE)

    def supervise(self) -> None:
        """Restarts a child that died, with exponential backoff, until told to stop."""
        while not self.stopping:
            now = time.monotonic()
            changed = False
            for part in self.parts:
                if self.stopping:
                    break
                if part.proc is not None and part.proc.poll() is not None:
                    code = part.proc.returncode
                    part.proc = None
                    # A child that ran a while before dying starts over with a short wait.
                    if now - part.started_at > 60:
                        part.restarts = 0
                    delay = min(30.0, 0.5 * 2 ** part.restarts)
                    part.restarts += 1
                    part.next_start = now + delay
                    say(f"{part.name} exited with code {code}; restarting in {delay:.1f}s (restart {part.restarts})")
                    changed = True
                elif part.proc is None and now >= part.next_start:
                    self.spawn(part)
                    part.restarted += 1
                    say(f"{part.name} restarted (pid {part.proc.pid})")
                    changed = True
            if changed and not self.stopping:
                with contextlib.suppress(OSError):
                    self.write_state()
            time.sleep(0.2)

    def stop_all(self) -> None:
        """Stops the parts a stage at a time, the last started first, so each part
        stops while what it leans on still runs: a worker abandoning its trial at
        SIGTERM still reaches NATS and the Optuna storage, tracking drains to MLflow."""
        self.stopping = True
        time.sleep(0.3)  # lets a supervise loop in another thread see it before we look
        for stage in sorted({p.stage for p in self.parts}, reverse=True):
            self._stop([p for p in reversed(self.parts) if p.stage == stage])
        with contextlib.suppress(FileNotFoundError):
            (self.home / STATE_FILE).unlink()
        say("stopped")

    def _stop(self, parts: list[Part]) -> None:
        running = [p for p in parts if p.proc is not None and p.proc.poll() is None]
        for part in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(part.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for part in running:
            try:
                part.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{part.name} did not stop in {STOP_GRACE_S}s; killing it")
            # Whatever the child left in its group (mlflow's workers) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(part.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                part.proc.wait(5)


def diabetes_csv() -> bytes:
    """scikit-learn's bundled diabetes table as CSV: 442 patients, 10 baseline measurements
    (already centred and scaled by scikit-learn), and the disease's progression a year later,
    the target. It ships inside the scikit-learn wheel: no download."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    return frame.to_csv(index=False).encode()


def register_demos(gateway_address: str, home: Path, token: str = "") -> None:
    """On first start, the demo datasets, so a newcomer can press go: `sample`, the
    original project's X/y (no learnable signal: every model loses to the mean), and
    `diabetes`, a small regression with real signal."""
    import grpc

    from kubetune.data.v1 import data_pb2
    from kubetune.gateway.v1 import gateway_pb2_grpc

    def sample(stub):
        return stub.RegisterDataset(data_pb2.RegisterDatasetRequest(name="sample", uri=str(SAMPLE)), timeout=60,
                                    metadata=bearer(token)).version

    def diabetes(stub):
        def parts():
            yield data_pb2.UploadDatasetRequest(header=data_pb2.UploadHeader(
                name="diabetes", filename="diabetes.csv", options=data_pb2.IngestOptions(target_column="progression")))
            yield data_pb2.UploadDatasetRequest(chunk=diabetes_csv())

        return stub.UploadDataset(parts(), timeout=60, metadata=bearer(token)).version

    demos = (("sample", "the sample data", sample), ("diabetes", "scikit-learn's diabetes table", diabetes))
    with grpc.insecure_channel(gateway_address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        for name, what, register in demos:
            marker = home / f".{name}-registered"
            if marker.exists():
                continue
            version = register(stub)
            marker.write_text(f"{version.name}@{version.version}\n")
            say(f"registered {what} as dataset {name}@{version.version}")


def dashboard_port(taken: set[int]) -> int:
    """A port for optuna-dashboard that nothing listens on (its default, 8080, is the UI's)."""
    for port in DASHBOARD_PORTS:
        if port not in taken and port_free(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def index_dir() -> Path:
    """The per-user index of running platforms: one file per gateway port naming its home."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "kubetune" / "running"


def _index_file(gateway_port: int) -> Path:
    return index_dir() / f"gateway-{gateway_port}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_home(gateway_address: str) -> Path | None:
    """The home of the running `kubetune up` whose gateway listens on this address's port."""
    _, _, port = gateway_address.rpartition(":")
    if not port.isdigit():
        return None
    try:
        entry = json.loads(_index_file(int(port)).read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(entry.get("pid", 0)) or -1):
        return None
    return Path(entry["home"])


def run_up(home: Path, workers: int, ports: dict[str, int]) -> int:
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    admin_token = own_admin_token()
    parts = plan(home, workers, ports, admin_token=admin_token)
    for part in parts:
        if not port_free(part.port):
            say(f"port {part.port} ({part.name}) is already in use; change it with {part.setting}")
            return 2
    supervisor = Supervisor(home, parts)

    def on_signal(signum, _frame):
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say(f"starting in {home} (logs in {home / 'logs'})")
    try:
        supervisor.start_all()
        with contextlib.suppress(OSError):  # a read-only home directory costs only the lookup
            _index_file(ports["gateway"]).parent.mkdir(parents=True, exist_ok=True)
            _index_file(ports["gateway"]).write_text(json.dumps({"home": str(home), "pid": os.getpid()}))
        register_demos(f"127.0.0.1:{ports['gateway']}", home, admin_token)
        say("ready:")
        print(f"  UI         http://127.0.0.1:{ports['ui']}" + ("  (sign in with a gateway token)" if admin_token else ""),
              flush=True)
        print(f"  gateway    127.0.0.1:{ports['gateway']}  (grpcurl -plaintext 127.0.0.1:{ports['gateway']} list)", flush=True)
        print(f"  MLflow UI  http://127.0.0.1:{ports['mlflow']}", flush=True)
        port = dashboard_port({p.port for p in parts})
        print(f"  Optuna     optuna-dashboard --port {port} sqlite:///{home / 'tuning' / 'optuna.db'}", flush=True)
        print("  Ctrl-C stops everything.", flush=True)
        supervisor.supervise()
        return 0
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # noqa: BLE001 - one clear line, then stop what started
        say(f"failed to start: {exc}")
        return 1
    finally:
        supervisor.stop_all()
        with contextlib.suppress(OSError):
            entry = _index_file(ports["gateway"])
            if json.loads(entry.read_text()).get("pid") == os.getpid():
                entry.unlink()


def run_status(home: Path | None, gateway_address: str, as_json: bool) -> int:
    """Health of every part, with its pid, port and restarts. The platform is found as the
    CLI finds the gateway: --home or KUBETUNE_HOME if given, else the running `kubetune up`
    serving the gateway address (--gateway, KUBETUNE_GATEWAY, or the default), else ./.kubetune."""
    if home is None:
        home = find_home(gateway_address) or Path(DEFAULT_HOME)
    state_file = home.resolve() / STATE_FILE
    if not state_file.exists():
        rows = [{"name": "platform", "status": "UNAVAILABLE", "address": "", "port": None, "pid": None, "restarts": 0,
                 "detail": f"no {STATE_FILE} in {home.resolve()} and no `kubetune up` serving a gateway at "
                           f"{gateway_address}: is it running? (--home, KUBETUNE_HOME)"}]
    else:
        state = json.loads(state_file.read_text())
        rows = [{**p, "status": health(p["check"], p["address"])} for p in state["parts"]]
    ok = all(r["status"] == "SERVING" for r in rows)
    if as_json:
        print(json.dumps({"all_serving": ok, "home": str(home.resolve()), "parts": rows}, indent=2))
    else:
        print(f"{'part':<10} {'status':<12} {'address':<16} {'pid':>8} {'restarts':>8}")
        for r in rows:
            pid = r.get("pid") or "-"
            print(f"{r['name']:<10} {r['status']:<12} {r['address']:<16} {pid!s:>8} {r.get('restarts', 0):>8}  "
                  f"{r.get('detail', '')}".rstrip())
    return 0 if ok else 1
