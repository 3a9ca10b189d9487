"""Benchmark: how fast each query part reaches SERVING and what it holds at rest.
Targets (issue 2): SERVING within 3 s of start, idle RSS below 200 MB, no torch."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil

from tests.platform import running_platform

QUERY_PARTS = ("data", "tracking", "registry", "gateway")


def footprint(platform) -> dict[str, dict]:
    out = {}
    for name in QUERY_PARTS:
        part = platform.part(name)
        proc = psutil.Process(part.proc.pid)
        maps = [m.path for m in proc.memory_maps()]
        out[name] = {
            "serving_s": part.ready_s,
            "rss_mb": proc.memory_info().rss / 2**20,
            "torch_loaded": any("libtorch" in p or "/lightning/" in p for p in maps),
        }
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_platform(Path(tmp), workers=1) as platform:
        time.sleep(5)  # at rest
        rows = footprint(platform)
    print("| part | SERVING after start | idle RSS | torch loaded |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['serving_s']:.2f} s | {r['rss_mb']:.0f} MB | {'yes' if r['torch_loaded'] else 'no'} |")


if __name__ == "__main__":
    main()
