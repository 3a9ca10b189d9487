"""Both services start as real processes: SERVING fast, small, and without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from services.common.clients import sync_health_status
from tests.servers import free_port

CHECK_TORCH = "import sys, runpy; sys.argv=['x']; "


@pytest.mark.parametrize("part", ["tracking", "registry"])
def test_serving_fast_small_and_without_torch(part, nats_url, tmp_path):
    port = free_port()
    env = {**os.environ, f"KUBETUNE_{part.upper()}_PORT": str(port), "KUBETUNE_NATS_URL": nats_url,
           "KUBETUNE_MLFLOW_URI": "http://127.0.0.1:1", "KUBETUNE_LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", f"services.{part}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while sync_health_status(f"127.0.0.1:{port}", timeout=0.2) != "SERVING":
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - started < 15, "not SERVING after 15 s"
            time.sleep(0.05)
        ready_s = time.monotonic() - started
        time.sleep(0.5)
        rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        maps = open(f"/proc/{proc.pid}/maps").read()
        print(f"{part}: SERVING after {ready_s:.2f} s, RSS {rss_mb:.0f} MB")
        assert "libtorch" not in maps and "lightning" not in maps
        assert rss_mb < 200
        # 3 s on an idle machine; some slack for a CI box running other suites.
        assert ready_s < 6
    finally:
        proc.terminate()
        proc.wait(10)
