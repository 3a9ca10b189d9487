"""Guarantee 1: any single part SIGKILLed mid-study is restarted by the supervisor,
and the study still ends with exactly n_trials finished, every COMPLETE trial's
curve in MLflow exactly once, every model loadable, no MLflow run left RUNNING,
and a reconnecting watcher sees the final state.

One 12-trial study; each part is killed in turn while trials run (cheaper than a
study per part, and each fault lands on a platform already recovering from the last)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from kubetune.tuning.v1 import tuning_pb2 as pb
from testing.platform import running_platform
from tests.reliability.faults import Watcher, audit_mlflow, retrying, wait_back, wait_for
from testing.studies import finished, small_spec

pytestmark = pytest.mark.slow
TRIALS = 20
EPOCHS = int(os.environ.get("KUBETUNE_KILL_EPOCHS", "600"))
# Every part of `kubetune up` but the UI (which holds no state and is tested apart).
FAULTS = ["worker-0", "worker-1", "tuning", "tracking", "data", "gateway", "nats", "mlflow"]


def running_on(gw, study_id: str, worker: str) -> list[pb.Trial]:
    trials = retrying(gw.ListTrials, pb.ListTrialsRequest(study_id=study_id, states=[pb.TRIAL_STATE_RUNNING])).trials
    return [t for t in trials if t.worker == worker]


def test_any_part_killed_mid_study_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with running_platform(tmp_path / "home", workers=2) as platform:
        ch, gw = platform.stub()
        spec = small_spec(trials=TRIALS, epochs=EPOCHS, parallel=2, pruner=pb.PRUNER_NONE,
                          early_stopping_patience=EPOCHS)
        study = gw.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
        watcher = Watcher(platform.gateway, study.id).start()

        injected, victims = [], []
        for name in FAULTS:
            at_kill = wait_for(study.id, gw, lambda s: s.counts.running >= 1 or s.state == pb.STUDY_STATE_COMPLETED)
            if name.startswith("worker-"):
                # A worker is killed in the middle of a trial of its own.
                at_kill = wait_for(study.id, gw, lambda s: s.state == pb.STUDY_STATE_COMPLETED or running_on(gw, study.id, name))
            assert at_kill.state == pb.STUDY_STATE_RUNNING, f"the study ended before {name} could be killed"
            part = platform.part(name)
            pid = part.proc.pid
            # The whole process group, as a node or the OOM killer would: MLflow's server
            # runs its app in a child process, which must go too.
            os.killpg(pid, signal.SIGKILL)
            if name.startswith("worker-"):
                # Read after the kill: a trial the dead worker still holds RUNNING is lost;
                # one it finished in the moment before the kill is not.
                victims += [t.number for t in running_on(gw, study.id, name)]
            back_s = wait_back(platform, name, pid)
            injected.append((name, finished(at_kill), at_kill.counts.running, round(back_s, 1)))
            print(f"killed {name} (pid {pid}) with {finished(at_kill)} finished, {at_kill.counts.running} running; "
                  f"back in {back_s:.1f}s", flush=True)
            time.sleep(1.0)

        done = wait_for(study.id, gw, lambda s: s.state == pb.STUDY_STATE_COMPLETED, timeout=420)
        trials = retrying(gw.ListTrials, pb.ListTrialsRequest(study_id=study.id)).trials
        abandoned = [t for t in trials if t.state == pb.TRIAL_STATE_FAIL and ("lost" in t.reason or "shutting down" in t.reason)]
        print(f"study {study.id}: {done.counts}; {len(trials)} trials in Optuna, {len(abandoned)} abandoned: "
              + "; ".join(f"{t.number}: {t.reason}" for t in abandoned), flush=True)
        assert len(injected) == len(FAULTS)
        assert sorted(t.number for t in abandoned) == sorted(victims), "each killed worker's trial, and only those, abandoned"
        assert finished(done) == TRIALS
        assert len(trials) - len(abandoned) == TRIALS
        other_fails = [(t.number, t.reason) for t in trials if t.state == pb.TRIAL_STATE_FAIL and t not in abandoned]
        assert not other_fails, f"trials failed by an outage rather than finishing: {other_fails}"

        problems = audit_mlflow(platform.mlflow_uri, done, trials)
        assert not problems, problems

        assert watcher.ended.wait(30), f"the watcher never saw the end ({watcher})"
        assert watcher.final_state == pb.STUDY_STATE_COMPLETED
        print(f"faults {injected}; watcher: {watcher.updates} updates, {watcher.reconnects} reconnects, "
              f"errors {dict(watcher.errors)}", flush=True)
        ch.close()
