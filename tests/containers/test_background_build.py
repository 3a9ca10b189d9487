"""The session's image build in its own process (conftest.BackgroundBuild), run here with
small commands in its place (no engine needed): its result read once it exits, a failure
reported with its log's tail, and nothing of it left running when the session ends early."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.containers.conftest import BackgroundBuild


def python(script: str) -> list[str]:
    return [sys.executable, "-c", script]  # the build's JSON goes to sys.argv[1]


def test_the_result_is_read_once_the_build_has_exited(tmp_path):
    run = BackgroundBuild(python("import json, sys, time; time.sleep(1); "
                                 "open(sys.argv[1], 'w').write(json.dumps({'refs': {'a': 'a:1'}}))"),
                          tmp_path / "build.log")
    run.start()
    assert run.result() == {"refs": {"a": "a:1"}}


def test_a_failed_build_fails_with_the_end_of_its_log(tmp_path):
    run = BackgroundBuild(python("import sys\nfor i in range(100): print('step', i)\n"
                                 "print('Error: building at STEP 7: pip exploded'); sys.exit(3)"),
                          tmp_path / "build.log")
    with pytest.raises(pytest.fail.Exception) as failed:
        run.result()
    message = str(failed.value)
    assert "exit 3" in message and "pip exploded" in message and "step 99" in message
    assert "step 10\n" not in message  # the tail, not the whole log


def test_a_build_that_leaves_no_result_fails(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="exit 0"):
        BackgroundBuild(python("print('done?')"), tmp_path / "build.log").result()


def test_stopping_ends_the_build_and_what_it_started(tmp_path):
    """The build's children (podman, its RUN steps) go with it."""
    pids = tmp_path / "pids"
    run = BackgroundBuild(python(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(300)"), tmp_path / "build.log")
    run.start()
    deadline = time.monotonic() + 30
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, "the build did not start"
        time.sleep(0.1)
    run.stop()
    assert run.proc.poll() is not None
    for pid in map(int, pids.read_text().split()):
        assert not alive(pid), f"{pid} still runs"


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return state.strip() != "" and not state.startswith("Z")
