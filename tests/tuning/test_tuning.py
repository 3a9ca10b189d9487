"""Studies through the gateway on the real platform: NATS, MLflow, data, tracking,
tuning and two warm workers, each its own process."""

from __future__ import annotations

import time

import grpc
import mlflow
import pytest

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import mlflow_tags, packed_model
from testing.studies import (
    completed, finished, param_choice, param_float, param_int, run_study, small_spec, wait_for_study,
)

pytestmark = pytest.mark.slow


def child_runs(platform, study: pb.Study):
    client = mlflow.MlflowClient(platform.mlflow_uri)
    return client.search_runs([study.mlflow_experiment_id],
                              f"tags.`{mlflow_tags.TAG_STUDY}` = '{study.id}' and tags.`{mlflow_tags.TAG_KIND}` = 'trial'",
                              max_results=1000)


def wait_for_metrics(platform, study: pb.Study, expect_steps: dict[str, int], timeout: float = 30):
    """Metrics reach MLflow through events and batches: wait until every run has them all."""
    client = mlflow.MlflowClient(platform.mlflow_uri)
    deadline = time.monotonic() + timeout
    while True:
        runs = {r.info.run_id: r for r in child_runs(platform, study)}
        steps = {rid: len(client.get_metric_history(rid, "val_loss")) for rid in runs}
        if all(steps.get(rid) == n for rid, n in expect_steps.items()):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"metrics incomplete: {steps} != {expect_steps}")
        time.sleep(0.5)


def test_study_of_8_trials_on_2_workers_lands_in_mlflow(platform, gateway):
    spec = small_spec(trials=8, epochs=5, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=10)
    study = run_study(gateway, spec)
    assert study.counts.complete == 8 and finished(study) == 8
    trials = gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id, with_curves=True)).trials
    assert {t.worker for t in trials} == {"worker-0", "worker-1"}
    assert all(t.epochs_done == 5 and len(t.val_loss_curve) == 5 for t in trials)
    best = min(t.values[0] for t in trials if t.state == pb.TRIAL_STATE_COMPLETE)
    assert study.best_values[0] == pytest.approx(best)
    assert study.best_trial.values[0] == pytest.approx(best)

    runs = wait_for_metrics(platform, study, {t.mlflow_run_id: 5 for t in trials})
    assert len(runs) == 8
    client = mlflow.MlflowClient(platform.mlflow_uri)
    for t in trials:
        run = runs[t.mlflow_run_id]
        assert run.data.tags[mlflow_tags.MLFLOW_PARENT] == study.mlflow_run_id
        assert run.data.tags[mlflow_tags.TAG_TRIAL] == str(t.number)
        history = client.get_metric_history(t.mlflow_run_id, "val_loss")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3, 4]
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(list(t.val_loss_curve))
        assert len(client.get_metric_history(t.mlflow_run_id, "train_loss")) == 5
        assert float(run.data.params["learning_rate"]) == pytest.approx(float(t.params["learning_rate"]), rel=1e-4)
        assert run.inputs.dataset_inputs[0].dataset.name == "sample"
    # A trial logs one packed file; the full pyfunc is made when asked for.
    best_run = study.best_trial.mlflow_run_id
    assert [a.path for a in client.list_artifacts(best_run, mlflow_tags.MODEL_ARTIFACT)] == [packed_model.PACKED_PATH]
    assert packed_model.package_run(platform.mlflow_uri, best_run)
    mlflow.set_tracking_uri(platform.mlflow_uri)
    model = mlflow.pyfunc.load_model(mlflow_tags.model_uri(best_run))
    assert model.metadata.get_input_schema().input_names() == [f"x{i}" for i in range(5)]


def test_an_aggressive_pruner_prunes_the_bad_region(gateway):
    spec = pb.StudySpec(
        dataset="sample", n_trials=10, max_parallel=2, max_epochs=10, seed=3,
        sampler=pb.SAMPLER_RANDOM, pruner=pb.PRUNER_MEDIAN, pruner_warmup_epochs=1, early_stopping_patience=20,
        # Below 1e-5 SGD barely moves: that corner is pruned once better trials exist.
        search_space=[param_float("learning_rate", 1e-7, 1e-1, log=True), param_choice("optimizer", "sgd")],
    )
    study = run_study(gateway, spec)
    assert finished(study) == 10
    assert study.counts.pruned >= 1
    pruned = gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id, states=[pb.TRIAL_STATE_PRUNED])).trials
    assert all("pruned" in t.reason for t in pruned)


