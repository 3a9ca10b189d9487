"""Checks of rendered manifests against the parts' Python settings and each other.

Each check takes the documents of one rendered overlay and returns a list of
problems (empty: fine), so a test can assert a good overlay passes and a broken copy
of it fails with the problem named. These replace the original README's list of
"which port in which file must match which other"."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic_settings import EnvSettingsSource

from tests.k8s.parts import PARTS, Part

REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component")
WORKLOADS = ("Deployment", "StatefulSet")
# Read by libraries rather than by kubetune's settings (boto3 and MLflow's S3 client).
# Exact names, so a typo still fails.
LIBRARY_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
SERVICE_PORT_PREFIXES = ("grpc", "http", "tcp")


# ---------------------------------------------------------------- reading documents


def of_kind(docs: Iterable[dict], *kinds: str) -> list[dict]:
    return [d for d in docs if d.get("kind") in kinds]


def named(docs: Iterable[dict], kind: str, name: str) -> dict | None:
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    return None


def main_container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


def part_workloads(docs) -> list[tuple[Part, dict]]:
    """The Deployments of kubetune's own parts, with the part each one runs."""
    out = []
    for d in of_kind(docs, "Deployment"):
        part = PARTS.get(d["metadata"]["name"])
        if part:
            out.append((part, d))
    return out


def container_env(container: dict, docs) -> tuple[dict[str, str | None], list[str]]:
    """Every env var a container gets: name -> value (None when it comes from a
    Secret or the downward API), and problems with ConfigMaps it names."""
    env: dict[str, str | None] = {}
    problems = []
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            cm = named(docs, "ConfigMap", name)
            if cm is None:
                problems.append(f"{container['name']}: envFrom ConfigMap {name} is not rendered")
                continue
            for key, value in (cm.get("data") or {}).items():
                env[source.get("prefix", "") + key] = value
        else:
            problems.append(f"{container['name']}: envFrom {source} hides its keys: use env with secretKeyRef")
    for item in container.get("env", []):
        env[item["name"]] = item.get("value") if "valueFrom" not in item else _secret_value(item, docs)
    return env, problems


def _secret_value(item: dict, docs) -> str | None:
    """A secretKeyRef's value where the overlay renders the Secret (dev), else None."""
    ref = item["valueFrom"].get("secretKeyRef")
    secret = named(docs, "Secret", ref["name"]) if ref else None
    if secret is None:
        return None
    if ref["key"] in (secret.get("stringData") or {}):
        return secret["stringData"][ref["key"]]
    raw = (secret.get("data") or {}).get(ref["key"])
    return base64.b64decode(raw).decode() if raw is not None else None


@lru_cache(maxsize=None)
def settings_env(part_name: str) -> dict[str, str]:
    """Env var name (upper case) -> settings field, exactly as pydantic-settings reads
    them: the part's prefix, validation aliases (the shared KUBETUNE_* names)."""
    cls = PARTS[part_name].settings_class()
    source = EnvSettingsSource(cls)
    names = {}
    for field_name, field in cls.model_fields.items():
        for _key, env_name, _complex in source._extract_field_info(field, field_name):
            names[env_name.upper()] = field_name
    return names


def settings_default(part_name: str, field: str):
    return PARTS[part_name].settings_class().model_fields[field].default


def configured(part: Part, workload: dict, docs, field: str):
    """A settings field's value in the cluster: the manifest's env, else the default."""
    env, _ = container_env(main_container(workload), docs)
    for name, value in env.items():
        if settings_env(part.name).get(name.upper()) == field and value is not None:
            return value
    return settings_default(part.name, field)


