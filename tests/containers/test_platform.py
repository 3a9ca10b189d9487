"""The whole platform run from its images on one podman network, each container as the
rendered dev overlay specifies it (pods.py; departures in substitutes.py only): a dataset
uploaded, a 6-trial study on 2 worker containers (one killed mid-study), the best model
registered and a prediction served, all through the gateway container; the UI container's
page in Chromium; every process non-root on a read-only root filesystem."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import grpc
import pytest

from kubetune.data.v1 import data_pb2
from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.registry.v1 import registry_pb2
from kubetune.tracking.v1 import tracking_pb2
from kubetune.tuning.v1 import tuning_pb2 as pb
from tests.conftest import SEED
from tests.containers.pods import Cluster, Manifests
from tests.k8s.parts import K8S, render
from testing.browser import sign_in
from testing.servers import free_port
from testing.studies import finished, small_spec, wait_for_mlflow, wait_for_study

# The first test to ask for the images builds the missing ones: minutes on a cold machine.
pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(3600)]

WORKERS = 2  # the dev overlay runs one; the test scales it as `kubectl scale` would
# Started in this order, each group ready (its readiness probe passing) before the next.
START = [["postgres", "nats", "minio"], ["mlflow"], ["data", "tracking", "tuning", "registry"],
         ["tuning-worker"], ["gateway"], ["ui"]]
STUDY_TIMEOUT_S = 900  # 2 cores shared with the rest of the suite; a killed worker's ticket waits out its ack


@dataclass
class Running:
    cluster: Cluster
    gateway: str
    ui_url: str
    token: str

    def stub(self):
        return Authed(gateway_pb2_grpc.GatewayStub(grpc.insecure_channel(self.gateway)), self.token)


class Authed:
    """The gateway stub, every call with an admin's token (the dev overlay's Secret)."""

    def __init__(self, stub, token: str):
        self._stub, self._md = stub, (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._md, **kw)


@pytest.fixture(scope="module")
def platform(engine, images, tmp_path_factory):
    manifests = Manifests(render(K8S / "overlays" / "dev"))
    cluster = Cluster(engine, manifests, images, f"kt{os.getpid()}", tmp_path_factory.mktemp("pods"))
    gateway_port, ui_port = free_port(), free_port()
    publish = {"gateway": {50051: gateway_port}, "ui": {8080: ui_port}}
    try:
        cluster.create_network()
        for group in START:
            pods = []
            for name in group:
                for i in range(WORKERS if name == "tuning-worker" else 1):
                    pods.append(cluster.start(name, i, publish.get(name)).pod)
            cluster.wait_ready(pods)
            if "minio" in group:  # its Job makes the buckets once S3 answers
                cluster.run_job("minio-buckets")
        # An admin's token from the gateway's tokens Secret (`token role` lines).
        lines = manifests.secrets["kubetune-gateway-tokens"]["tokens"].splitlines()
        token = next(line.rsplit(" ", 1)[0].strip() for line in lines if line.strip().endswith(" admin"))
        yield Running(cluster, f"127.0.0.1:{gateway_port}", f"http://127.0.0.1:{ui_port}", token)
    finally:
        if os.environ.get("KUBETUNE_KEEP_CONTAINERS") != "1":
            cluster.teardown()


def seed_table() -> bytes:
    """The seed's X.csv and y.csv as one table with a named target column."""
    xs = (SEED / "X.csv").read_text().split()
    ys = (SEED / "y.csv").read_text().split()
    width = len(xs[0].split(",")) - 1
    rows = [",".join([f"x{i}" for i in range(width)] + ["y"])]
    rows += [",".join(x.split(",")[1:] + [y]) for x, y in zip(xs, ys)]
    return ("\n".join(rows) + "\n").encode()


def test_dataset_study_model_prediction_through_the_gateway_container(platform):
    gw = platform.stub()
    header = data_pb2.UploadHeader(name="containers-seed", filename="seed.csv",
                                   options=data_pb2.IngestOptions(target_column="y"))
    uploaded = gw.UploadDataset(iter([data_pb2.UploadDatasetRequest(header=header),
                                      data_pb2.UploadDatasetRequest(chunk=seed_table())]), timeout=300)
    assert uploaded.version.row_count == len((SEED / "y.csv").read_text().split())

    spec = small_spec(trials=6, epochs=3, parallel=WORKERS, dataset="containers-seed")
    study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec), timeout=60).study
    # Mid-study: once a trial has finished, one worker container dies the hard way.
    wait_for_study(gw, study.id, lambda s: finished(s) >= 1, timeout=STUDY_TIMEOUT_S)
    platform.cluster.kill("tuning-worker-1")
    study = wait_for_study(gw, study.id, lambda s: s.state == pb.STUDY_STATE_COMPLETED,
                           timeout=STUDY_TIMEOUT_S, every=2)
    assert finished(study) == 6 and study.counts.complete >= 1, study.counts
    wait_for_mlflow(gw, study, timeout=120)
    runs = gw.ListRuns(tracking_pb2.ListRunsRequest(study_id=study.id, trials_only=True,
                                                    page_size=100), timeout=60).runs
    assert len(runs) >= 6
    assert [r.run_id for r in runs if r.status == tracking_pb2.RUN_STATUS_RUNNING] == []

    version = gw.RegisterModel(registry_pb2.RegisterModelRequest(
        run_id=study.best_trial.mlflow_run_id, name="containers-model", alias="champion"), timeout=120).version
    assert version.version
    row = registry_pb2.FeatureRow(values=[float(v) for v in (SEED / "X.csv").read_text().split()[0].split(",")[1:]])
    predicted = gw.Predict(registry_pb2.PredictRequest(model="containers-model@champion", rows=[row]),
                           timeout=300)
    assert len(predicted.predictions) == 1 and math.isfinite(predicted.predictions[0].value)


async def test_ui_container_page_in_chromium(platform, page):
    await sign_in(page, platform.ui_url, platform.token)
    await page.get_by_text("all systems serving").wait_for(timeout=60_000)
    assert page.errors == []


def test_every_process_is_non_root_on_a_read_only_root(platform):
    cluster = platform.cluster
    for pod, c in cluster.containers.items():
        if not cluster.running(pod):
            continue  # the killed worker
        users = cluster.podman("top", c.name, "huser", "user").stdout.split("\n")[1:]
        uids = [line.split()[0] for line in users if line.strip()]
        assert uids and "0" not in uids and "root" not in uids, f"{pod}: {users}"
        # Even root inside the container cannot write the root filesystem.
        done = cluster.podman("exec", "--user", "0", c.name, "sh", "-c", "touch /usr/kubetune-probe",
                              check=False)
        assert done.returncode != 0 and re.search("Read-only file system", done.stderr), f"{pod}: {done}"