def test_stop_then_resume_finishes_exactly_n_trials(gateway):
    spec = small_spec(trials=10, epochs=40, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=40)
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    wait_for_study(gateway, study.id, lambda s: finished(s) >= 2)
    stopped = gateway.StopStudy(pb.StopStudyRequest(study_id=study.id)).study
    assert stopped.state == pb.STUDY_STATE_STOPPED
    quiet = wait_for_study(gateway, study.id, lambda s: s.counts.running == 0 and s.counts.queued == 0, timeout=60)
    time.sleep(1.5)  # no new trial starts while stopped
    assert gateway.GetStudy(pb.GetStudyRequest(study_id=study.id)).study.counts.running == 0
    assert finished(quiet) < 10
    with pytest.raises(grpc.RpcError) as err:
        gateway.StopStudy(pb.StopStudyRequest(study_id=study.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    gateway.ResumeStudy(pb.ResumeStudyRequest(study_id=study.id))
    done = wait_for_study(gateway, study.id, completed)
    assert finished(done) == 10
    with pytest.raises(grpc.RpcError) as err:
        gateway.ResumeStudy(pb.ResumeStudyRequest(study_id=study.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_resuming_a_timed_out_study_gives_it_a_new_budget(gateway):
    """The time budget counts from the resume: before, the study completed again at once
    with no new trial, though the resume had answered success."""
    # Far more trials than two 2 s budgets can hold on any machine (8 of 150 epochs fitted
    # in them in a quiet CI run): the budget, not the count, must end both stretches.
    spec = small_spec(trials=500, epochs=150, parallel=1, pruner=pb.PRUNER_NONE, early_stopping_patience=150,
                      timeout_seconds=2)
    study = run_study(gateway, spec)
    before = finished(study)
    assert before < 500
    resumed = gateway.ResumeStudy(pb.ResumeStudyRequest(study_id=study.id)).study
    assert resumed.state == pb.STUDY_STATE_RUNNING
    done = wait_for_study(gateway, study.id, lambda s: completed(s) and finished(s) > before, timeout=120)
    assert finished(done) < 500


def test_a_stale_stopped_study_hint_never_drops_a_live_ticket(platform, gateway):
    """Workers learn of stopped studies from core NATS events, which can miss a
    `study_resumed`: here every worker hears `study_stopped` for a study that is running.
    Before, each worker acked its tickets as not needed and the study never completed."""
    import asyncio
    import uuid

    from kubetune.events.v1 import events_pb2 as ev
    from services.common.events import EventBus

    name = "stale-hint-" + uuid.uuid4().hex[:6]

    async def stale_stop():
        bus = await EventBus.open(f"nats://127.0.0.1:{platform.ports['nats']}", "test-stale-hint", declare=False)
        await bus.publish(study_stopped=ev.StudyStopped(study_id=name))
        await bus.close()

    asyncio.run(stale_stop())
    time.sleep(0.5)
    done = run_study(gateway, small_spec(trials=2, epochs=3, parallel=2, name=name), timeout=120)
    assert finished(done) == 2


def test_a_killed_worker_loses_no_trial(platform, gateway):
    spec = small_spec(trials=6, epochs=60, parallel=2, pruner=pb.PRUNER_NONE, early_stopping_patience=60)
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec)).study
    victim = None
    deadline = time.monotonic() + 60
    while victim is None:  # a trial is RUNNING a moment before its worker is recorded
        assert time.monotonic() < deadline, "no trial started"
        running = gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id, states=[pb.TRIAL_STATE_RUNNING])).trials
        victim = next((t for t in running if t.worker), None)
        time.sleep(0.1)
    platform.kill(victim.worker)
    done = wait_for_study(gateway, study.id, completed, timeout=240)
    assert finished(done) == 6 and done.counts.complete == 6
    trials = gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials
    lost = next(t for t in trials if t.number == victim.number)
    assert lost.state == pb.TRIAL_STATE_FAIL and "lost" in lost.reason
    assert len(trials) == 7  # the lost one, plus its ticket run again


