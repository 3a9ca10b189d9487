"""tests/containers: podman (with the CI machines' settings), the images built from this
tree (cached by their content tag between runs), and the platform run from them.

The images take minutes to build (tens on a cold machine), so the session starts their
build as a separate process as soon as it knows a test here will run (prepare.py, its
output in .kubetune/images-build.log), runs every other test meanwhile and the tests
that need the images last; the first of those waits for the build."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import browser, page  # noqa: F401  Chromium for the UI container's page
from tests.k8s.parts import REPO

IN_CI = os.environ.get("CI", "").lower() == "true"
os.environ.setdefault("CONTAINERS_CONF", str(REPO / "k8s" / "images" / "containers.conf"))
BUILD_LOG = REPO / ".kubetune" / "images-build.log"
# Below the tests' priority: the build takes the cores the other tests leave while they
# wait on their servers, and slows their timed waits less.
BUILD_NICENESS = 10


def need_podman() -> str:
    found = shutil.which("podman")
    if found:
        return found
    message = "podman is missing: apt-get install podman buildah runc mmdebstrap (make install-test does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class BackgroundBuild:
    """A command (the build) in its own process group, started once, its output in a log;
    it leaves its result, JSON, in `refs_file`."""

    def __init__(self, command: list[str], log: Path):
        self.command, self.log, self.refs_file = command, log, log.with_suffix(".json")
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> None:
        if self.proc is not None:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.refs_file.unlink(missing_ok=True)
        self.started = time.monotonic()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                ["nice", "-n", str(BUILD_NICENESS), *self.command, str(self.refs_file)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
                    str(REPO), str(REPO / "gen"), os.environ.get("PYTHONPATH"))))})

    def result(self) -> dict:
        """Waits for the build; fails with the end of its log when it failed."""
        self.start()
        code = self.proc.wait()
        waited = time.monotonic() - self.started
        if code != 0 or not self.refs_file.exists():
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])
            pytest.fail(f"building the images failed (exit {code}); the end of {self.log}:\n{tail}",
                        pytrace=False)
        print(f"images ready {waited:.0f} s after the build started (log: {self.log})")
        return json.loads(self.refs_file.read_text())

    def stop(self) -> None:
        """Ends the build if it still runs (the session stopped early): podman and every
        process it started are in the group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue


BUILD = BackgroundBuild([sys.executable, "-m", "tests.containers.prepare"], BUILD_LOG)


def needs_images(item: pytest.Item) -> bool:
    return "images" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """The tests that need the images run last, so the build has the rest of the session."""
    items[:] = [i for i in items if not needs_images(i)] + [i for i in items if needs_images(i)]


def pytest_collection_finish(session):
    if (not session.config.option.collectonly and shutil.which("podman")
            and any(needs_images(i) for i in session.items)):
        BUILD.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test on the running platform reports every container's state and log."""
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("platform")
    if report.when == "call" and report.failed and hasattr(running, "cluster"):
        report.sections.append(("containers", running.cluster.report()))


def pytest_sessionfinish(session):
    BUILD.stop()


@pytest.fixture(scope="session")
def engine() -> str:
    return need_podman()


@pytest.fixture(scope="session")
def prepared(engine) -> dict:
    return BUILD.result()


@pytest.fixture(scope="session")
def base_image(prepared) -> str:
    return prepared["base"]


@pytest.fixture(scope="session")
def images(prepared) -> dict[str, str]:
    """Image name -> content-tagged reference: every part's, MLflow's and the infra stand-ins'."""
    return prepared["refs"]


def pytest_configure(config):
    config.addinivalue_line("markers", "containers: builds the images and runs them with podman "
                            "(tests/containers; `-m 'not containers'` leaves them out)")
