"""Guarantee 2: graceful shutdown. SIGTERM to `kubetune up` in the middle of a study,
then `kubetune up` again on the same home and ports: the study resumes (the tuning
service re-sends untaken tickets; trials cut off by the stop are FAIL+abandoned and
their tickets run again) and finishes; nothing finished before the stop is redone,
changed or lost, in Optuna or in MLflow."""

from __future__ import annotations

import signal
import subprocess

import grpc
import pytest

from kubetune.gateway.v1 import gateway_pb2_grpc
from kubetune.tuning.v1 import tuning_pb2 as pb
from kubetune_common.config import PORTS
from testing.servers import free_port
from testing.studies import finished, small_spec
from tests.e2e.test_up import read_until, start_up
from tests.reliability.faults import audit_mlflow, retrying, wait_for

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 8, 300
FINISHED = (pb.TRIAL_STATE_COMPLETE, pb.TRIAL_STATE_PRUNED, pb.TRIAL_STATE_FAIL)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    return out


def kept(trial: pb.Trial) -> tuple:
    """What must not change about a finished trial."""
    return trial.state, tuple(trial.values), trial.mlflow_run_id, trial.epochs_done, trial.reason


def test_sigterm_mid_study_then_up_again_resumes_and_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBETUNE_WORKER_ACK_WAIT_S", "6")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    ports = {name: free_port() for name in PORTS if name != "worker"} | {"worker": free_port()}
    gateway = f"127.0.0.1:{ports['gateway']}"
    home = tmp_path / "home"

    proc = start_up(home, ports, workers=2)
    try:
        read_until(proc, "Ctrl-C stops everything")
        with grpc.insecure_channel(gateway) as ch:
            gw = gateway_pb2_grpc.GatewayStub(ch)
            spec = small_spec(trials=TRIALS, epochs=EPOCHS, parallel=2, pruner=pb.PRUNER_NONE,
                              early_stopping_patience=EPOCHS)
            study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
            wait_for(study.id, gw, lambda s: finished(s) >= 2 and s.counts.running >= 1)
            running = {t.number for t in gw.ListTrials(pb.ListTrialsRequest(
                study_id=study.id, states=[pb.TRIAL_STATE_RUNNING])).trials}
    finally:
        out = stop(proc) if proc.poll() is None else proc.stdout.read()
    assert "did not stop" not in out, f"a part had to be killed at shutdown:\n{out}"

    proc = start_up(home, ports, workers=2)
    try:
        read_until(proc, "Ctrl-C stops everything")
        with grpc.insecure_channel(gateway) as ch:
            gw = gateway_pb2_grpc.GatewayStub(ch)
            at_restart = retrying(gw.ListTrials, pb.ListTrialsRequest(study_id=study.id)).trials
            before = {t.number: kept(t) for t in at_restart if t.state in FINISHED}
            cut_off = [t for t in at_restart if t.state == pb.TRIAL_STATE_FAIL and "shutting down" in t.reason]
            assert cut_off, "the stop cut no trial off: it did not land mid-trial"
            # (Trials running now were started by the restarted workers.)
            left = [t.number for t in at_restart if t.number in running and t.state not in FINISHED]
            assert not left, f"trials running at the stop were left unfinished: {left}"

            done = wait_for(study.id, gw, lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=300)
            trials = retrying(gw.ListTrials, pb.ListTrialsRequest(study_id=study.id)).trials
            after = {t.number: kept(t) for t in trials}
            abandoned = [t for t in trials if t.state == pb.TRIAL_STATE_FAIL and "shutting down" in t.reason]
            print(f"\nshutdown: {len(before)} trials finished before the stop ({len(cut_off)} cut off by it); "
                  f"after the restart {done.counts}, {len(trials)} trials in Optuna", flush=True)
            assert finished(done) == TRIALS and done.counts.complete == TRIALS
            assert len(trials) - len(abandoned) == TRIALS, "a trial was redone or lost"
            assert {n: after[n] for n in before} == before, "a trial finished before the stop changed"
            problems = audit_mlflow(f"http://127.0.0.1:{ports['mlflow']}", done, trials)
            assert not problems, problems
    finally:
        out = stop(proc) if proc.poll() is None else proc.stdout.read()
    assert "did not stop" not in out, f"a part had to be killed at shutdown:\n{out}"
