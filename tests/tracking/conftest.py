"""A tracking-owned `mlflow server` whose SQLite file the tests know, so the direct
SQL read path (MlflowSqlStore) can be tested beside the REST one."""

from __future__ import annotations

import pytest

from testing import servers


@pytest.fixture(scope="session")
def tracking_mlflow(tmp_path_factory):
    """(tracking URI, backend store URI) of a fresh MLflow server."""
    root = tmp_path_factory.mktemp("tracking-mlflow")
    backend = f"sqlite:///{root / 'mlflow.db'}"
    with servers.mlflow_server(root, backend) as url:
        yield url, backend
