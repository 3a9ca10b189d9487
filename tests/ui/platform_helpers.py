"""The real platform for UI tests: `tests.platform.running_platform`, tolerating a
registry service that has not landed yet (its part is left out, and the tests that
need it skip)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import grpc

from kubetune.gateway.v1 import gateway_pb2
from tests import platform as platform_module

REPO = Path(__file__).resolve().parents[2]
REGISTRY_MAIN = REPO / "services" / "registry" / "__main__.py"


def registry_present() -> bool:
    return REGISTRY_MAIN.exists()


@contextlib.contextmanager
def ui_platform(home: Path, *, ui: bool = False, workers: int = 2):
    if registry_present():
        with platform_module.running_platform(home, workers=workers, ui=ui) as p:
            yield p
        return
    real_plan = platform_module.plan

    def plan_without_registry(*args, **kwargs):
        return [part for part in real_plan(*args, **kwargs) if part.name != "registry"]

    with mock.patch.object(platform_module, "plan", plan_without_registry):
        with platform_module.running_platform(home, workers=workers, ui=ui) as p:
            yield p


def registry_serving(gateway_address: str) -> bool:
    with grpc.insecure_channel(gateway_address) as ch:
        from kubetune.gateway.v1 import gateway_pb2_grpc

        health = gateway_pb2_grpc.GatewayStub(ch).GetPlatformHealth(gateway_pb2.GetPlatformHealthRequest(), timeout=5)
    return any(p.name == "registry" and p.status == "SERVING" for p in health.parts)


_shared: dict = {}


def shared_platform(request, tmp_path_factory):
    """One platform (with the UI process) for the UI tests and the browser tests of a
    session, whichever asks first; stopped when the session's fixtures are torn down."""
    if "platform" not in _shared:
        stack = contextlib.ExitStack()
        _shared["platform"] = stack.enter_context(ui_platform(tmp_path_factory.mktemp("ui-platform"), ui=True))
        _shared["stack"] = stack
        request.addfinalizer(_close_shared)
    return _shared["platform"]


def _close_shared() -> None:
    stack = _shared.pop("stack", None)
    _shared.pop("platform", None)
    if stack is not None:
        stack.close()