def container_port(container: dict, ref) -> int | None:
    """A port given by number or by name, as probes and targetPorts give it."""
    for p in container.get("ports", []):
        if ref == p["containerPort"] or ref == p.get("name"):
            return p["containerPort"]
    return None


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels, matchExpressions, or a plain
    map as Services use)."""
    labels = labels or {}
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def workloads_behind(service: dict, docs) -> list[dict]:
    selector = service["spec"].get("selector") or {}
    return [w for w in of_kind(docs, *WORKLOADS) if selector and selects(selector, pod_labels(w))]


# ---------------------------------------------------------------- the checks


def check_env_known(docs) -> list[str]:
    """Every env var a part's manifest sets is one its settings read: no typos pass."""
    problems = []
    for part, w in part_workloads(docs):
        env, env_problems = container_env(main_container(w), docs)
        problems += [f"{part.name}: {p}" for p in env_problems]
        known = settings_env(part.name)
        for name in env:
            if name.upper() not in known and name not in LIBRARY_ENV:
                problems.append(f"{part.name}: sets {name}, which {part.settings} does not read")
    return problems


def check_binds_all_interfaces(docs) -> list[str]:
    """Every part's host defaults to 127.0.0.1; in a pod it must listen on 0.0.0.0."""
    problems = []
    for part, w in part_workloads(docs):
        host = configured(part, w, docs, "host")
        if host != "0.0.0.0":
            problems.append(f"{part.name}: host is {host!r}, so probes and Services cannot reach it")
    return problems


def check_ports(docs) -> list[str]:
    """Container port = the port the settings default to (or are set to) = the
    Service's targetPort."""
    problems = []
    for part, w in part_workloads(docs):
        c = main_container(w)
        port_name = "http" if part.http else "grpc"
        want = int(configured(part, w, docs, "port"))
        got = container_port(c, port_name)
        if got != want:
            problems.append(f"{part.name}: container port {port_name} is {got}, settings say {want}")
        if part.name == "gateway":
            metrics = int(configured(part, w, docs, "metrics_port"))
            if container_port(c, "http-metrics") != metrics:
                problems.append(f"gateway: container port http-metrics is not metrics_port {metrics}")
        if not part.service:
            continue
        svc = named(docs, "Service", part.name)
        if svc is None:
            problems.append(f"{part.name}: no Service named {part.name}")
            continue
        if w not in workloads_behind(svc, docs):
            problems.append(f"{part.name}: Service selector does not select its Deployment")
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            if container_port(c, target) is None:
                problems.append(f"{part.name}: Service port {sp.get('name')} targets {target}, "
                                f"which the container does not expose")
        names = {sp.get("name"): sp for sp in svc["spec"]["ports"]}
        if port_name not in names:
            problems.append(f"{part.name}: Service has no port named {port_name}")
        elif container_port(c, names[port_name].get("targetPort")) != want:
            problems.append(f"{part.name}: Service port {port_name} does not reach port {want}")
    return problems


# URL schemes of servers a part connects to, and their default ports.
SCHEME_PORTS = {"http": 80, "https": 443, "nats": 4222, "postgresql": 5432, "postgres": 5432,
                "postgresql+psycopg2": 5432}


def _endpoint_settings(part: Part, w: dict, docs) -> list[tuple[str, str, int]]:
    """(setting, host, port) for every part or server a part's settings name: the
    `*_address` settings, and every setting whose value is a server URL (NATS,
    MLflow, PostgreSQL from a rendered Secret, an S3 endpoint)."""
    out = []
    fields = set(settings_env(part.name).values()) - set(part.unused)
    for field in sorted(fields):
        value = configured(part, w, docs, field)
        if field.endswith("_address"):
            host, _, port = str(value).rpartition(":")
            out.append((field, host, int(port)))
        elif isinstance(value, str) and "://" in value:
            url = urlsplit(value)
            if url.scheme in SCHEME_PORTS and url.hostname:
                out.append((field, url.hostname, url.port or SCHEME_PORTS[url.scheme]))
    return out


def _service_port(docs, host: str, port: int):
    svc = named(docs, "Service", host)
    if svc is None:
        return None, None
    for sp in svc["spec"]["ports"]:
        if sp["port"] == port:
            return svc, sp
    return svc, None