def test_watch_starts_with_a_snapshot_then_streams_epochs(gateway):
    study = gateway.CreateStudy(pb.CreateStudyRequest(spec=small_spec(trials=2, epochs=3))).study
    updates = list(gateway.WatchStudy(pb.WatchStudyRequest(study_id=study.id), timeout=120))
    assert updates[0].HasField("snapshot") and updates[0].snapshot.study.id == study.id
    kinds = [u.event.WhichOneof("payload") for u in updates[1:]]
    assert kinds[-1] == "study_completed"
    assert kinds.count("trial_completed") + kinds.count("trial_pruned") + kinds.count("trial_failed") <= 2
    epochs = [u.event.epoch_completed for u in updates[1:] if u.event.HasField("epoch_completed")]
    assert epochs and all(e.study_id == study.id and e.val_loss > 0 for e in epochs)


@pytest.mark.parametrize("change, field", [
    (lambda s: s.search_space.append(param_float("dropout", 0.4, 0.2)), "search_space.dropout"),
    (lambda s: s.search_space.append(param_float("weight_decay", 0.0, 0.1, log=True)), "search_space.weight_decay"),
    (lambda s: s.search_space.append(param_choice("activation")), "search_space.activation"),
    (lambda s: setattr(s, "n_trials", 0), "n_trials"),
    (lambda s: setattr(s, "n_trials", 1_000_000), "n_trials"),
    (lambda s: setattr(s, "dataset", "no-such-data"), "dataset"),
    (lambda s: (s.search_space.append(param_choice("optimizer", "adam", "sgd")), setattr(s, "sampler", pb.SAMPLER_CMAES)), "sampler"),
])
@pytest.mark.parametrize("validate_only", [False, True], ids=["create", "validate-only"])
def test_invalid_studies_are_refused_naming_the_field(gateway, change, field, validate_only):
    spec = small_spec()
    change(spec)
    with pytest.raises(grpc.RpcError) as err:
        gateway.CreateStudy(pb.CreateStudyRequest(spec=spec, validate_only=validate_only))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in err.value.details()


def test_a_study_name_is_unique(gateway):
    spec = small_spec(trials=1, epochs=1, name="unique-name-test")
    run_study(gateway, spec)
    for validate_only in (False, True):
        with pytest.raises(grpc.RpcError) as err:
            gateway.CreateStudy(pb.CreateStudyRequest(spec=spec, validate_only=validate_only))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_validate_only_makes_nothing_and_answers_the_study_as_it_would_be(gateway):
    """AIP-163: the Tune page and the CLI check a spec with every rule a create applies."""
    spec = small_spec(name="validate-only-test")
    spec.ClearField("search_space")
    before = [s.id for s in gateway.ListStudies(pb.ListStudiesRequest()).studies]
    for _ in range(2):  # the name is still free the second time: nothing was made
        study = gateway.CreateStudy(pb.CreateStudyRequest(spec=spec, validate_only=True)).study
        assert study.id == "validate-only-test" and study.dataset_version.startswith("sample@")
        assert study.task_kind == "regression" and study.state == pb.STUDY_STATE_UNSPECIFIED
        # The defaults a create would record: the default space, a drawn seed.
        assert [p.name for p in study.spec.search_space] == ["learning_rate", "dropout", "n_layers", "units"]
        assert study.spec.seed > 0
    assert [s.id for s in gateway.ListStudies(pb.ListStudiesRequest()).studies] == before
    with pytest.raises(grpc.RpcError) as err:
        gateway.GetStudy(pb.GetStudyRequest(study_id="validate-only-test"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_optuna_dashboard_opens_a_kubetune_study(platform, gateway):
    """`optuna-dashboard <storage-url>` shows kubetune's studies with their trials."""
    import json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from testing.servers import free_port, port_open, stop, wait_for

    study = run_study(gateway, small_spec(trials=2, epochs=2, name="for-the-dashboard"))
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), platform.optuna_storage,
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: port_open(port), 60, "optuna-dashboard", proc)
        studies = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30))["study_summaries"]
        shown = next(s for s in studies if s["study_name"] == study.id)
        detail = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{shown['study_id']}", timeout=30))
        assert len(detail["trials"]) == 2 and detail["trials"][0]["state"] == "Complete"
    finally:
        stop(proc)
