"""Both services start as real processes: SERVING fast, small, and without torch or
mlflow (tracking speaks MLflow's REST API itself; the registry imports mlflow only when
a first Predict loads a model)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from kubetune_common.channels import sync_health_status
from testing.servers import free_port

# Runs the part's __main__ with a thread that keeps writing the top-level modules the
# process has imported to a file, so the test can see inside the running service.
WITH_MODULE_LIST = """
import os, runpy, sys, threading, time
out = sys.argv[2]
def watch():
    while True:
        time.sleep(0.2)
        with open(out + ".tmp", "w") as f:
            f.write("\\n".join(sorted({m.split(".")[0] for m in list(sys.modules)})))
        os.replace(out + ".tmp", out)
threading.Thread(target=watch, daemon=True).start()
part = sys.argv[1]
sys.argv = [part]
runpy.run_module(f"services.{part}", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("part", ["tracking", "registry"])
def test_serving_fast_small_and_without_torch(part, nats_url, tmp_path):
    port = free_port()
    env = {**os.environ, f"KUBETUNE_{part.upper()}_PORT": str(port), "KUBETUNE_NATS_URL": nats_url,
           "KUBETUNE_MLFLOW_URI": "http://127.0.0.1:1", "KUBETUNE_LOG_LEVEL": "WARNING"}
    started = time.monotonic()
    modules_file = tmp_path / "modules.txt"
    proc = subprocess.Popen([sys.executable, "-c", WITH_MODULE_LIST, part, str(modules_file)], env=env,
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
        modules = set(modules_file.read_text().split())
        print(f"{part}: SERVING after {ready_s:.2f} s, RSS {rss_mb:.0f} MB, {len(modules)} top-level modules")
        assert "libtorch" not in maps and "lightning" not in maps
        assert "services" in modules  # the list is the service's own
        assert not modules & {"mlflow", "torch", "lightning", "pandas"}, sorted(modules & {"mlflow", "torch", "pandas"})
        assert rss_mb < 200
        # 3 s on an idle machine; some slack for a CI box running other suites.
        assert ready_s < 6
    finally:
        proc.terminate()
        proc.wait(10)
