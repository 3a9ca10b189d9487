"""The rendered dev overlay's workloads run as podman containers on one network: each
container's image, command, env, ports, user, read-only root, capabilities, volumes and
readiness probe read from its manifest; each Service's name an alias on the network for
the pods it selects. What departs from the manifests is in substitutes.py, nowhere else."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.containers.substitutes import READ_ONLY_ROOT, SUBSTITUTES, image_name, repository

LABEL = "io.kubetune.test"


@dataclass
class Workload:
    kind: str  # Deployment, StatefulSet, Job
    name: str
    pod: dict  # the pod template's spec
    labels: dict[str, str]
    claims: dict[str, dict] = field(default_factory=dict)  # StatefulSet volumeClaimTemplates


class Manifests:
    """What the containers need from the rendered documents."""

    def __init__(self, docs: list[dict]):
        self.docs = docs
        by_kind: dict[str, dict[str, dict]] = {}
        for d in docs:
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        self.configmaps = {n: d.get("data", {}) for n, d in by_kind.get("ConfigMap", {}).items()}
        self.secrets = {n: {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
                        | d.get("stringData", {}) for n, d in by_kind.get("Secret", {}).items()}
        self.services = by_kind.get("Service", {})
        self.workloads = {}
        for kind in ("Deployment", "StatefulSet", "Job"):
            for name, d in by_kind.get(kind, {}).items():
                tpl = d["spec"]["template"]
                claims = {c["metadata"]["name"]: c for c in d["spec"].get("volumeClaimTemplates", [])}
                self.workloads[name] = Workload(kind, name, tpl["spec"], tpl["metadata"].get("labels", {}), claims)

    def aliases(self, w: Workload) -> list[str]:
        """The Services whose selector picks this workload's pods."""
        return sorted(n for n, s in self.services.items()
                      if s["spec"].get("selector") and s["spec"]["selector"].items() <= w.labels.items())

    def env(self, container: dict, pod_name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in container.get("envFrom", []):
            if "configMapRef" in src:
                env.update(self.configmaps[src["configMapRef"]["name"]])
            if "secretRef" in src:
                env.update(self.secrets[src["secretRef"]["name"]])
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(e["value"], env)
                continue
            ref = e["valueFrom"]
            if "configMapKeyRef" in ref:
                env[e["name"]] = self.configmaps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
            elif "secretKeyRef" in ref:
                env[e["name"]] = self.secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[e["name"]] = pod_name
            else:
                raise NotImplementedError(f"{pod_name}: env {e['name']} from {ref}")
        return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) in command, args and env values."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), text)


@dataclass
class Container:
    name: str  # the podman container's name
    pod: str  # the pod name it stands for (nats-0, tuning-worker-1)
    workload: Workload
    spec: dict  # the manifest's container
    run_args: list[str]


