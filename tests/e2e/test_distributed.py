"""The distributed mode on one machine: the Optuna storage, MLflow's backend and the
data catalog on PostgreSQL, two worker processes, one study. No trial is lost or
duplicated."""

from __future__ import annotations

import collections

import mlflow
import pytest

from kubetune.tuning.v1 import tuning_pb2 as pb
from services.common import mlflow_tags
from testing.platform import running_platform
from testing.studies import finished, run_study, small_spec

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_workers_on_postgres_lose_and_duplicate_nothing(tmp_path, new_database):
    optuna_url, mlflow_url, catalog_url = new_database("kt_optuna"), new_database("kt_mlflow"), new_database("kt_catalog")
    env = {"KUBETUNE_TUNING_STORAGE_URL": optuna_url, "KUBETUNE_DATA_CATALOG_URL": catalog_url}
    with running_platform(tmp_path, workers=2, env=env, mlflow_backend=mlflow_url) as platform:
        ch, gateway = platform.stub()
        study = run_study(gateway, small_spec(trials=10, epochs=4, parallel=2, pruner=pb.PRUNER_NONE))
        assert finished(study) == 10 and study.counts.complete == 10
        trials = gateway.ListTrials(pb.ListTrialsRequest(study_id=study.id)).trials
        assert sorted(t.number for t in trials) == list(range(10))
        assert {t.worker for t in trials} == {"worker-0", "worker-1"}
        assert len({t.mlflow_run_id for t in trials}) == 10

        client = mlflow.MlflowClient(platform.mlflow_uri)
        runs = client.search_runs([study.mlflow_experiment_id],
                                  f"tags.`{mlflow_tags.TAG_STUDY}` = '{study.id}' and tags.`{mlflow_tags.TAG_KIND}` = 'trial'")
        per_trial = collections.Counter(r.data.tags[mlflow_tags.TAG_TRIAL] for r in runs)
        assert per_trial == {str(n): 1 for n in range(10)}
        ch.close()

    import psycopg2

    with psycopg2.connect(optuna_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from trials")
        assert cur.fetchone()[0] == 10
