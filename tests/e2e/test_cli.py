"""The CLI as a script would use it: subprocesses with --json, from data to predictions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kubetune.tuning.v1 import tuning_pb2 as pb
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
    runs = as_json(cli(platform, "runs", "list", "--study", "cli-study", "--sort", "val_loss", "--json"))["runs"]
    assert len(runs) == 3
    values = [r["metrics"]["val_loss"] for r in runs]
    assert values == sorted(values)
    # The saved epoch's, the value Optuna got: not the last epoch's.
    by_run = {t["mlflow_run_id"]: t["values"][0] for t in shown["trials"]}
    assert [by_run[r["run_id"]] for r in runs] == pytest.approx(values)
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
    from testing.studies import run_study, small_spec

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
    # Refused by the service's validate-only call, in the CLI's flag terms, before anything is made.
    assert bad_range.stderr.startswith("kubetune: invalid argument: --lr: min 0.1 is greater than max 1e-05"), bad_range.stderr
    missing = cli(platform, "data", "show", "nope", check=False)
    assert missing.returncode != 0 and missing.stderr.startswith("kubetune: not found")
    nowhere = subprocess.run([KUBETUNE, "study", "list", "--gateway", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert nowhere.returncode != 0 and "cannot reach the gateway" in nowhere.stderr


def test_a_study_without_ranges_searches_the_default_space_and_learns_the_demo(platform):
    out = cli(platform, "study", "create", "--dataset", "diabetes", "--trials", "4", "--epochs", "40",
              "--pruner", "none", "--seed", "11", "--name", "cli-default-space", "--watch").stdout
    lines = [line.split() for line in out.splitlines()]
    assert out.startswith("searching 4 hyperparameters (the default space; range flags such as --lr choose others):\n")
    for row in (["learning_rate", "1e-05..0.1:log", "--lr"], ["dropout", "0.2..0.4", "--dropout"],
                ["n_layers", "1..5", "--layers"], ["units", "4..128:log", "--units"]):
        assert row in lines, out
    assert "fixed: weight_decay 0, momentum 0.9, batch_size 32, activation relu, optimizer adam" in out
    assert "created study cli-default-space: 4 trials on diabetes@" in out and ", seed 11" in out

    shown = as_json(cli(platform, "study", "show", "cli-default-space", "--json"))
    spec = shown["study"]["spec"]
    assert [p["name"] for p in spec["search_space"]] == ["learning_rate", "dropout", "n_layers", "units"]
    # Four different configurations, not four copies of the defaults.
    assert len({t["params"]["learning_rate"] for t in shown["trials"]}) == 4
    # The demo has signal: the best trial beats predicting the mean (a validation MSE of 1
    # on the standardised target), which `sample` never does.
    assert shown["study"]["state"] == "STUDY_STATE_COMPLETED" and shown["study"]["best_values"][0] < 1


def test_each_study_draws_its_seed_and_seed_repeats_one(platform):
    def first_trial(*extra):
        done = as_json(cli(platform, "study", "create", "--dataset", "diabetes", "--trials", "1", "--parallel", "1",
                           "--epochs", "1", "--pruner", "none", "--watch", "--json", *extra))
        shown = as_json(cli(platform, "study", "show", done["id"], "--json"))
        return done["id"], int(shown["study"]["spec"]["seed"]), shown["trials"][0]["params"]

    (_, seed_a, params_a), (_, seed_b, params_b) = first_trial(), first_trial()
    assert seed_a != seed_b and params_a != params_b and 1 <= min(seed_a, seed_b)
    (study_c, seed_c, params_c), (_, seed_d, params_d) = first_trial("--seed", "7"), first_trial("--seed", "7")
    assert seed_c == seed_d == 7 and params_c == params_d
    assert "seed 7" in cli(platform, "study", "show", study_c).stdout


def test_json_prints_every_field_zeros_included(platform):
    done = as_json(cli(platform, "study", "create", "--dataset", "diabetes", "--trials", "1", "--epochs", "1",
                       "--pruner", "none", "--watch", "--json"))
    assert done["counts"]["fail"] == 0 and done["counts"]["queued"] == 0 and done["spec"]["timeout_seconds"] == 0
    trial = as_json(cli(platform, "study", "show", done["id"], "--json"))["trials"][0]
    assert trial["number"] == 0 and trial["reason"] == "" and trial["state"] == "TRIAL_STATE_COMPLETE"


def test_a_dry_run_is_checked_by_the_service_and_makes_nothing(platform):
    out = cli(platform, "study", "create", "--dataset", "sample", "--name", "cli-dry-run", "--layers", "1..3",
              "--dry-run").stdout
    assert "would create study cli-dry-run: 20 trials on sample@" in out and "n_layers" in out, out
    assert "cli-dry-run" not in cli(platform, "study", "list").stdout
    refused = cli(platform, "study", "create", "--dataset", "sample", "--sampler", "cmaes", "--optimizer", "adam,sgd",
                  "--dry-run", check=False)
    assert refused.returncode != 0 and "CMA-ES" in refused.stderr, refused.stderr


def test_numeric_flags_follow_one_rule(platform):
    create = ["study", "create", "--dataset", "diabetes"]
    for args in ([*create, "--epochs", "0"], [*create, "--parallel", "0"], [*create, "--trials", "0"],
                 [*create, "--patience", "0"], [*create, "--seed", "0"], ["runs", "list", "--limit", "0"]):
        refused = cli(platform, *args, check=False)
        assert refused.returncode == 2 and "must be 1 or more (got 0); leave the flag out for its default" in refused.stderr, args
    refused = cli(platform, *create, "--timeout", "-1", check=False)
    assert refused.returncode == 2 and "must be 0 (no limit) or a positive number of seconds" in refused.stderr
    refused = cli(platform, "up", "--gateway-port", "0", check=False)
    assert refused.returncode == 2 and "must be 1 or more" in refused.stderr
    helped = " ".join(cli(platform, "study", "create", "--help").stdout.split())
    for text in ("trials to run (default 20)", "trials at once (default 2)", "epochs per trial (default 20)",
                 "before a trial stops (default 5)", "(default 0: none)", "default: one drawn per study"):
        assert text in helped, text


def test_patience_is_what_help_says(platform):
    """Leaving --patience out stops a trial 5 epochs after its best, as --help says."""
    ch, gw = platform.stub()

    def epochs_after_best(*extra) -> tuple[int, int]:
        # `sample` has no signal: the validation loss bottoms out early, so early stopping ends the trial.
        done = as_json(cli(platform, "study", "create", "--dataset", "sample", "--trials", "1", "--epochs", "300",
                           "--lr", "0.01", "--units", "64", "--pruner", "none", "--watch", "--json", *extra))
        curve = list(gw.ListTrials(pb.ListTrialsRequest(study_id=done["id"], with_curves=True)).trials[0].val_loss_curve)
        return len(curve), len(curve) - 1 - int(np.argmin(curve))

    with ch:
        epochs, after_best = epochs_after_best()
        assert epochs < 300 and after_best == 5
        epochs, after_best = epochs_after_best("--patience", "3")
        assert epochs < 300 and after_best == 3


def test_errors_name_the_flags_the_user_typed(platform, tmp_path):
    table = tmp_path / "prices.csv"
    table.write_text("a,b,price\n1,2,3\n4,,6\n7,8,9\n")
    no_target = cli(platform, "data", "register", str(table), "--name", "prices", check=False)
    assert no_target.returncode == 1 and "--target" in no_target.stderr and "options." not in no_target.stderr
    holes = cli(platform, "data", "register", str(table), "--name", "prices", "--target", "price", "--missing", "refuse",
                check=False)
    assert holes.returncode == 1 and "set --missing to impute or drop" in holes.stderr and "options." not in holes.stderr
    wrong = cli(platform, "study", "create", "--dataset", "diabetes", "--objective", "val_accuracy", check=False)
    assert wrong.stderr == "kubetune: invalid argument: --objective: val_accuracy needs a classification dataset\n"


def test_piping_into_head_prints_no_traceback(platform):
    # `head -n 0` exits before the CLI writes, so every write meets a closed pipe.
    piped = subprocess.run(["bash", "-c", f"{KUBETUNE} data show diabetes --json | head -n 0; exit ${{PIPESTATUS[0]}}"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "KUBETUNE_GATEWAY": platform.gateway})
    assert piped.stderr == "" and piped.returncode == 141