class Cluster:
    """One podman network, the containers on it, and their teardown."""

    def __init__(self, engine: str, manifests: Manifests, images: dict[str, str], prefix: str,
                 workdir: Path):
        self.engine, self.m, self.images, self.prefix, self.workdir = engine, manifests, images, prefix, workdir
        self.network = f"{prefix}-net"
        self.containers: dict[str, Container] = {}

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, check=check, timeout=timeout)

    def create_network(self) -> None:
        self.podman("network", "create", "--label", f"{LABEL}={self.prefix}", self.network)

    def image_for(self, manifest_image: str) -> tuple[str, list[str] | None, list[str] | None]:
        """The local image that runs a manifest's image, and the command/args a stand-in needs."""
        repo = repository(manifest_image)
        if repo in SUBSTITUTES:
            sub = SUBSTITUTES[repo]
            return self.images[image_name(sub.target)], sub.command, sub.args
        return self.images[repo], None, None

    def container_args(self, w: Workload, index: int, publish: dict[int, int]) -> Container:
        pod = f"{w.name}-{index}"
        (spec,) = w.pod["containers"]  # one container per pod in these manifests
        name = f"{self.prefix}-{pod}"
        env = self.m.env(spec, pod)
        image, command, args = self.image_for(spec["image"])
        command = command if command is not None else spec.get("command")
        args = args if args is not None else spec.get("args", [])
        sec = {**w.pod.get("securityContext", {}), **spec.get("securityContext", {})}
        run = ["run", "--detach", "--name", name, "--hostname", pod, "--network", self.network,
               "--label", f"{LABEL}={self.prefix}", "--pull", "never"]
        run += [a for alias in self.m.aliases(w) for a in ("--network-alias", alias)]
        if "runAsUser" in sec:
            run += ["--user", f"{sec['runAsUser']}:{sec.get('runAsGroup', sec['runAsUser'])}"]
        if "fsGroup" in sec:
            run += ["--group-add", str(sec["fsGroup"])]
        if sec.get("readOnlyRootFilesystem") or READ_ONLY_ROOT:
            # --read-only-tmpfs=false: only the manifest's volumes are writable, as in a pod.
            run += ["--read-only", "--read-only-tmpfs=false"]
        caps = sec.get("capabilities", {})
        run += [f"--cap-drop={c.lower()}" for c in caps.get("drop", [])]
        run += [f"--cap-add={c.lower()}" for c in caps.get("add", [])]
        if sec.get("allowPrivilegeEscalation") is False:
            run += ["--security-opt", "no-new-privileges"]
        limits = spec.get("resources", {}).get("limits", {})
        if "memory" in limits:
            run += ["--memory", limits["memory"].replace("Gi", "g").replace("Mi", "m")]
        for k, v in env.items():
            run += ["--env", f"{k}={v}"]
        run += self.volume_args(w, pod, spec)
        ports = {p.get("name"): p["containerPort"] for p in spec.get("ports", [])}
        for container_port, host_port in publish.items():
            assert container_port in ports.values(), f"{pod} exposes no port {container_port}"
            run += ["--publish", f"127.0.0.1:{host_port}:{container_port}"]
        if command is not None:
            run += ["--entrypoint", json.dumps([expand(c, env) for c in command])]
        run += [image, *[expand(a, env) for a in args]]
        return Container(name, pod, w, spec, run)

    def volume_args(self, w: Workload, pod: str, spec: dict) -> list[str]:
        volumes = {v["name"]: v for v in w.pod.get("volumes", [])}
        out = []
        for mount in spec.get("volumeMounts", []):
            path, ro = mount["mountPath"], mount.get("readOnly", False)
            vol = volumes.get(mount["name"])
            if vol is None or "persistentVolumeClaim" in vol:
                # A claim (or a StatefulSet's claim template): a named volume, owned by the
                # container's user as fsGroup makes it writable in a pod.
                out += ["--volume", f"{self.prefix}-{pod}-{mount['name']}:{path}:U"]
            elif "emptyDir" in vol:
                # notmpcopyup: empty, as an emptyDir is (not the image folder it covers).
                out += ["--tmpfs", f"{path}:rw,exec,nosuid,nodev,mode=1777,notmpcopyup"]
            elif "configMap" in vol or "secret" in vol:
                files = (self.m.configmaps[vol["configMap"]["name"]] if "configMap" in vol
                         else self.m.secrets[vol["secret"]["secretName"]])
                folder = self.workdir / pod / mount["name"]
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o755)
                for key, text in files.items():
                    (folder / key).write_text(text)
                    (folder / key).chmod(0o644)
                out += ["--volume", f"{folder}:{path}:ro"]
            else:
                raise NotImplementedError(f"{pod}: volume {vol}")
            if ro and out[-1].endswith(":U"):
                out[-1] = out[-1][:-2] + ":ro"
        return out

    def start(self, workload: str, index: int = 0, publish: dict[int, int] | None = None) -> Container:
        c = self.container_args(self.m.workloads[workload], index, publish or {})
        self.podman(*c.run_args)
        self.containers[c.pod] = c
        return c

    def run_job(self, workload: str, timeout: float = 120) -> None:
        """A Job to completion, retried while it fails (its backoffLimit's role)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.start(workload)
            code = self.podman("wait", c.name, timeout=timeout).stdout.strip()
            logs = self.logs(c.pod)
            self.podman("rm", "-f", c.name, check=False)
            self.containers.pop(c.pod)
            if code == "0":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"job {workload} failed ({code}):\n{logs}")
            time.sleep(2)

    def probe(self, pod: str) -> bool:
        """The container's readiness probe (exec, grpc or httpGet), run inside it."""
        c = self.containers[pod]
        probe = c.spec.get("readinessProbe")
        if not probe:
            return self.running(pod)
        if "exec" in probe:
            cmd = probe["exec"]["command"]
        elif "grpc" in probe:
            cmd = ["python", "-c", GRPC_PROBE, str(probe["grpc"]["port"])]
        else:
            port = probe["httpGet"]["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in c.spec["ports"] if p.get("name") == port)
            sub = SUBSTITUTES.get(repository(c.spec["image"]))
            path = (sub and sub.ready_path) or probe["httpGet"].get("path", "/")
            url = f"http://127.0.0.1:{port}{path}"
            cmd = ["python", "-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)", url]
        return self.podman("exec", c.name, *cmd, check=False, timeout=30).returncode == 0

    def wait_ready(self, pods: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(pods)
        while waiting:
            waiting = [p for p in waiting if not self.probe(p)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in {timeout}s: {waiting}\n" +
                                     "\n".join(f"--- {p}\n{self.logs(p)[-3000:]}" for p in waiting))
            time.sleep(2)

    def running(self, pod: str) -> bool:
        done = self.podman("inspect", "--format", "{{.State.Running}}", self.containers[pod].name, check=False)
        return done.stdout.strip() == "true"

    def logs(self, pod: str) -> str:
        done = self.podman("logs", self.containers[pod].name, check=False)
        return done.stdout + done.stderr

    def report(self, lines: int = 40) -> str:
        """Each container's state (exit code, OOM kill) and the end of its log: what a
        failed test prints, since CI keeps no container behind."""
        out = []
        for pod, c in self.containers.items():
            state = self.podman("inspect", "--format",
                                "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}",
                                c.name, check=False).stdout.strip()
            tail = self.logs(pod).splitlines()[-lines:]
            out.append(f"--- {pod}: {state}\n" + "\n".join(tail))
        return "\n".join(out)

    def kill(self, pod: str) -> None:
        self.podman("kill", "--signal", "KILL", self.containers[pod].name)

    def teardown(self) -> None:
        """Every container, volume and the network this cluster made (by label)."""
        ids = self.podman("ps", "-aq", "--filter", f"label={LABEL}={self.prefix}", check=False).stdout.split()
        if ids:
            self.podman("rm", "-f", "-t", "2", *ids, check=False)
        vols = self.podman("volume", "ls", "-q", check=False).stdout.split()
        mine = [v for v in vols if v.startswith(f"{self.prefix}-")]
        if mine:
            self.podman("volume", "rm", "-f", *mine, check=False)
        self.podman("network", "rm", "-f", self.network, check=False)


# grpc.health.v1 Check on 127.0.0.1:<port>: what a `grpc:` probe asks the kubelet to do.
GRPC_PROBE = (
    "import sys, grpc\n"
    "from grpc_health.v1 import health_pb2, health_pb2_grpc\n"
    "with grpc.insecure_channel('127.0.0.1:' + sys.argv[1]) as ch:\n"
    "    r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)\n"
    "sys.exit(0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1)\n"
)