def check_addresses(docs) -> list[str]:
    """Each address a part's settings point to (KUBETUNE_DATA_ADDRESS=data:50061, the
    NATS and MLflow URLs) is a Service and port that exist, and for kubetune's parts
    it leads to the part the setting is named after, on that part's port."""
    problems = []
    for part, w in part_workloads(docs):
        for field, host, port in _endpoint_settings(part, w, docs):
            svc, sp = _service_port(docs, host, port)
            if svc is None:
                problems.append(f"{part.name}: {field} names Service {host!r}, which does not exist")
                continue
            if sp is None:
                problems.append(f"{part.name}: {field} uses port {port}, which Service {host} lacks")
                continue
            if not field.endswith("_address"):
                continue
            target_name = field.removesuffix("_address")
            target = PARTS.get(target_name)
            behind = workloads_behind(svc, docs)
            if target is None or not any(b["metadata"]["name"] == target.name for b in behind):
                problems.append(f"{part.name}: {field} leads to {host}, not to the {target_name} part")
                continue
            tw = next(b for b in behind if b["metadata"]["name"] == target.name)
            want = int(configured(target, tw, docs, "port"))
            if container_port(main_container(tw), sp.get("targetPort", sp["port"])) != want:
                problems.append(f"{part.name}: {field} reaches {target_name} on a port other than {want}")
    return problems


def _allows(policy: dict, from_labels: dict, port: int, target: dict) -> bool:
    for rule in policy["spec"].get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(container_port(target, p.get("port")) == port for p in ports):
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            # Same namespace: a pod selector alone. Namespace selectors are for
            # traffic from other namespaces (the ingress controller, Prometheus).
            if "podSelector" in peer and "namespaceSelector" not in peer:
                if selects(peer["podSelector"], from_labels):
                    return True
    return False


def check_network_policies(docs) -> list[str]:
    """Where a NetworkPolicy guards a Service's pods, every part whose settings name
    that Service is let in on its port; and every part's pods are guarded."""
    problems = []
    policies = of_kind(docs, "NetworkPolicy")
    for part, w in part_workloads(docs):
        guarding = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels(w))]
        if not guarding:
            problems.append(f"{part.name}: no NetworkPolicy selects its pods")
        for field, host, port in _endpoint_settings(part, w, docs):
            svc, sp = _service_port(docs, host, port)
            if sp is None:
                continue  # check_addresses reports it
            for tw in workloads_behind(svc, docs):
                target = main_container(tw)
                tport = container_port(target, sp.get("targetPort", sp["port"]))
                guards = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels(tw))
                          and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
                if guards and not any(_allows(g, pod_labels(w), tport, target) for g in guards):
                    problems.append(f"{part.name}: {field} -> {host}:{port}, but no NetworkPolicy "
                                    f"lets {part.name} reach {tw['metadata']['name']} on {tport}")
    return problems


def check_probes(docs) -> list[str]:
    """Readiness and liveness probes on the part's own port: gRPC health for gRPC
    parts, HTTP for the UI."""
    problems = []
    for part, w in part_workloads(docs):
        c = main_container(w)
        want = container_port(c, "http" if part.http else "grpc")
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is None:
                if kind != "startupProbe":
                    problems.append(f"{part.name}: no {kind}")
                continue
            if part.http:
                handler = probe.get("httpGet") or probe.get("tcpSocket")
                if handler is None or container_port(c, handler.get("port")) != want:
                    problems.append(f"{part.name}: {kind} does not check the http port {want}")
            elif "grpc" not in probe:
                problems.append(f"{part.name}: {kind} is not a gRPC health probe")
            elif probe["grpc"].get("port") != want:
                problems.append(f"{part.name}: {kind} probes port {probe['grpc'].get('port')}, "
                                f"the gRPC port is {want}")
    return problems


