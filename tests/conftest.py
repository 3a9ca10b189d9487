"""Shared fixtures: real servers on free ports, started once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testing import servers

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "services" / "data" / "sample"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory):
    with servers.nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server over HTTP, with throwaway credentials in the environment."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with servers.moto_s3_server() as url:
        yield url
    mp.undo()


@pytest.fixture
def seed_dir() -> Path:
    return SEED


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The whole platform, UI included, shared by the tests that only use it."""
    from testing.platform import running_platform

    with running_platform(tmp_path_factory.mktemp("platform"), ui=True) as p:
        yield p


@pytest.fixture(scope="session")
def ui_platform(platform):
    return platform


@pytest.fixture(scope="session")
def gateway(platform):
    ch, stub = platform.stub()
    yield stub
    ch.close()


def _reachable_postgres() -> str | None:
    import psycopg2

    for user in ("postgres", "root"):
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            psycopg2.connect(url, connect_timeout=2).close()
            return url
        except psycopg2.OperationalError:
            continue
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL this machine kind runs (127.0.0.1:5432, database test, trust auth):
    required in CI, skipped with the reason elsewhere."""
    url = _reachable_postgres()
    if url is None:
        if IN_CI:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 (database test) is required in CI")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432 with database 'test' (trust auth, user postgres or root)")
    return url


@pytest.fixture
def new_database(postgres_url):
    """Makes empty databases for one test and drops them afterwards."""
    import uuid

    import psycopg2

    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    made = []

    def make(prefix: str = "kt") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin.cursor().execute(f"CREATE DATABASE {name}")
        made.append(name)
        return postgres_url.rsplit("/", 1)[0] + "/" + name

    yield make
    for name in made:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()
