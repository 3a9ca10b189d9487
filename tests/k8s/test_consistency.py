"""The manifests agree with the Python settings and with each other; every check
also fails on a deliberately broken copy, so a check that passes is not blind."""

from __future__ import annotations

import pytest

from tests.k8s import manifest_checks as m
from tests.k8s.parts import K8S, OVERLAYS, render


def overlay(name="dev"):
    return render(K8S / "overlays" / name)


@pytest.mark.parametrize("check", sorted(m.ALL_CHECKS))
@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_passes(name, check):
    assert m.ALL_CHECKS[check](overlay(name)) == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_workloads_meet_the_pod_standard(name):
    assert m.check_pod_standards(overlay(name), writable_root=name == "dev") == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_secrets_are_referenced_not_inlined(name):
    # dev generates its Secrets, so their keys are checked too; prod's are made by hand.
    assert m.check_secret_refs(overlay(name), rendered_secrets_required=name == "dev") == []


def test_only_dev_relaxes_the_read_only_root():
    assert m.check_pod_standards(overlay("dev"), writable_root=False)
    assert m.check_pod_standards(overlay("prod"), writable_root=False) == []


# ---------------------------------------------------------------- broken copies


def container(docs, name):
    return m.main_container(m.named(docs, "Deployment", name))


def configmap(docs, name):
    return m.named(docs, "ConfigMap", name)["data"]


def set_env(docs, part, name, value):
    container(docs, part).setdefault("env", []).append({"name": name, "value": value})


def pod(docs, name, kind="Deployment"):
    return m.named(docs, kind, name)["spec"]["template"]["spec"]


def rename_configmap_key(docs):
    data = configmap(docs, "data-config")
    data["KUBETUNE_DATA_S3_ENDPIONT_URL"] = data.pop("KUBETUNE_DATA_S3_ENDPOINT_URL")


def probe_port(docs):
    container(docs, "tracking")["livenessProbe"]["grpc"]["port"] = 50064


