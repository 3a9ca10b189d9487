"""Every benchmark `make bench` runs still imports, and those with a small setting run
to the end with it: a refactor (a moved test helper, a renamed flag) cannot silently
break one."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS
from tests.e2e.conftest import need_chromium

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in ("__init__", "__main__"))
# The smallest settings of the benchmarks that take seconds with them (a platform start
# at most); the rest (whole studies, repeated) are import-checked only.
SMALL = {
    "training_loop": ["--repeats", "1", "--epochs", "2"],
    "gpu": ["--rows", "2000", "--epochs", "1", "--repeats", "1"],  # on the CPU it says there is no CUDA
    "tracking_queries": ["--runs", "40", "--steps", "3", "--repeat", "1", "--mlflow-repeat", "1"],
    "data_register": ["--mb", "1", "--repeat", "1"],
    "predict": ["--rows", "10", "--repeat", "3"],
    "ui_experiments": ["--runs", "150", "--repeat", "1"],  # 3 pages: Quasar shows "last page" from 3 on
    "ui_live": ["--epochs", "3", "--gap", "0.1"],
}


def test_make_bench_runs_every_benchmark_module():
    assert sorted(BENCHMARKS) == MODULES


@pytest.mark.parametrize("name", MODULES)
def test_bench_module_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert module.__doc__, "a benchmark says what it measures"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_bench_runs_with_its_smallest_settings(name):
    if name.startswith("ui_"):
        need_chromium()
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", *SMALL[name]], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    # A benchmark may exit 1 for a target its figures miss (predict does): ran to the end
    # is what this checks, the figures are for `make bench` and the README.
    assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr[-4000:]
    assert result.stdout.strip(), "a benchmark prints its figures"
