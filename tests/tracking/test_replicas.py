"""Run creation is idempotent across tracking replicas: two tracking processes on one
MLflow server, hit with the same CreateStudyRun and CreateTrialRun requests at once,
leave exactly one active MLflow run per study and per trial, and every caller gets it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from kubetune.tracking.v1 import tracking_pb2 as pb
from kubetune.tracking.v1 import tracking_pb2_grpc
from kubetune_common.channels import channel, sync_health_status
from services.common import mlflow_tags
from testing import servers

pytestmark = pytest.mark.slow

TRIALS = 40
COPIES = 6  # identical requests per trial, half to each replica, all in flight at once


@contextlib.contextmanager
def tracking_process(tracking_mlflow, nats_url, home):
    url, backend = tracking_mlflow
    port = servers.free_port()
    env = {**os.environ, "KUBETUNE_HOME": str(home), "KUBETUNE_TRACKING_PORT": str(port),
           "KUBETUNE_TRACKING_MLFLOW_URI": url, "KUBETUNE_TRACKING_BACKEND_STORE_URI": backend,
           "KUBETUNE_NATS_URL": nats_url, "KUBETUNE_TRACKING_CONSUME_EVENTS": "false"}
    log = open(home / f"tracking-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.tracking"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        servers.wait_for(lambda: sync_health_status(f"127.0.0.1:{port}", 1.0) == "SERVING", 60, "tracking", proc)
        yield f"127.0.0.1:{port}"
    finally:
        servers.stop(proc)
        log.close()


async def test_two_replicas_make_one_run_per_study_and_trial(tracking_mlflow, nats_url, tmp_path):
    with tracking_process(tracking_mlflow, nats_url, tmp_path) as a, tracking_process(tracking_mlflow, nats_url, tmp_path) as b:
        channels = [channel(a), channel(b)]
        stubs = [tracking_pb2_grpc.TrackingServiceStub(ch) for ch in channels]
        try:
            await check_one_run_each(stubs, tracking_mlflow[0])
        finally:
            for ch in channels:
                await ch.close()


async def check_one_run_each(stubs, mlflow_uri):
    dataset = "replicas-" + uuid.uuid4().hex[:6]
    study_id = "st-" + uuid.uuid4().hex[:8]
    study_request = pb.CreateStudyRunRequest(study_id=study_id, dataset_name=dataset, dataset_version=f"{dataset}@1",
                                             params={"sampler": "tpe"})
    started = time.perf_counter()
    studies = await asyncio.gather(*(stubs[i % 2].CreateStudyRun(study_request, timeout=120) for i in range(2 * COPIES)))
    assert len({(s.experiment_id, s.run_id) for s in studies}) == 1, "callers got different study runs"
    study = studies[0]

    def trial_request(trial):
        return pb.CreateTrialRunRequest(
            experiment_id=study.experiment_id, parent_run_id=study.run_id, study_id=study_id, trial=trial,
            params={"learning_rate": "0.01", "units": str(trial)}, tags={mlflow_tags.TAG_WORKER: "w1"},
            dataset=pb.DatasetInput(name=dataset, version=f"{dataset}@1", content_sha256="e" * 64,
                                    source_uri="s3://bucket/x", row_count=10))

    calls = [(t, stubs[c % 2].CreateTrialRun(trial_request(t), timeout=120)) for t in range(TRIALS) for c in range(COPIES)]
    answers = await asyncio.gather(*(call for _, call in calls))
    seconds = time.perf_counter() - started
    by_trial: dict[int, set[str]] = {}
    for (trial, _), answer in zip(calls, answers):
        by_trial.setdefault(trial, set()).add(answer.run_id)
    assert all(len(ids) == 1 for ids in by_trial.values()), {t: ids for t, ids in by_trial.items() if len(ids) > 1}

    client = MlflowClient(mlflow_uri)
    active = client.search_runs([study.experiment_id], f"tags.`{mlflow_tags.TAG_STUDY}` = '{study_id}'",
                                ViewType.ACTIVE_ONLY, max_results=1000)
    every = client.search_runs([study.experiment_id], f"tags.`{mlflow_tags.TAG_STUDY}` = '{study_id}'",
                               ViewType.ALL, max_results=1000)
    kinds = Counter((r.data.tags[mlflow_tags.TAG_KIND], r.data.tags.get(mlflow_tags.TAG_TRIAL)) for r in active)
    assert kinds[(mlflow_tags.KIND_STUDY, None)] == 1
    assert all(kinds[(mlflow_tags.KIND_TRIAL, str(t))] == 1 for t in range(TRIALS)), kinds
    assert len(active) == TRIALS + 1
    for run in active:
        if run.data.tags[mlflow_tags.TAG_KIND] == mlflow_tags.KIND_TRIAL:
            trial = run.data.tags[mlflow_tags.TAG_TRIAL]
            assert run.info.run_id in by_trial[int(trial)]
            assert run.data.params["units"] == trial and run.data.tags[mlflow_tags.TAG_SETTLED] == "true"
            assert len(run.inputs.dataset_inputs) == 1
    print(f"\n{2 * COPIES} CreateStudyRun + {TRIALS * COPIES} CreateTrialRun over 2 replicas in {seconds:.1f}s: "
          f"{len(active)} active runs, {len(every) - len(active)} losing runs deleted")
