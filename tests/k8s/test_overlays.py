"""Every overlay renders with `kubectl kustomize` and validates with
kubernetes-validate --strict against Kubernetes 1.30 and the newest schema it ships."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest

from tests.k8s.parts import K8S, OVERLAYS, PARTS, render

VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
PIECES = [*PARTS, "infra"]
# Custom resources kubernetes-validate has no schema for; tests below check their shape.
CUSTOM = {("keda.sh/v1alpha1", "ScaledObject")}


def validate(docs, version):
    problems = []
    for d in docs:
        if (d["apiVersion"], d["kind"]) in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            problems.append(f"{d['kind']}/{d['metadata']['name']}: {where}: {e.message}")
    return problems


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates(overlay, version):
    docs = render(K8S / "overlays" / overlay)
    assert docs
    assert validate(docs, version) == []


def test_validation_catches_a_broken_manifest():
    docs = render(K8S / "overlays" / "dev")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["port"] = 80  # strict: a field Kubernetes does not know
    problems = validate(docs, VERSIONS[0])
    assert len(problems) == 2, problems
    assert "containerPort" in problems[0] or "containerPort" in problems[1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_its_parts(overlay):
    """`kubectl apply -k overlays/<env>` deploys what Skaffold deploys config by
    config, and no two configs deploy the same object (they would fight over it)."""
    whole = render(K8S / "overlays" / overlay)
    seen = {}
    for piece in PIECES:
        for d in render(K8S / "overlays" / overlay / piece):
            key = (d["kind"], d["metadata"]["name"])
            assert key not in seen, f"{key} is deployed by both {seen[key]} and {piece}"
            seen[key] = piece
    assert sorted(seen) == sorted((d["kind"], d["metadata"]["name"]) for d in whole)


@pytest.mark.parametrize("piece", PIECES)
def test_base_renders(piece):
    assert render(K8S / "base" / piece)


def test_dev_has_minio_and_prod_does_not():
    names = lambda o: {d["metadata"]["name"] for d in render(K8S / "overlays" / o)}  # noqa: E731
    assert "minio" in names("dev")
    assert "minio" not in names("prod")


def test_dev_runs_one_replica_each():
    for d in render(K8S / "overlays" / "dev"):
        if d["kind"] in ("Deployment", "StatefulSet"):
            assert d["spec"].get("replicas", 1) == 1, d["metadata"]["name"]


def test_prod_replicates_and_guards_the_services():
    docs = render(K8S / "overlays" / "prod")
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] in PARTS:
            assert d["spec"]["replicas"] >= 2, d["metadata"]["name"]
            if d["metadata"]["name"] != "tuning-worker":
                assert d["metadata"]["name"] in pdbs
    assert not [d for d in docs if d["kind"] == "Secret"], "prod Secrets are created by hand"


def prod_workers_with(component: str, tmp_path) -> list[dict]:
    """The prod tuning-worker with an optional component added, rendered and validated."""
    up = os.path.relpath(K8S, tmp_path)  # kustomize takes relative folders only
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {up}/overlays/prod/tuning-worker\n"
        f"components:\n  - {up}/components/{component}\n")
    docs = render(tmp_path)
    assert validate(docs, VERSIONS[-1]) == []
    return docs


def test_keda_component_scales_the_workers(tmp_path):
    docs = prod_workers_with("keda-workers", tmp_path)
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tuning-worker"
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "tuning-worker" for d in docs)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert (meta["stream"], meta["consumer"], meta["account"]) == ("KUBETUNE_WORK", "workers", "$G")
    assert meta["natsServerMonitoringEndpoint"].split(".")[0] == "nats"
    assert meta["natsServerMonitoringEndpoint"].endswith(":8222")


def test_gpu_component_gives_each_worker_a_gpu(tmp_path):
    docs = prod_workers_with("gpu-workers", tmp_path)
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tuning-worker")
    pod = worker["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and limits["cpu"] == "4"  # the overlay's limits kept
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tuning-worker-config")
    assert config["data"]["KUBETUNE_WORKER_DEVICE"] == "cuda"