def check_pod_standards(docs, writable_root: bool = False) -> list[str]:
    """Every workload of kubetune (its parts and its infra): labels, probes, requests
    and limits, a locked-down securityContext, /tmp on an emptyDir, and a
    termination grace longer than the part's own stop grace. `writable_root`: the
    dev overlay, where Skaffold syncs files into kubetune's own containers."""
    problems = []
    for w in of_kind(docs, *WORKLOADS):
        name = w["metadata"]["name"]
        for where, labels in (("metadata", w["metadata"].get("labels", {})), ("pod", pod_labels(w))):
            for label in REQUIRED_LABELS:
                if label not in labels:
                    problems.append(f"{name}: {where} lacks label {label}")
            if labels.get("app.kubernetes.io/part-of") != "kubetune":
                problems.append(f"{name}: {where} is not part-of kubetune")
        spec = w["spec"]["template"]["spec"]
        pod_sc = spec.get("securityContext", {})
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            cname = f"{name}/{c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problems.append(f"{cname}: no {probe}")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        problems.append(f"{cname}: no {kind}.{r}")
            sc = c.get("securityContext", {})
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                problems.append(f"{cname}: runAsNonRoot is not set")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                problems.append(f"{cname}: capabilities do not drop ALL")
            own = name in PARTS
            if sc.get("readOnlyRootFilesystem") is not True and not (writable_root and own):
                problems.append(f"{cname}: readOnlyRootFilesystem is not true")
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
                problems.append(f"{cname}: /tmp is not an emptyDir")
        part = PARTS.get(name)
        if part and w["kind"] == "Deployment":
            grace = float(configured(part, w, docs, "grace_s"))
            term = spec.get("terminationGracePeriodSeconds", 30)
            if not term > grace:
                problems.append(f"{name}: terminationGracePeriodSeconds {term} is not longer "
                                f"than the server's stop grace {grace}")
            home = str(configured(part, w, docs, "home"))
            mounts = [m for m in main_container(w).get("volumeMounts", []) if m["mountPath"] == home]
            if not mounts:
                problems.append(f"{name}: the data home {home} is not a mounted volume")
    return problems


def check_service_port_names(docs) -> list[str]:
    problems = []
    for svc in of_kind(docs, "Service"):
        for sp in svc["spec"]["ports"]:
            pname = sp.get("name", "")
            if pname.split("-")[0] not in SERVICE_PORT_PREFIXES:
                problems.append(f"Service {svc['metadata']['name']}: port {sp['port']} is named "
                                f"{pname!r}, not grpc/http/tcp(-...)")
    return problems


def check_gateway_pdb(docs) -> list[str]:
    gateway = named(docs, "Deployment", "gateway")
    if gateway is None:
        return ["no gateway Deployment"]
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        if selects(pdb["spec"]["selector"], pod_labels(gateway)):
            return []
    return ["no PodDisruptionBudget covers the gateway"]


def check_secret_refs(docs, rendered_secrets_required: bool) -> list[str]:
    """Secrets are referenced by name and key; where the overlay generates them (dev),
    each referenced key exists. No ConfigMap holds something that looks secret."""
    problems = []
    secrets = {s["metadata"]["name"]: s for s in of_kind(docs, "Secret")}
    for w in of_kind(docs, *WORKLOADS, "Job"):
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for item in c.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if not ref:
                    continue
                secret = secrets.get(ref["name"])
                if secret is None:
                    if rendered_secrets_required:
                        problems.append(f"{w['metadata']['name']}: Secret {ref['name']} is not rendered")
                    continue
                keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
                if ref["key"] not in keys:
                    problems.append(f"{w['metadata']['name']}: Secret {ref['name']} has no key {ref['key']}")
    for cm in of_kind(docs, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            if any(word in key.upper() for word in ("PASSWORD", "SECRET", "TOKEN")) and not key.endswith("_FILE"):
                problems.append(f"ConfigMap {cm['metadata']['name']}: {key} belongs in a Secret")
            if "://" in str(value) and "@" in str(value).split("://", 1)[1].split("/", 1)[0]:
                problems.append(f"ConfigMap {cm['metadata']['name']}: {key} holds credentials")
    return problems


def images(docs) -> set[str]:
    out = set()
    for w in of_kind(docs, *WORKLOADS, "Job", "DaemonSet", "CronJob"):
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            out.add(c["image"])
    return out


def is_pinned_third_party(image: str) -> bool:
    """A public image, pinned: a registry path with an exact tag or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


ALL_CHECKS = {
    "env": check_env_known,
    "hosts": check_binds_all_interfaces,
    "ports": check_ports,
    "addresses": check_addresses,
    "network": check_network_policies,
    "probes": check_probes,
    "port-names": check_service_port_names,
    "gateway-pdb": check_gateway_pdb,
}
