"""The tracking service over real gRPC, with real NATS JetStream and a real MLflow
server: study and trial runs, events written (once), catch-up after downtime, and
the queries."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import grpc
import pytest
import pytest_asyncio
from mlflow import MlflowClient
from mlflow.entities import Metric

from kubetune.events.v1 import events_pb2 as ev
from kubetune.tracking.v1 import tracking_pb2 as pb
from kubetune.tracking.v1 import tracking_pb2_grpc
from kubetune_common import subjects
from kubetune_common.channels import channel
from services.common import mlflow_tags
from services.common.events import EventBus, encode, make_event
from services.tracking.app import start
from services.tracking.config import Settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


def settings(tracking_mlflow, nats_url, consumer="tracking", **kw) -> Settings:
    url, backend = tracking_mlflow
    return Settings(port=0, mlflow_uri=url, backend_store_uri=backend, nats_url=nats_url,
                    consumer_name=consumer, **{"batch_wait_s": 0.05, **kw})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bus(nats_url):
    b = await EventBus.open(nats_url, "tracking-tests")
    yield b
    await b.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def service(tracking_mlflow, nats_url, bus):
    server = await start(settings(tracking_mlflow, nats_url))
    ch = channel(f"127.0.0.1:{server.port}")
    yield server, tracking_pb2_grpc.TrackingServiceStub(ch)
    await ch.close()
    await server.stop(0)


@pytest.fixture
def stub(service):
    return service[1]


async def eventually(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def new_study(stub, dataset="seed"):
    study_id = "st-" + uuid.uuid4().hex[:8]
    r = await stub.CreateStudyRun(pb.CreateStudyRunRequest(
        study_id=study_id, dataset_name=dataset, dataset_version=f"{dataset}@1", params={"sampler": "tpe"}))
    return study_id, r


async def new_trial(stub, study_id, study, trial):
    r = await stub.CreateTrialRun(pb.CreateTrialRunRequest(
        experiment_id=study.experiment_id, parent_run_id=study.run_id, study_id=study_id, trial=trial,
        params={"learning_rate": "0.01", "units": str(16 * (trial + 1))},
        tags={mlflow_tags.TAG_WORKER: "w1", mlflow_tags.TAG_FEATURES: '["a", "b"]'},
        dataset=pb.DatasetInput(name="seed", version="seed@1", content_sha256="f" * 64,
                                source_uri="s3://bucket/seed", row_count=442)))
    return r.run_id


def epochs(study_id, trial, run_id, n, base=1.0):
    return [make_event(epoch_completed=ev.EpochCompleted(
        study_id=study_id, trial=trial, mlflow_run_id=run_id, epoch=e, train_loss=base + 1.0 / (e + 1),
        val_loss=base + 2.0 / (e + 1), val_accuracy=math.nan)) for e in range(n)]


async def publish(bus, events):
    for event in events:
        await bus.js.publish(subjects.SUBJECT_BY_PAYLOAD[event.WhichOneof("payload")], encode(event),
                             headers={"Nats-Msg-Id": event.id})


async def test_study_and_trial_runs_are_idempotent(stub, tracking_mlflow):
    study_id, first = await new_study(stub)
    again = await stub.CreateStudyRun(pb.CreateStudyRunRequest(study_id=study_id, dataset_name="seed"))
    assert (again.experiment_id, again.run_id) == (first.experiment_id, first.run_id)
    run_id = await new_trial(stub, study_id, first, 0)
    assert await new_trial(stub, study_id, first, 0) == run_id
    run = (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
    assert run.parent_run_id == first.run_id and run.study_id == study_id and run.trial == 0
    assert run.name == mlflow_tags.trial_run_name(study_id, 0)
    assert run.tags[mlflow_tags.TAG_STATE] == "RUNNING" and run.tags[mlflow_tags.TAG_WORKER] == "w1"
    assert run.params["units"] == "16"
    assert run.dataset.version == "seed@1" and run.dataset.content_sha256 == "f" * 64
    assert run.dataset.row_count == 442 and run.dataset.source_uri == "s3://bucket/seed"
    exp = MlflowClient(tracking_mlflow[0]).get_experiment(first.experiment_id)
    assert exp.name == mlflow_tags.experiment_name("seed")
    parent = (await stub.GetRun(pb.GetRunRequest(run_id=first.run_id))).run
    assert parent.tags[mlflow_tags.TAG_KIND] == "study" and parent.tags[mlflow_tags.TAG_DATASET] == "seed@1"
    assert parent.name == study_id


async def test_a_trials_val_loss_is_its_saved_epochs_not_its_last(stub, bus):
    """Epoch curves end above their best: what is shown and sorted is the best epoch's
    value, the one Optuna got (the curve keeps every epoch)."""
    study_id, study = await new_study(stub)
    runs = [await new_trial(stub, study_id, study, t) for t in range(2)]
    curves = {0: [1.0, 0.5, 0.8], 1: [0.9, 0.7, 0.6]}  # last: 0.8 vs 0.6; best: 0.5 vs 0.6
    events = []
    for t, curve in curves.items():
        events += [make_event(epoch_completed=ev.EpochCompleted(
            study_id=study_id, trial=t, mlflow_run_id=runs[t], epoch=e, train_loss=v + 0.1, val_loss=v,
            val_accuracy=math.nan)) for e, v in enumerate(curve)]
        best = min(range(3), key=curve.__getitem__)
        events.append(make_event(trial_completed=ev.TrialCompleted(
            study_id=study_id, trial=t, mlflow_run_id=runs[t], values=[curve[best]], best_epoch=best,
            metrics={"val/loss": curve[best], "train/loss": curve[best] + 0.1, "test/rmse": 3.0 + t})))
    await publish(bus, events)
    first = await eventually(lambda: _state(stub, runs[0], "COMPLETE"))
    await eventually(lambda: _state(stub, runs[1], "COMPLETE"))
    assert first.metrics["val_loss"] == 0.5 and first.metrics["train_loss"] == pytest.approx(0.6)
    page = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, trials_only=True, sort_key="val_loss",
                                                  columns=["metric:val_loss"]))
    assert [(r.run_id, r.metrics["val_loss"]) for r in page.runs] == [(runs[0], 0.5), (runs[1], 0.6)]
    narrowed = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, trials_only=True, filters=[
        pb.RunFilter(kind=pb.FIELD_KIND_METRIC, key="val_loss", op=pb.FILTER_OP_LT, value="0.55")]))
    assert [r.run_id for r in narrowed.runs] == [runs[0]]
    h = await stub.GetMetricHistories(pb.GetMetricHistoriesRequest(run_ids=runs[:1], keys=["val_loss"]))
    assert [p.value for p in h.histories[0].points] == curves[0]


async def test_a_pruned_or_failed_trial_is_shown_and_sorted_by_its_best_epoch(stub, bus):
    """A trial that ends early carries its best epoch so far: the run table shows it under
    val_loss and sorts by the same number (it used to show the last epoch's value and sort
    as if it had none, below every completed trial)."""
    study_id, study = await new_study(stub)
    runs = [await new_trial(stub, study_id, study, t) for t in range(3)]
    curves = {0: [1.0, 0.5, 0.8], 1: [0.9, 0.4, 0.7], 2: [0.95, 0.45]}
    events = []
    for t, curve in curves.items():
        events += [make_event(epoch_completed=ev.EpochCompleted(
            study_id=study_id, trial=t, mlflow_run_id=runs[t], epoch=e, train_loss=v + 0.1, val_loss=v,
            val_accuracy=math.nan)) for e, v in enumerate(curve)]
    events += [
        make_event(trial_completed=ev.TrialCompleted(study_id=study_id, trial=0, mlflow_run_id=runs[0], values=[0.5],
                                                     best_epoch=1, metrics={"val/loss": 0.5, "train/loss": 0.6})),
        make_event(trial_pruned=ev.TrialPruned(study_id=study_id, trial=1, mlflow_run_id=runs[1], epochs_done=3,
                                               reason="median", best_epoch=1,
                                               metrics={"val/loss": 0.4, "train/loss": 0.5})),
        make_event(trial_failed=ev.TrialFailed(study_id=study_id, trial=2, mlflow_run_id=runs[2], reason="OOM",
                                               best_epoch=1, metrics={"val/loss": 0.45, "train/loss": 0.55})),
    ]
    await publish(bus, events)
    for run_id, state in zip(runs, ("COMPLETE", "PRUNED", "FAIL")):
        await eventually(lambda run_id=run_id, state=state: _state(stub, run_id, state))
    page = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, trials_only=True, sort_key="val_loss",
                                                  columns=["metric:val_loss"]))
    assert [(r.run_id, r.metrics["val_loss"]) for r in page.runs] == [(runs[1], 0.4), (runs[2], 0.45), (runs[0], 0.5)]


async def test_events_become_metrics_states_and_study_results(stub, bus):
    study_id, study = await new_study(stub)
    runs = [await new_trial(stub, study_id, study, t) for t in range(3)]
    events = epochs(study_id, 0, runs[0], 5) + epochs(study_id, 1, runs[1], 2, base=3.0) + epochs(study_id, 2, "", 1)
    events += [
        make_event(trial_completed=ev.TrialCompleted(study_id=study_id, trial=0, mlflow_run_id=runs[0], values=[1.4],
                                                     metrics={"rmse": 55.5, "val/loss": 1.4}, best_epoch=4)),
        make_event(trial_pruned=ev.TrialPruned(study_id=study_id, trial=1, mlflow_run_id=runs[1], reason="median")),
        make_event(trial_failed=ev.TrialFailed(study_id=study_id, trial=2, reason="OOM")),  # run found by tags
        make_event(study_completed=ev.StudyCompleted(study_id=study_id, best_trial=0, best_values=[1.4],
                                                     best_params={"units": "16"}, mlflow_run_id=study.run_id)),
    ]
    await publish(bus, events)

    async def parent_done():
        r = (await stub.GetRun(pb.GetRunRequest(run_id=study.run_id))).run
        return r if r.status == pb.RUN_STATUS_FINISHED else None

    parent = await eventually(parent_done)
    assert parent.params["best_units"] == "16" and parent.metrics["best_value"] == 1.4
    done = (await stub.GetRun(pb.GetRunRequest(run_id=runs[0]))).run
    assert done.tags[mlflow_tags.TAG_STATE] == "COMPLETE" and done.status == pb.RUN_STATUS_FINISHED
    assert done.metrics["rmse"] == 55.5 and "val_accuracy" not in done.metrics
    pruned = (await eventually(lambda: _state(stub, runs[1], "PRUNED")))
    assert pruned.tags[mlflow_tags.TAG_REASON] == "median" and pruned.status == pb.RUN_STATUS_FINISHED
    failed = await eventually(lambda: _state(stub, runs[2], "FAIL"))
    assert failed.status == pb.RUN_STATUS_FAILED and failed.tags[mlflow_tags.TAG_REASON] == "OOM"

    h = await stub.GetMetricHistories(pb.GetMetricHistoriesRequest(run_ids=runs[:2], keys=["val_loss", "train_loss"]))
    got = {(x.run_id, x.key): [(p.step, p.value) for p in x.points] for x in h.histories}
    assert got[(runs[0], "val_loss")] == [(e, 1.0 + 2.0 / (e + 1)) for e in range(5)]
    assert got[(runs[1], "train_loss")] == [(e, 3.0 + 1.0 / (e + 1)) for e in range(2)]
    ts = [p.timestamp_ms for p in h.histories[0].points]
    assert ts == [e.time.ToMilliseconds() for e in events[:5]]  # event time, not write time

    page = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, trials_only=True, sort_key="val_loss",
                                                  columns=["metric:val_loss", "tag:kubetune.state"]))
    # By the saved epoch's val_loss: the pruned and failed trials saved no model, so none.
    assert [r.run_id for r in page.runs][0] == runs[0] and {r.run_id for r in page.runs[1:]} == set(runs[1:])
    assert page.total == 3 and set(page.runs[0].metrics) == {"val_loss"} and page.runs[0].params == {}
    cmp = await stub.CompareRuns(pb.CompareRunsRequest(run_ids=runs[:2]))
    assert dict(cmp.differing_params["units"].values) == {runs[0]: "16", runs[1]: "32"}
    assert "learning_rate" in cmp.same_params and runs[1] in cmp.metrics["val_loss"].values


async def _state(stub, run_id, state):
    r = (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
    return r if r.tags.get(mlflow_tags.TAG_STATE) == state else None


async def _caught_up(bus, consumer):
    info = await bus.js.consumer_info(subjects.EVENTS_STREAM, consumer)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_replayed_events_never_double_a_step(stub, bus, tracking_mlflow, nats_url):
    study_id, study = await new_study(stub)
    run_id = await new_trial(stub, study_id, study, 0)
    events = epochs(study_id, 0, run_id, 4)
    await publish(bus, events)
    await publish(bus, events)  # same ids: JetStream's duplicate window drops them
    # The same events delivered again, under new message ids (as after a lost ack).
    for event in events:
        await bus.js.publish(subjects.EPOCH_COMPLETED, encode(event), headers={"Nats-Msg-Id": uuid.uuid4().hex})
    await eventually(lambda: _caught_up(bus, "tracking"))
    client = MlflowClient(tracking_mlflow[0])
    first = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "val_loss")]
    assert [s for s, _, _ in first] == [0, 1, 2, 3]
    # A second tracking service with a fresh durable consumer replays the WHOLE
    # stream, with empty caches: MLflow must still hold each step once.
    replay = await start(settings(tracking_mlflow, nats_url, consumer="tracking-replay-" + uuid.uuid4().hex[:6]))
    try:
        await eventually(lambda: _caught_up(bus, replay.consumer_name), timeout=60)
    finally:
        await replay.stop(0)
    assert [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "val_loss")] == first


async def test_a_run_this_service_created_is_written_without_step_look_ups(service, bus, tracking_mlflow):
    """A trial run this replica created has no metrics but those it writes: its events
    go to MLflow with no look-up of the steps MLflow holds (one per key and trial saved),
    and each step still lands once."""
    app, stub = service
    store = app.tracking.store
    looked_up, real = [], store.metric_steps
    store.metric_steps = lambda run_id, keys: looked_up.append(run_id) or real(run_id, keys)
    try:
        study_id, study = await new_study(stub)
        run_id = await new_trial(stub, study_id, study, 0)
        await publish(bus, epochs(study_id, 0, run_id, 3))
        await publish(bus, [make_event(trial_completed=ev.TrialCompleted(
            study_id=study_id, trial=0, mlflow_run_id=run_id, values=[1.5], metrics={"val/loss": 1.5}, best_epoch=2))])
        await eventually(lambda: _caught_up(bus, "tracking"))
    finally:
        del store.metric_steps
    assert run_id not in looked_up
    client = MlflowClient(tracking_mlflow[0])
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_loss")) == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "val/loss")] == [2]
    assert client.get_run(run_id).data.tags[mlflow_tags.TAG_SETTLED] == "true"


async def test_mlflow_sql_store_keeps_identical_rows_once(tracking_mlflow):
    """What the dedupe relies on, and why it is needed: MLflow's SQL store drops a
    row identical in (key, value, timestamp, step), but keeps a second value at the
    same step."""
    client = MlflowClient(tracking_mlflow[0])
    run = client.create_run(client.create_experiment("identical-" + uuid.uuid4().hex[:6]))
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric("m", 1.0, 1000, 0)])
    client.log_batch(rid, metrics=[Metric("m", 1.0, 1000, 0)])
    assert len(client.get_metric_history(rid, "m")) == 1
    client.log_batch(rid, metrics=[Metric("m", 1.0, 2000, 0)])
    assert len(client.get_metric_history(rid, "m")) == 2


async def test_catches_up_after_downtime(service, tracking_mlflow, nats_url, bus):
    server, stub = service
    study_id, study = await new_study(stub)
    run_id = await new_trial(stub, study_id, study, 0)
    down_consumer = "tracking-down-" + uuid.uuid4().hex[:6]
    first = await start(settings(tracking_mlflow, nats_url, consumer=down_consumer))
    await first.stop(0)  # the durable consumer now exists; its service is down
    await publish(bus, epochs(study_id, 0, run_id, 3))
    info = await bus.js.consumer_info(subjects.EVENTS_STREAM, down_consumer)
    assert info.num_pending >= 3
    back = await start(settings(tracking_mlflow, nats_url, consumer=down_consumer))
    client = MlflowClient(tracking_mlflow[0])

    async def written():
        return [m.step for m in client.get_metric_history(run_id, "val_loss")] == [0, 1, 2]

    try:
        await eventually(written)
    finally:
        await back.stop(0)


async def test_queries_validate_and_page(stub):
    study_id, study = await new_study(stub, dataset="paging")
    for t in range(5):
        await new_trial(stub, study_id, study, t)
    seen, token, walked = [], "", []
    while True:
        page = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, page_size=2, page_token=token,
                                                      sort_kind=pb.FIELD_KIND_PARAM, sort_key="units"))
        seen += [r.trial for r in page.runs if r.study_id == study_id and r.tags.get(mlflow_tags.TAG_KIND) == "trial"]
        walked.append([r.run_id for r in page.runs])
        assert page.total == 6
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == list(range(5))
    # skip (AIP-158): any page in one call, the same rows as walking the tokens there.
    for n, rows in enumerate(walked):
        jumped = await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, page_size=2, skip=2 * n,
                                                        sort_kind=pb.FIELD_KIND_PARAM, sort_key="units"))
        assert [r.run_id for r in jumped.runs] == rows and jumped.total == 6
        assert bool(jumped.next_page_token) == (n < len(walked) - 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, skip=-1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "skip -1" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRuns(pb.ListRunsRequest(study_id=study_id, page_token=token or "bogus"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListRuns(pb.ListRunsRequest(filters=[pb.RunFilter(kind=pb.FIELD_KIND_METRIC, key="val_loss",
                                                                     value="low")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a number" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetRun(pb.GetRunRequest(run_id="0" * 32))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    exps = await stub.ListExperiments(pb.ListExperimentsRequest(name_contains="PAGING"))
    assert [e.name for e in exps.experiments] == ["kubetune/paging"] and exps.experiments[0].run_count == 6
    h = await stub.GetMetricHistories(pb.GetMetricHistoriesRequest(run_ids=[study.run_id], keys=["val_loss"]))
    assert list(h.histories) == []


async def test_epoch_events_trickling_in_are_written_in_few_batches(tracking_mlflow, nats_url, bus, stub):
    """Epoch events arrive one at a time (a trial's epochs take milliseconds): the
    consumer lets a batch fill for batch_wait_s instead of writing each one alone."""
    server = await start(settings(tracking_mlflow, nats_url, consumer="tracking-batches", batch_wait_s=0.5))
    try:
        study_id, study = await new_study(stub)
        run_id = await new_trial(stub, study_id, study, 0)
        recorder = server.consumer.recorder
        real_record, batches = recorder.record, []

        async def counting(events):  # the real recorder, counting the batches that hold this run's events
            mine = sum(1 for e in events if e.kind == "epoch_completed" and e.payload.mlflow_run_id == run_id)
            if mine:
                batches.append(mine)
            return await real_record(events)

        recorder.record = counting
        for event in epochs(study_id, 0, run_id, 20):
            await publish(bus, [event])
            await asyncio.sleep(0.01)

        async def all_recorded():  # by this consumer (the module's service consumes them too)
            return sum(batches) == 20

        await eventually(all_recorded)
        assert len(batches) <= 3, f"20 events written in {len(batches)} batches: {batches}"
        h = (await stub.GetMetricHistories(pb.GetMetricHistoriesRequest(run_ids=[run_id], keys=["val_loss"]))).histories
        assert [p.step for p in h[0].points] == list(range(20))
    finally:
        await server.stop(0)


async def test_a_deleted_experiment_is_not_restored(stub, tracking_mlflow):
    """A user deleted a dataset's experiment: the next study gets a new experiment (named
    and tagged so), and the deleted one and its runs stay deleted."""
    client = MlflowClient(tracking_mlflow[0])
    dataset = "gone-" + uuid.uuid4().hex[:6]
    first_id, first = await new_study(stub, dataset)
    client.delete_experiment(first.experiment_id)
    second_id, second = await new_study(stub, dataset)
    assert second.experiment_id != first.experiment_id
    old = client.get_experiment(first.experiment_id)
    assert old.lifecycle_stage == "deleted"
    assert client.get_run(first.run_id).info.lifecycle_stage == "deleted"
    new = client.get_experiment(second.experiment_id)
    assert new.name == f"{mlflow_tags.experiment_name(dataset)} (2)" and new.lifecycle_stage == "active"
    assert new.tags["kubetune.replaces_deleted"] == first.experiment_id
    # The next study on the dataset joins the new experiment.
    _, third = await new_study(stub, dataset)
    assert third.experiment_id == second.experiment_id
