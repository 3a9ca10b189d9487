"""UI tests: NiceGUI's simulated user against the real platform (gateway and services
started once per session)."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation

from kubetune.gateway.v1 import gateway_pb2_grpc

MAIN = Path(__file__).with_name("main.py")


@pytest.fixture(scope="session")
def gw(ui_platform):
    ch = grpc.insecure_channel(ui_platform.gateway)
    yield gateway_pb2_grpc.GatewayStub(ch)
    ch.close()


async def _user(monkeypatch, caplog, gateway_address: str, mlflow: str):
    monkeypatch.setenv("KUBETUNE_UI_GATEWAY_ADDRESS", gateway_address)
    monkeypatch.setenv("KUBETUNE_UI_MLFLOW_UI_URL", mlflow)
    async with user_simulation(main_file=MAIN) as user:
        yield user
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("unexpected ERROR logs: " + "; ".join(r.getMessage() for r in errors), pytrace=False)


@pytest.fixture
async def user(ui_platform, monkeypatch, caplog) -> User:
    """A simulated browser on the UI, connected to the session's platform."""
    async for u in _user(monkeypatch, caplog, ui_platform.gateway, ui_platform.mlflow_uri):
        yield u


@pytest.fixture
async def offline_user(monkeypatch, caplog) -> User:
    """The UI with a gateway that does not answer."""
    from testing.servers import free_port

    async for u in _user(monkeypatch, caplog, f"127.0.0.1:{free_port()}", "http://127.0.0.1:1"):
        yield u