def drop_caps(docs):
    container(docs, "registry")["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def block_tuning(docs):
    policy = m.named(docs, "NetworkPolicy", "data")
    policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"].remove("tuning")


BROKEN = {
    # check name -> (mutation, words the problem must contain)
    "env: a typo in a ConfigMap key": (
        "env", rename_configmap_key, "KUBETUNE_DATA_S3_ENDPIONT_URL"),
    "env: a variable nobody reads": (
        "env", lambda d: set_env(d, "gateway", "KUBETUNE_GATEWAY_TOKEN", "x"), "KUBETUNE_GATEWAY_TOKEN"),
    "env: a ConfigMap that is not there": (
        "env", lambda d: container(d, "ui")["envFrom"].append({"configMapRef": {"name": "ui-extra"}}),
        "ui-extra"),
    "hosts: the default 127.0.0.1": (
        "hosts", lambda d: configmap(d, "tuning-config").pop("KUBETUNE_TUNING_HOST"), "127.0.0.1"),
    "ports: a container port off by one": (
        "ports", lambda d: container(d, "data")["ports"].__setitem__(
            0, {"name": "grpc", "containerPort": 50060}), "50060"),
    "ports: a Service targeting a port nobody exposes": (
        "ports", lambda d: m.named(d, "Service", "registry")["spec"]["ports"][0].__setitem__(
            "targetPort", "grcp"), "grcp"),
    "ports: a Service selecting nothing": (
        "ports", lambda d: m.named(d, "Service", "tuning")["spec"]["selector"].__setitem__(
            "app.kubernetes.io/name", "tunning"), "selector"),
    "ports: settings moved, manifest did not": (
        "ports", lambda d: configmap(d, "gateway-config").__setitem__("KUBETUNE_GATEWAY_PORT", "50052"),
        "50052"),
    "addresses: a Service name typo": (
        "addresses", lambda d: configmap(d, "gateway-config").__setitem__(
            "KUBETUNE_REGISTRY_ADDRESS", "registy:50064"), "registy"),
    "addresses: the wrong port": (
        "addresses", lambda d: configmap(d, "tuning-config").__setitem__(
            "KUBETUNE_DATA_ADDRESS", "data:50062"), "50062"),
    "addresses: another part's Service": (
        "addresses", lambda d: configmap(d, "gateway-config").__setitem__(
            "KUBETUNE_DATA_ADDRESS", "tracking:50063"), "not to the data part"),
    "addresses: an address left at its 127.0.0.1 default": (
        "addresses", lambda d: configmap(d, "tuning-config").pop("KUBETUNE_TRACKING_ADDRESS"),
        "'127.0.0.1'"),
    "addresses: the NATS URL": (
        "addresses", lambda d: configmap(d, "kubetune-shared").__setitem__(
            "KUBETUNE_NATS_URL", "nats://nats:4322"), "4322"),
    "addresses: the MLflow URI": (
        "addresses", lambda d: configmap(d, "tracking-config").__setitem__(
            "KUBETUNE_MLFLOW_URI", "http://mlfow:5000"), "mlfow"),
    "network: a caller the policy shuts out": (
        "network", block_tuning, "tuning: data_address"),
    "network: MLflow closed to the worker": (
        "network", lambda d: m.named(d, "NetworkPolicy", "mlflow")["spec"]["ingress"][0]["from"][0][
            "podSelector"]["matchExpressions"][1]["values"].remove("tuning-worker"), "mlflow_uri"),
    "network: an unguarded part": (
        "network", lambda d: d.remove(m.named(d, "NetworkPolicy", "ui")), "ui: no NetworkPolicy"),
    "probes: the wrong port": ("probes", probe_port, "50064"),
    "probes: an HTTP probe on a gRPC part": (
        "probes", lambda d: container(d, "data").__setitem__(
            "readinessProbe", {"httpGet": {"path": "/", "port": 50061}}), "not a gRPC"),
    "probes: none": ("probes", lambda d: container(d, "gateway").pop("livenessProbe"), "no livenessProbe"),
    "port-names: an unnamed protocol": (
        "port-names", lambda d: m.named(d, "Service", "data")["spec"]["ports"][0].__setitem__(
            "name", "api"), "'api'"),
    "gateway-pdb: none": (
        "gateway-pdb", lambda d: d.remove(m.named(d, "PodDisruptionBudget", "gateway")), "gateway"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copy_fails(case):
    check, mutate, words = BROKEN[case]
    docs = overlay("prod")
    assert m.ALL_CHECKS[check](docs) == []
    mutate(docs)
    problems = m.ALL_CHECKS[check](docs)
    assert problems, f"{check} did not notice: {case}"
    assert any(words in p for p in problems), problems


POD_BROKEN = {
    "a missing label": (
        lambda d: m.named(d, "Deployment", "data")["spec"]["template"]["metadata"]["labels"].pop(
            "app.kubernetes.io/component"), "app.kubernetes.io/component"),
    "no limits": (lambda d: container(d, "ui")["resources"].pop("limits"), "limits.cpu"),
    "root allowed": (lambda d: pod(d, "gateway")["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "writable root": (
        lambda d: container(d, "tuning")["securityContext"].__setitem__("readOnlyRootFilesystem", False),
        "readOnlyRootFilesystem"),
    "capabilities kept": (drop_caps, "drop ALL"),
    "escalation allowed": (
        lambda d: container(d, "data")["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation"),
    "no /tmp": (
        lambda d: container(d, "tracking").__setitem__(
            "volumeMounts", [v for v in container(d, "tracking")["volumeMounts"] if v["mountPath"] != "/tmp"]),
        "/tmp"),
    "grace too short": (
        lambda d: pod(d, "tuning-worker").__setitem__("terminationGracePeriodSeconds", 5), "stop grace"),
    "grace raised in settings": (
        lambda d: configmap(d, "data-config").__setitem__("KUBETUNE_DATA_GRACE_S", "45"), "45"),
    "home not a volume": (
        lambda d: configmap(d, "kubetune-shared").__setitem__("KUBETUNE_HOME", "/home/kubetune"),
        "/home/kubetune"),
    "infra without probes": (
        lambda d: m.main_container(m.named(d, "StatefulSet", "nats")).pop("readinessProbe"), "nats/nats"),
}


@pytest.mark.parametrize("case", sorted(POD_BROKEN))
def test_broken_pod_fails_the_standard(case):
    mutate, words = POD_BROKEN[case]
    docs = overlay("prod")
    mutate(docs)
    problems = m.check_pod_standards(docs)
    assert any(words in p for p in problems), problems


def test_secret_in_a_configmap_fails():
    docs = overlay("prod")
    configmap(docs, "tuning-config")["KUBETUNE_TUNING_STORAGE_URL"] = "postgresql://u:pw@postgres/optuna"
    assert m.check_secret_refs(docs, rendered_secrets_required=False)


def test_missing_secret_key_fails():
    docs = overlay("dev")
    m.named(docs, "Secret", "kubetune-postgres")["data"].pop("optuna-url")
    problems = m.check_secret_refs(docs, rendered_secrets_required=True)
    assert any("optuna-url" in p for p in problems), problems


def test_secret_urls_are_checked_where_rendered():
    """dev renders its Secrets, so database URLs are followed too: PostgreSQL closed
    to tracking (which reads MLflow's tables) fails."""
    docs = overlay("dev")
    assert m.check_network_policies(docs) == []
    m.named(docs, "NetworkPolicy", "postgres")["spec"]["ingress"][0]["from"][0]["podSelector"][
        "matchExpressions"][1]["values"].remove("tracking")
    problems = m.check_network_policies(docs)
    assert any("tracking: backend_store_uri" in p for p in problems), problems
