"""No stranded trials, no lost trial ends: a worker that dies at any instant of a
trial's life (the crash-point test hook), even on its ticket's only delivery, or that
freezes until its trial is taken over, still leaves a study that completes with
exactly n_trials finished, none RUNNING, and every MLflow run ended."""

from __future__ import annotations

import os
import signal
import time

import mlflow
import pytest

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import mlflow_tags
from services.tuning.worker.crash_points import STEPS
from testing.platform import running_platform
from tests.reliability.faults import audit_mlflow, retrying, trial_runs, wait_for
from testing.studies import finished, small_spec

pytestmark = pytest.mark.slow
GRACE_S = 5


@pytest.fixture(scope="module")
def crashing(tmp_path_factory):
    home = tmp_path_factory.mktemp("stranded")
    env = {
        "KUBETUNE_WORKER_CRASH_AT": ",".join(STEPS),
        "KUBETUNE_WORKER_CRASH_FLAGS": str(home / "crash-flags"),
        # One delivery per ticket: no redelivery rescues a dead worker's trial, only the
        # heartbeat does (the route by which a study used to stay RUNNING for ever).
        "KUBETUNE_WORKER_MAX_DELIVERIES": "1",
        "KUBETUNE_WORKER_HEARTBEAT_S": "1",
        "KUBETUNE_TRIAL_GRACE_S": str(GRACE_S),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with running_platform(home / "home", workers=2, env=env) as platform:
        yield platform, home / "crash-flags"


def test_a_worker_dying_at_every_step_strands_no_trial(crashing, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    platform, flags = crashing
    ch, gw = platform.stub()
    spec = small_spec(trials=8, epochs=4, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=10)
    study = retrying(gw.CreateStudy, pb.CreateStudyRequest(spec=spec)).study
    done = wait_for(study.id, gw, lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=420)
    trials = retrying(gw.ListTrials, pb.ListTrialsRequest(study_id=study.id)).trials
    fired = sorted(p.name for p in flags.iterdir())
    print(f"crashed at {fired}; {done.counts}; " + "; ".join(f"{t.number} {pb.TrialState.Name(t.state)} {t.reason}"
                                                            for t in trials), flush=True)
    assert fired == sorted(STEPS), "every crash point fired once"
    assert finished(done) == 8 and done.counts.complete == 8
    assert not [t for t in trials if t.state == pb.TRIAL_STATE_RUNNING]
    lost = [t for t in trials if t.state == pb.TRIAL_STATE_FAIL]
    assert all("was lost" in t.reason for t in lost)
    # A worker that died once its end was decided (model logged and end published, or told)
    # lost nothing: that trial is COMPLETE, not run again. The other four deaths lost a trial.
    assert len(lost) <= 4 and len(trials) == 8 + len(lost)
    problems = audit_mlflow(platform.mlflow_uri, done, trials)
    assert not problems, problems
    client = mlflow.MlflowClient(platform.mlflow_uri)
    runs = {r.info.run_id: r for r in trial_runs(client, done)}
    for t in trials:
        if t.mlflow_run_id:
            expected = "FINISHED" if t.state == pb.TRIAL_STATE_COMPLETE else "FAILED"
            assert runs[t.mlflow_run_id].info.status == expected, (t.number, t.reason)
    ch.close()


def test_a_frozen_worker_whose_trial_was_taken_over_stops_it(crashing):
    platform, flags = crashing
    flags.mkdir(exist_ok=True)
    for step in STEPS:  # no crash here: only the freeze
        (flags / step).touch()
    ch, gw = platform.stub()
    # Long trials: the study must still be running when the test stops it (400 epochs
    # finished all three trials first once the worker's training loop got faster).
    spec = small_spec(trials=3, epochs=4000, parallel=1, pruner=pb.PRUNER_NONE, early_stopping_patience=4000)
    study = retrying(gw.CreateStudy, pb.CreateStudyRequest(spec=spec)).study
    client = mlflow.MlflowClient(platform.mlflow_uri)
    running = None
    deadline = time.monotonic() + 180
    # Training for a few epochs already (their curve reaches MLflow through events).
    while running is None or not running.mlflow_run_id or len(client.get_metric_history(running.mlflow_run_id, "val_loss")) < 2:
        assert time.monotonic() < deadline, "no trial got going"
        trials = gw.ListTrials(pb.ListTrialsRequest(study_id=study.id, states=[pb.TRIAL_STATE_RUNNING])).trials
        running = trials[0] if trials else None
        time.sleep(0.3)
    pid = platform.part(running.worker).proc.pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        # Frozen past the grace: the tuning service reclaims the trial, a new one starts.
        wait_for(study.id, gw, lambda s: s.counts.running == 1 and any(
            t.number != running.number for t in gw.ListTrials(pb.ListTrialsRequest(
                study_id=study.id, states=[pb.TRIAL_STATE_RUNNING])).trials), timeout=60)
    finally:
        os.killpg(pid, signal.SIGCONT)
    taken = next(t for t in gw.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials if t.number == running.number)
    assert taken.state == pb.TRIAL_STATE_FAIL and "no heartbeat" in taken.reason, taken.reason
    # Thawed, the worker stops the trial at its next epoch: it trains no further and
    # uploads no model into the failed run (it would have run to 4,000 epochs).
    time.sleep(3)
    history = client.get_metric_history(taken.mlflow_run_id, "val_loss")
    time.sleep(2)
    assert len(client.get_metric_history(taken.mlflow_run_id, "val_loss")) == len(history)
    assert platform.part(running.worker).proc.pid == pid, "the worker itself lives on"
    gw.StopStudy(pb.StopStudyRequest(study_id=study.id))
    after = wait_for(study.id, gw, lambda s: s.counts.running == 0, timeout=60)
    run = client.get_run(taken.mlflow_run_id)
    assert run.info.status == "FAILED"
    assert not client.list_artifacts(taken.mlflow_run_id, mlflow_tags.MODEL_ARTIFACT)
    assert after.state == pb.STUDY_STATE_STOPPED
    ch.close()
