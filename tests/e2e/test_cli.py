"""The CLI as a script would use it: subprocesses with --json, from data to predictions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SEED

pytestmark = pytest.mark.slow
KUBETUNE = str(Path(sys.executable).parent / "kubetune")


def cli(platform, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([KUBETUNE, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "KUBETUNE_GATEWAY": platform.gateway})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(result) -> dict:
    return json.loads(result.stdout)


def test_the_main_job_from_the_command_line(platform, tmp_path):
    registered = as_json(cli(platform, "data", "register", str(SEED), "--name", "cli-seed", "--json"))
    assert registered["version"]["name"] == "cli-seed" and registered["version"]["row_count"] == "100"
    listed = as_json(cli(platform, "data", "list", "--json"))
    assert "cli-seed" in [d["name"] for d in listed["datasets"]]

    study = as_json(cli(platform, "study", "create", "--dataset", "cli-seed", "--trials", "3", "--parallel", "2",
                        "--epochs", "4", "--lr", "1e-4..1e-1:log", "--layers", "1..2", "--units", "4..32:log",
                        "--batch-size", "16,32", "--pruner", "none", "--name", "cli-study", "--watch", "--json"))
    assert study["id"] == "cli-study" and study["state"] == "STUDY_STATE_COMPLETED"
    assert study["counts"]["complete"] == 3

    shown = as_json(cli(platform, "study", "show", "cli-study", "--json"))
    assert len(shown["trials"]) == 3
    runs = as_json(cli(platform, "runs", "list", "--study", "cli-study", "--sort", "best_val_loss", "--json"))["runs"]
    assert len(runs) == 3
    values = [r["metrics"]["best_val_loss"] for r in runs]
    assert values == sorted(values)
    compared = as_json(cli(platform, "runs", "compare", runs[0]["run_id"], runs[1]["run_id"], "--json"))
    assert compared["differing_params"]

    version = as_json(cli(platform, "model", "register", runs[0]["run_id"], "--name", "cli-model", "--alias", "champion", "--json"))
    assert version["version"] == "1"
    cli(platform, "model", "alias", "cli-model", "1", "challenger")
    model = as_json(cli(platform, "model", "show", "cli-model", "--json"))
    assert {"champion", "challenger"} <= set(model["versions"][0]["aliases"])

    rows = tmp_path / "rows.csv"
    pd.read_csv(SEED / "X.csv", header=None).iloc[:10, 1:].to_csv(rows, index=False, header=[f"x{i}" for i in range(5)])
    out = tmp_path / "pred.csv"
    cli(platform, "model", "predict", "cli-model@champion", "--csv", str(rows), "-o", str(out))
    with open(out) as f:
        predictions = list(csv.DictReader(f))
    assert len(predictions) == 10 and all(float(p["prediction"]) == float(p["prediction"]) for p in predictions)


def test_model_list_counts_versions(platform, gateway):
    """Issue 16.4: `model list` showed 0 versions for a model that had some."""
    from kubetune.registry.v1 import registry_pb2
    from kubetune.tuning.v1 import tuning_pb2 as pb
    from tests.studies import run_study, small_spec

    study = run_study(gateway, small_spec(trials=2, epochs=2, name="cli-versions", pruner=pb.PRUNER_NONE))
    runs = [t.mlflow_run_id for t in gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials]
    for run_id in runs:
        gateway.RegisterModel(registry_pb2.RegisterModelRequest(run_id=run_id, name="cli-versions"), timeout=120)
    listed = as_json(cli(platform, "model", "list", "--json"))
    (model,) = [m for m in listed["models"] if m["name"] == "cli-versions"]
    assert [v["version"] for v in model["versions"]] == ["2", "1"]
    assert sorted(v["run_id"] for v in model["versions"]) == sorted(runs)
    table = cli(platform, "model", "list").stdout.splitlines()
    assert any(line.split()[:2] == ["cli-versions", "2"] for line in table), table


def test_errors_are_one_line_and_non_zero(platform):
    bad_range = cli(platform, "study", "create", "--dataset", "sample", "--lr", "1e-1..1e-5", check=False)
    assert bad_range.returncode != 0 and bad_range.stderr.count("\n") == 1
    assert "learning_rate" in bad_range.stderr and "greater than max" in bad_range.stderr
    missing = cli(platform, "data", "show", "nope", check=False)
    assert missing.returncode != 0 and missing.stderr.startswith("kubetune: not found")
    nowhere = subprocess.run([KUBETUNE, "study", "list", "--gateway", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert nowhere.returncode != 0 and "cannot reach the gateway" in nowhere.stderr
