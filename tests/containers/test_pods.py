"""The podman arguments pods.py derives from the rendered dev overlay (no engine needed):
what a manifest says is what the container gets, and only substitutes.py departs from it."""

from __future__ import annotations

import pytest

from tests.containers.pods import Cluster, Manifests, expand
from tests.containers.substitutes import SUBSTITUTES, image_name
from tests.k8s.parts import K8S, PARTS, render


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    images = {p.image: f"{p.image}:test" for p in PARTS.values()} | {"kubetune-mlflow": "kubetune-mlflow:test"}
    images |= {image_name(s.target): f"{image_name(s.target)}:test" for s in SUBSTITUTES.values()}
    return Cluster("podman", Manifests(render(K8S / "overlays" / "dev")), images, "kt", tmp_path_factory.mktemp("p"))


def pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_a_part_runs_as_its_manifest_says(cluster):
    args = cluster.container_args(cluster.m.workloads["data"], 0, {}).run_args
    assert pairs(args, "--user") == ["10001:10001"] and "--cap-drop=all" in args
    assert "--read-only" in args and "--read-only-tmpfs=false" in args
    assert pairs(args, "--network-alias") == ["data"] and args[-1] == "kubetune-data:test"
    env = dict(e.split("=", 1) for e in pairs(args, "--env"))
    assert env["KUBETUNE_DATA_CATALOG_URL"] == "postgresql://kubetune:kubetune-dev-only@postgres:5432/catalog"
    assert env["KUBETUNE_NATS_URL"] == "nats://nats:4222" and env["AWS_ACCESS_KEY_ID"] == "kubetune-dev"
    assert sorted(t.split(":")[0] for t in pairs(args, "--tmpfs")) == ["/tmp", "/var/lib/kubetune"]


def test_stand_ins_keep_the_manifest_flags_and_volumes(cluster):
    nats = cluster.container_args(cluster.m.workloads["nats"], 0, {}).run_args
    assert nats[-5:] == ["kubetune-test-nats:test", "--config", "/etc/nats/nats.conf", "--name", "nats-0"]
    assert "kt-nats-0-data:/data:U" in pairs(nats, "--volume") and pairs(nats, "--user") == ["1000:1000"]
    config = [v for v in pairs(nats, "--volume") if v.endswith(":/etc/nats:ro")]
    assert config and "jetstream" in (cluster.workdir / "nats-0" / "config" / "nats.conf").read_text()
    minio = cluster.container_args(cluster.m.workloads["minio"], 0, {9000: 19000}).run_args
    assert pairs(minio, "--entrypoint") == ['["moto_server"]'] and minio[-4:] == ["-H", "0.0.0.0", "-p", "9000"]
    assert pairs(minio, "--publish") == ["127.0.0.1:19000:9000"]


def test_mlflow_args_expand_from_its_environment(cluster):
    args = cluster.container_args(cluster.m.workloads["mlflow"], 0, {}).run_args
    assert "--backend-store-uri=postgresql://kubetune:kubetune-dev-only@postgres:5432/mlflow" in args
    assert expand("$(A)-$(B)", {"A": "x"}) == "x-$(B)"


def test_a_port_the_manifest_does_not_expose_is_refused(cluster):
    with pytest.raises(AssertionError, match="exposes no port 1234"):
        cluster.container_args(cluster.m.workloads["gateway"], 0, {1234: 5678})
